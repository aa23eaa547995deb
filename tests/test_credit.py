"""The one credit path: signals -> per-token advantages, composed, dropped, and recorded."""

import pytest
import torch

from rewards.compose import RewardFunction
from rewards.math import MathVerifier, format_score
from rl.config import load_config
from rl.errors import ConfigError
from rl.trainer.batch import TrainBatch
from rl.trainer.collect import rollout_metrics
from rl.trainer.config import TrainConfig
from rl.trainer.credit import assign_credit, check_signals, drop_zero_credit_groups, rollout_records
from rl.trainer.signals import GroupAdvantage, ProcessReward
from rl.types import Completion, Episode, EpisodeGroup, Step, Task, Turn

TASK = Task(id="t", messages=[{"role": "user", "content": "q"}], answer="7", meta={"horizon": 1})


def _episode(text, n_tokens=2):
    completion = Completion(list(range(5, 5 + n_tokens)), [-1.0] * n_tokens, text, "stop")
    return Episode(TASK, 0, [Turn([1, 2], completion)])


def _reward(verifier=None):
    return RewardFunction(verifier or MathVerifier(), 1.0, {"format": (0.1, lambda ep: format_score(ep.final_text))})


def _batch(groups, **kw):
    return TrainBatch.from_groups(groups, policy=None, temperature=1.0, micro_batch_size=8, **kw)


def test_failed_episode_is_left_out_of_the_baseline_and_the_batch():
    calls = []

    def flaky(task, episode):
        calls.append(episode)
        if len(calls) == 2:
            raise TimeoutError("verifier hung")
        return MathVerifier()(task, episode)

    episodes = [_episode("#### 7"), _episode("#### 7"), _episode("#### 1")]
    for ep in episodes:
        _reward(flaky)(ep)
    failed = episodes[1]
    assert failed.reward is None and failed.outcome.error == "TimeoutError: verifier hung"
    group = EpisodeGroup(TASK, episodes)
    batch = _batch([group])
    assert batch.origin == [(0, 0), (0, 2)]
    credit = assign_credit(batch, [GroupAdvantage("grpo")])
    # the baseline uses only the two scored episodes: rewards 1.1 and 0.1 -> +-0.7071 on policy tokens
    torch.testing.assert_close(credit.advantages[0], torch.tensor([0.0, 0.0, 0.70706, 0.70706]), atol=1e-4, rtol=0)
    torch.testing.assert_close(credit.advantages[1], torch.tensor([0.0, 0.0, -0.70706, -0.70706]), atol=1e-4, rtol=0)
    metrics = rollout_metrics([group], max_new_tokens=2)
    assert metrics["errors/verifier"] == 1.0 and metrics["correct/mean"] == 0.5
    records = rollout_records(1, batch, credit)
    assert [r["trained"] for r in records] == [True, False, True]
    assert records[1]["advantage"] is None and records[1]["advantage_tokens"] == []
    assert records[0]["advantage"] == pytest.approx(0.70706, abs=1e-4)
    assert records[0]["advantage_tokens"] == pytest.approx([0.70706] * 2, abs=1e-4)
    assert records[0]["advantage_terms"] == {"group": pytest.approx(0.70706, abs=1e-4)}


def test_zero_credit_groups_are_dropped_and_recorded_as_untrained():
    equal = [_episode("#### 1"), _episode("#### 2")]
    mixed = [_episode("#### 7"), _episode("#### 2")]
    for ep in equal + mixed:
        _reward()(ep)
    groups = [EpisodeGroup(TASK, equal), EpisodeGroup(TASK, mixed)]
    batch = _batch(groups)
    credit = assign_credit(batch, [GroupAdvantage("grpo")])
    kept, kept_credit, dropped = drop_zero_credit_groups(batch, credit)
    assert dropped == 1 and kept.origin == [(1, 0), (1, 1)] and len(kept_credit.advantages) == 2
    records = rollout_records(3, kept, kept_credit)
    assert [r["trained"] for r in records] == [False, False, True, True]
    assert all(r["step"] == 3 for r in records)


def test_filter_truncated_keeps_the_episode_in_its_baseline_only():
    episodes = [_episode("#### 7"), _episode("#### 2"), _episode("#### 2")]
    episodes[2].turns[0].completion.finish_reason = "length"
    for ep in episodes:
        _reward()(ep)
    batch = _batch([EpisodeGroup(TASK, episodes)], filter_truncated=True)
    assert batch.origin == [(0, 0), (0, 1)]
    credit = assign_credit(batch, [GroupAdvantage("dr_grpo")])
    # Dr. GRPO: r - mean over all three scored rewards (1.1, 0.1, 0.1) -> 0.7667, -0.2333
    assert credit.advantages[0][-1].item() == pytest.approx(1.1 - 1.3 / 3, abs=1e-6)
    assert credit.advantages[1][-1].item() == pytest.approx(0.1 - 1.3 / 3, abs=1e-6)


class _ScriptedPRM:
    """Step scores from a table, by the episode's final text."""

    def __init__(self, table):
        self.table = table

    def score(self, groups):
        for group in groups:
            for episode in group.scored:
                episode.step_rewards = self.table[episode.final_text]


