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


class _BatchVerifier:
    """Counts its calls: one verify_many for the whole batch, never the per-episode path."""

    def __init__(self, fail_batch=False):
        self.batches, self.singles, self.fail_batch = [], 0, fail_batch

    def __call__(self, task, episode):
        from rl.types import Outcome

        self.singles += 1
        return Outcome(score=float(episode.final_text == "7"), correct=episode.final_text == "7")

    def verify_many(self, items):
        from rl.types import Outcome

        if self.fail_batch:
            raise RuntimeError("pool broke")
        self.batches.append(len(items))
        return [Outcome(score=float(e.final_text == "7"), correct=e.final_text == "7") for _, e in items]


def test_score_many_verifies_the_batch_in_one_call_and_skips_env_failures():
    verifier = _BatchVerifier()
    episodes = [_episode("7"), _episode("8"), _episode("7")]
    episodes[2].record_error("env", "reset failed")
    RewardFunction(verifier, 1.0).score_many(episodes)
    assert verifier.batches == [2] and verifier.singles == 0
    assert [e.reward for e in episodes] == [1.0, 0.0, None]


def test_score_many_falls_back_to_one_by_one_when_the_batch_call_fails():
    verifier = _BatchVerifier(fail_batch=True)
    episodes = [_episode("7"), _episode("8")]
    RewardFunction(verifier, 1.0).score_many(episodes)
    assert verifier.singles == 2
    assert [e.reward for e in episodes] == [1.0, 0.0]


def test_all_steps_outcome_pays_only_for_a_right_chain():
    """``reward.outcome: all_steps``: a right answer through a wrong step scores 0 on the outcome
    term (the verifier's verdict is kept on the episode); a right chain scores as before."""
    import pytest

    from envs.chain_math import ChainMathConfig, ChainMathSource, oracle_solution, step_labels
    from rl.build import build_reward
    from rl.config import EnvConfig, RewardConfig
    from rl.errors import ConfigError
    from rl.trainer.collect import paid
    from rl.types import Step

    task = ChainMathSource(ChainMathConfig(min_horizon=3, max_horizon=3), seed=0).task_at(0)
    right = oracle_solution(task).splitlines()
    first = right[0].rsplit("= ", 1)
    lucky = [f"{first[0]}= {int(first[1]) + 1}", *right[1:]]  # line 1 wrong, the rest (and the answer) right
    short = right[:1] + right[-1:]  # the right answer with operations 2 and 3 skipped

    def episode(lines):
        steps = [Step(line, i, i + 1) for i, line in enumerate(lines)]
        text = "\n".join(lines)
        return Episode(task, 0, [Turn([1], Completion([5] * len(lines), [-1.0] * len(lines), text, "stop"), steps)])

    plain = RewardFunction(MathVerifier(), 1.0, step_labeler=step_labels)
    strict = RewardFunction(MathVerifier(), 1.0, step_labeler=step_labels, outcome_needs_all_steps=True)
    for fn, lucky_outcome in ((plain, 1.0), (strict, 0.0)):
        ok, luck, skipped = episode(right), episode(lucky), episode(short)
        for ep in (ok, luck, skipped):
            fn(ep)
        assert ok.reward_terms["outcome"] == 1.0 and luck.reward_terms["outcome"] == lucky_outcome
        assert skipped.reward_terms["outcome"] == lucky_outcome
        assert luck.outcome.correct and luck.step_labels[0] is False
        assert paid(ok) and paid(luck) == (lucky_outcome > 0)  # what DAPO's dynamic sampling counts
    assert build_reward(EnvConfig(), RewardConfig(outcome="all_steps", verifier_timeout_s=0)).outcome_needs_all_steps
    with pytest.raises(ConfigError, match="reward.outcome"):  # horizon eval builds rewards without a TrainConfig
        build_reward(EnvConfig(name="reasoning_gym"), RewardConfig(outcome="all_steps"))
    with pytest.raises(ValueError, match="step_labeler"):
        RewardFunction(MathVerifier(), 1.0, outcome_needs_all_steps=True)
    with pytest.raises(ConfigError, match="reward.outcome"):
        RewardConfig(outcome="chain")
