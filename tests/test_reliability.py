"""Fault containment and bad input: runs stop with a clear message instead of training on
garbage; config mistakes fail before any model loads; torn run files still read."""

import json

import pytest

import rl.trainer.loop
from rl.config import load_config
from rl.trainer.config import TrainConfig
from rl.errors import ConfigError, RunAborted
from rl.types import Outcome

SMALL = ["--model", "tiny-random", "--rollout.engine", "hf", "--rollout.prompts_per_step", "2",
         "--rollout.group_size", "2", "--rollout.max_new_tokens", "6", "--progress", "false",
         "--reward.verifier_timeout_s", "0"]


def _reward_from(verifier):
    from rewards.compose import RewardFunction

    return lambda env_cfg, reward_cfg: RewardFunction(verifier, 1.0)


def _always_raises(task, episode):
    raise ValueError("broken grader")


def test_too_many_failed_episodes_stop_the_run_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(rl.trainer.loop, "build_reward", _reward_from(_always_raises))
    cfg = load_config(TrainConfig, None, [*SMALL, "--max_steps", "3", "--output_dir", str(tmp_path)])
    with pytest.raises(RunAborted, match=r"step 1: 4/4 episodes could not be scored \(verifier.*broken grader"):
        rl.trainer.loop.train(cfg)
    # the evidence is on disk: every failed episode with its error
    record = json.loads((tmp_path / "rollouts/step_1.jsonl").read_text().splitlines()[0])
    assert record["errors"][0]["kind"] == "verifier" and record["rewards"]["total"] is None


def test_a_few_failed_episodes_are_contained(tmp_path, monkeypatch):
    calls = []

    def flaky(task, episode):
        calls.append(1)
        if len(calls) % 4 == 0:
            raise TimeoutError("slow grader")
        return Outcome(0.0, False)

    monkeypatch.setattr(rl.trainer.loop, "build_reward", _reward_from(flaky))
    cfg = load_config(TrainConfig, None, [*SMALL, "--max_steps", "2", "--output_dir", str(tmp_path)])
    rl.trainer.loop.train(cfg)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["errors/verifier"] for r in rows] == [1.0, 1.0]


def test_nonfinite_updates_are_skipped_then_the_run_stops(tmp_path, monkeypatch):
    import rl.trainer.update

    real_loss = rl.trainer.update.clipped_policy_loss

    def nan_loss(*args, **kwargs):  # a numerically broken update
        loss, metrics = real_loss(*args, **kwargs)
        return loss * float("nan"), metrics

    monkeypatch.setattr(rl.trainer.update, "clipped_policy_loss", nan_loss)
    cfg = load_config(TrainConfig, None, [*SMALL, "--max_steps", "5", "--output_dir", str(tmp_path),
                                         "--optim.max_nonfinite_streak", "2"])
    with pytest.raises(RunAborted, match="step 2: 2 updates in a row had a NaN/Inf"):
        rl.trainer.loop.train(cfg)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["update/skipped_nonfinite"] for r in rows] == [1.0]  # step 1 logged, step 2 stopped


def test_nan_score_is_a_verifier_error_not_a_reward():
    from rewards.compose import RewardFunction
    from rl.types import Completion, Episode, Task, Turn

    ep = Episode(Task("t", [], "1"), 0, [Turn([1], Completion([2], [-1.0], "x", "stop"))])
    RewardFunction(lambda task, episode: Outcome(float("nan"), False))(ep)
    assert ep.reward is None and "non-finite score" in ep.errors[0].message


def test_incompatible_options_fail_at_config_time():
    with pytest.raises(ConfigError, match="'algorithm.kl_coef': a KL penalty needs a reference policy"):
        load_config(TrainConfig, None, ["--lora.r", "0", "--algorithm.kl_coef", "0.1"])


def test_unknown_model_name_lists_the_valid_ones():
    from rl.errors import ModelNotFound
    from rl.models import check_model_available

    with pytest.raises(ModelNotFound, match=r"\['smollm2-135m-instruct', 'tiny-random'\]"):
        check_model_available("smollm3")


def test_torn_last_line_is_skipped_and_reported(tmp_path):
    from rl.run.io import read_jsonl

    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "rew')
    with pytest.warns(UserWarning, match="torn last line"):
        assert [r["step"] for r in read_jsonl(path)] == [1, 2]
    path.write_text('{"step": 1}\n{"st\n{"step": 3}\n')  # damage in the middle is not a crash artefact
    with pytest.raises(json.JSONDecodeError):
        list(read_jsonl(path))


def test_partial_checkpoints_are_ignored(tmp_path):
    from rl.run.checkpoint import list_checkpoints

    for name in ("step_1", "step_2", ".tmp-step_3", "step_4"):
        (tmp_path / name).mkdir()
    for name in ("step_1", "step_2"):
        (tmp_path / name / "state.json").write_text("{}")
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_1", "step_2"]


def test_a_fresh_run_refuses_an_output_dir_that_holds_a_run(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n')
    cfg = load_config(TrainConfig, None, [*SMALL, "--output_dir", str(tmp_path)])
    with pytest.raises(ConfigError, match="already holds a run: pass --resume"):
        rl.trainer.loop.train(cfg)


def test_equal_rewards_give_exact_zero_advantages_for_any_group_size():
    import torch

    from rl.algorithms.advantages import group_advantages

    for g in (3, 6, 7, 12):
        rewards = torch.full((g,), 0.1)  # 0.1 is not a binary fraction: a float mean is inexact
        assert torch.equal(group_advantages(rewards), torch.zeros(g))


def test_atomic_write_text_replaces_whole_and_keeps_a_readable_mode(tmp_path):
    import os

    from rl.run.io import atomic_write_text

    path = tmp_path / "summary.json"
    atomic_write_text(path, "old")
    atomic_write_text(path, "new")
    umask = os.umask(0)
    os.umask(umask)
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["summary.json"]
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() would, not mkstemp's 0600