def test_group_and_process_signals_add_up_per_token():
    # two episodes of two one-token steps each: tokens [prompt, prompt, step0, step1]
    episodes = []
    for text, outcome in (("a\nb", 1.0), ("c\nd", 0.0)):
        ep = _episode(text)
        ep.turns[0].steps = [Step("x", 0, 1), Step("y", 1, 2)]
        ep.reward = outcome
        episodes.append(ep)
    batch = _batch([EpisodeGroup(TASK, episodes)])
    w = 0.25
    signals = [GroupAdvantage("dr_grpo", weight=1 - w), ProcessReward(_ScriptedPRM({"a\nb": [1.0, 1.0],
                                                                                      "c\nd": [1.0, 0.0]}), w)]
    credit = assign_credit(batch, signals)
    # outcome (Dr. GRPO): +0.5 / -0.5. Process: step rewards R = [1, 1, 1, 0], mean 0.75,
    # unbiased std 0.5 (+1e-4): normalised [0.5, 0.5, 0.5, -1.5] (approx); to-go per token:
    # episode 0: [1.0, 0.5], episode 1: [-1.0, -1.5]
    std = 0.5 + 1e-4
    n = [0.25 / std, 0.25 / std, 0.25 / std, -0.75 / std]
    expected = [[(1 - w) * 0.5 + w * (n[0] + n[1]), (1 - w) * 0.5 + w * n[1]],
                [(1 - w) * -0.5 + w * (n[2] + n[3]), (1 - w) * -0.5 + w * n[3]]]
    for i in range(2):
        assert credit.advantages[i][2:].tolist() == pytest.approx(expected[i], abs=1e-5)
        assert credit.advantages[i][:2].tolist() == [0.0, 0.0]
    assert set(credit.terms) == {"group", "process"}
    assert credit.metrics["prm/fallback_samples"] == 0.0


def test_first_error_process_credit_reaches_the_tokens():
    # the same two episodes, reward.process_credit: first_error. Step 0: both right (peers 0, 1;
    # baseline 1) -> 0 and 0. Step 1: peers 0, 1, rewards 1 and 0, baseline 0.5 -> +0.5 and -0.5.
    episodes = []
    for text in ("a\nb", "c\nd"):
        ep = _episode(text)
        ep.turns[0].steps = [Step("x", 0, 1), Step("y", 1, 2)]
        ep.reward = 0.0
        episodes.append(ep)
    batch = _batch([EpisodeGroup(TASK, episodes)])
    prm = _ScriptedPRM({"a\nb": [1.0, 1.0], "c\nd": [1.0, 0.0]})
    credit = assign_credit(batch, [ProcessReward(prm, 1.0, credit="first_error")])
    assert credit.advantages[0][2:].tolist() == pytest.approx([0.0, 0.5])
    assert credit.advantages[1][2:].tolist() == pytest.approx([0.0, -0.5])
    cfg = load_config(TrainConfig, None, ["--reward.prm", "exact", "--reward.process_credit", "first_error"])
    assert cfg.reward.process_credit == "first_error"
    with pytest.raises(ConfigError, match="reward.process_credit"):
        load_config(TrainConfig, None, ["--reward.process_credit", "last"])


@pytest.mark.parametrize("overrides,key", [
    (["--algorithm", "ppo", "--distill.teacher", "tiny-random"], "distill.teacher"),
    (["--algorithm", "reinforce_pp", "--distill.teacher", "tiny-random"], "algorithm.kl_mode"),
    (["--algorithm", "dapo", "--distill.teacher", "tiny-random"], "algorithm.dynamic_sampling"),
    (["--rollout.group_size", "1"], "rollout.group_size"),
])
def test_signals_declare_what_they_cannot_be_combined_with(overrides, key):
    with pytest.raises(ConfigError, match=f"config key '{key}'"):
        load_config(TrainConfig, None, overrides)


def test_check_signals_accepts_every_preset_alone():
    from rl.trainer.config import ALGORITHM_PRESETS

    for name in ALGORITHM_PRESETS:
        check_signals(load_config(TrainConfig, None, ["--algorithm", name]))


def test_exact_step_labels_are_the_step_rewards():
    """reward.prm: exact: the env's exact labels become step rewards (1/0); an episode whose labels
    do not cover its steps gets none, so the process signal falls back and counts it."""
    from rewards.prm.scorer import ExactLabelScorer

    episodes = []
    for labels, n_steps in (([True, False], 2), ([True], 2)):
        ep = _episode("a\nb")
        ep.turns[0].steps = [Step("x", 0, 1), Step("y", 1, 2)][:n_steps]
        ep.reward, ep.step_labels = 1.0, labels
        episodes.append(ep)
    groups = [EpisodeGroup(TASK, episodes)]
    ExactLabelScorer().score(groups)
    assert episodes[0].step_rewards == [1.0, 0.0] and episodes[1].step_rewards is None
    credit = assign_credit(_batch(groups), [ProcessReward(ExactLabelScorer(), 1.0)])
    assert credit.metrics["prm/fallback_samples"] == 1.0
    assert credit.advantages[0][2:].tolist() != [0.0, 0.0] and credit.advantages[1].abs().sum() == 0


def test_exact_process_reward_needs_an_env_with_labels():
    cfg = load_config(TrainConfig, None, ["--reward.prm", "exact"])  # chain_math has exact labels
    assert cfg.reward.prm == "exact"
    with pytest.raises(ConfigError, match="has none"):
        load_config(TrainConfig, None, ["--reward.prm", "exact", "--env.name", "test_user_env:SPEC"])


def test_raft_refuses_signed_prm_credit():
    assert load_config(TrainConfig, None, ["--algorithm.advantage", "raft"]).algorithm.advantage == "raft"
    with pytest.raises(ConfigError, match="config key 'reward.prm'.*positive only"):
        check_signals(load_config(TrainConfig, None, ["--algorithm.advantage", "raft", "--reward.prm", "exact"]))
