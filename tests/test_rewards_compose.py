"""Reward composition: weighted terms, and failures recorded instead of a silent 0."""

from rewards.compose import RewardFunction
from rewards.math import MathVerifier, format_score
from rl.types import Completion, Episode, Task, Turn

TASK = Task(id="t", messages=[{"role": "user", "content": "q"}], answer="7", meta={"horizon": 1})


def _episode(text):
    return Episode(TASK, 0, [Turn([1, 2], Completion([5, 6], [-1.0, -1.0], text, "stop"))])


def _reward(verifier=None):
    return RewardFunction(verifier or MathVerifier(), 1.0,
                          {"format": (0.1, lambda ep: format_score(ep.final_text))})


def test_weighted_terms_are_all_logged():
    ep = _episode("3 + 4 = 7\n#### 7")
    _reward()(ep)
    assert ep.reward_terms == {"outcome": 1.0, "format": 1.0}
    assert ep.reward == 1.1
    wrong = _episode("the answer is 8")
    _reward()(wrong)
    assert wrong.reward_terms == {"outcome": 0.0, "format": 0.0} and wrong.reward == 0.0


def _hangs(task, episode):
    import time

    time.sleep(60)


def _crashes(task, episode):
    import os

    os._exit(3)


def test_hanging_or_crashing_verifier_is_contained_and_the_next_call_works():
    from rewards.isolated import IsolatedVerifier

    for bad, message in ((_hangs, "timed out after 0.5 s"), (_crashes, "died")):
        isolated = IsolatedVerifier(bad, timeout_s=0.5)
        ep = _episode("#### 7")
        _reward(isolated)(ep)
        assert ep.reward is None and message in ep.errors[0].message, ep.errors
        assert ep.errors[0].kind == "verifier"
        isolated.verifier = MathVerifier()  # the next call gets a fresh worker, which answers
        ep = _episode("#### 7")
        _reward(isolated)(ep)
        assert ep.reward == 1.1 and not ep.errors
        isolated.close()
