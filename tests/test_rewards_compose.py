"""Reward composition: weighted terms, and failures recorded instead of a silent 0."""

import torch

from rewards.compose import RewardFunction
from rewards.math import MathVerifier, format_score
from rl.grpo import assign_advantages, rollout_metrics, training_samples
from rl.types import Completion, Episode, EpisodeGroup, Task, Turn

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


def test_raising_verifier_is_recorded_and_excluded_from_the_group():
    calls = []

    def flaky(task, episode):
        calls.append(episode)
        if len(calls) == 2:
            raise TimeoutError("verifier hung")
        return MathVerifier()(task, episode)

    reward = _reward(flaky)
    episodes = [_episode("#### 7"), _episode("#### 7"), _episode("#### 1")]
    for ep in episodes:
        reward(ep)
    failed = episodes[1]
    assert failed.reward is None and failed.outcome.error == "TimeoutError: verifier hung"
    assert failed.errors[0].kind == "verifier"
    group = EpisodeGroup(TASK, episodes)
    assign_advantages([group], "grpo")
    # the baseline uses only the two scored episodes: rewards 1.1 and 0.1 -> +-0.7071
    assert failed.advantage is None
    torch.testing.assert_close(torch.tensor([episodes[0].advantage, episodes[2].advantage]),
                               torch.tensor([0.70706, -0.70706]), atol=1e-4, rtol=0)
    samples, advantages, _ = training_samples([group], drop_zero_groups=False)
    assert len(samples) == 2 and failed.advantage not in advantages
    metrics = rollout_metrics([group], max_new_tokens=2)
    assert metrics["errors/verifier"] == 1.0 and metrics["correct/mean"] == 0.5


def test_zero_advantage_groups_can_be_dropped():
    episodes = [_episode("#### 1"), _episode("#### 2")]
    for ep in episodes:
        _reward()(ep)
    group = EpisodeGroup(TASK, episodes)
    assign_advantages([group], "grpo")
    assert training_samples([group], drop_zero_groups=True) == ([], [], [])
    assert len(training_samples([group], drop_zero_groups=False)[0]) == 2


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
