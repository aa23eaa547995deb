"""Data parallel through accelerate: 2 CPU processes (gloo) give the one-process update, and a
2-process run killed mid-training resumes exactly (and with any world size that divides the batch)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rl.run.io import read_jsonl
from rl.trainer.distributed import World

ROOT = Path(__file__).parents[1]
LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
          "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]
TRAIN = ["--model", "tiny-random", "--rollout.engine", "hf", "--rollout.prompts_per_step", "4",
         "--rollout.group_size", "3", "--rollout.max_new_tokens", "10", "--progress", "false", "--save_every", "1",
         "--max_steps", "4", "--optim.lr", "1e-2", "--reward.verifier_timeout_s", "0",
         "--env.name", "test_user_env:PARITY", "--env.min_horizon", "2"]
TIMING = ("time", "time/", "tokens_per_s/")


def _env(**extra) -> dict:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", **extra}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), env.get("PYTHONPATH", "")])
    return env


def test_shard_splits_items_contiguously_over_ranks():
    items = list(range(7))
    for size in (1, 2, 3):
        shards = [World(rank, size).shard(items) for rank in range(size)]
        assert [x for s in shards for x in s] == items
        assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert World(1, 2).shard(items) == [4, 5, 6]


@pytest.mark.slow
def test_two_processes_give_the_one_process_lora_update_and_teacher_pass(tmp_path):
    worker = str(ROOT / "tests" / "ddp_update_worker.py")
    one = subprocess.run([sys.executable, worker, str(tmp_path / "one.pt")], capture_output=True, text=True,
                         env=_env(), timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([*LAUNCH, worker, str(tmp_path / "two.pt")], capture_output=True, text=True,
                         env=_env(), timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    assert (a["world_size"], b["world_size"]) == (1, 2)
    change = max((a["after"][k] - a["before"][k]).abs().max().item() for k in a["after"])
    diff = max((a["after"][k] - b["after"][k]).abs().max().item() for k in a["after"])
    # tolerance: float32 sums in another order (micro-batch gradients summed across ranks);
    # without the all-reduce, rank 0 would hold about half the gradient (diff ~ change / 2)
    assert change > 1e-6
    assert diff <= 1e-3 * change, (diff, change)
    for name in ("loss", "grad_norm", "kl", "entropy", "logprob_mismatch/mean", "logprob_mismatch/max"):
        assert b["metrics"][name] == pytest.approx(a["metrics"][name], rel=1e-4, abs=1e-9), name
    # the teacher's pass: each rank ran part of the batch, and both hold all of it, as one process
    assert len(b["teacher_tokens"]) == 2 and 0 < min(b["teacher_tokens"])
    assert sum(b["teacher_tokens"]) == a["teacher_tokens"][0]
    assert len(b["teacher_lp"]) == len(a["teacher_lp"]) == 12
    for x, y in zip(a["teacher_lp"], b["teacher_lp"]):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)


def _launch(out: Path, *extra, kill_at: str | None = None, processes: int = 2) -> subprocess.CompletedProcess:
    config = str(ROOT / "recipes/configs/grpo_chain_math.yaml")
    args = [str(ROOT / "recipes/grpo_chain_math.py"), "--config", config, *TRAIN, "--output_dir", str(out), *extra]
    launch = LAUNCH if processes == 2 else [sys.executable]
    env = _env(**({"HORIZON_FAULT": kill_at} if kill_at else {}))
    return subprocess.run([*launch, *args], capture_output=True, text=True, env=env, timeout=600)


def _comparable(rows):
    return [{k: v for k, v in r.items() if not k.startswith(TIMING)} for r in rows]


def _step_tasks(out: Path, step: int) -> list[str]:
    return [r["task_id"] for r in read_jsonl(out / "rollouts" / f"step_{step}.jsonl")]


@pytest.mark.slow
def test_two_process_run_resumes_after_a_kill(tmp_path):
    reference = _launch(tmp_path / "uninterrupted")
    assert reference.returncode == 0, reference.stderr[-3000:]
    expected = _comparable(read_jsonl(tmp_path / "uninterrupted" / "metrics.jsonl"))
    assert expected[-1]["grad_norm"] > 0  # it really trained
    # 4 groups of 3 over 2 ranks; rank 0 alone writes: one metrics row per step
    assert [r["step"] for r in expected] == [1, 2, 3, 4]
    assert len(_step_tasks(tmp_path / "uninterrupted", 1)) == 4 * 3

    run = tmp_path / "killed"
    killed = _launch(run, kill_at="after_checkpoint:2")  # rank 0 SIGKILLs itself; the launcher stops rank 1
    assert killed.returncode != 0
    assert sorted(p.name for p in (run / "checkpoints").iterdir() if not p.name.startswith(".")) == \
        ["step_1", "step_2"]
    resumed = _launch(run, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _comparable(read_jsonl(run / "metrics.jsonl")) == expected

    # the data order does not depend on the world size: one process resumes the same stream
    single = tmp_path / "single"
    killed = _launch(single, kill_at="after_checkpoint:2")
    assert killed.returncode != 0
    resumed = _launch(single, "--resume", processes=1)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [r["step"] for r in read_jsonl(single / "metrics.jsonl")] == [1, 2, 3, 4]
    for step in (3, 4):
        assert _step_tasks(single, step) == _step_tasks(tmp_path / "uninterrupted", step)


def test_prompts_that_do_not_split_over_the_ranks_are_a_config_error(tmp_path):
    from rl.config import load_config
    from rl.errors import ConfigError
    from rl.trainer.config import TrainConfig
    from rl.trainer.loop import _check_before_loading

    cfg = load_config(TrainConfig, None, ["--rollout.prompts_per_step", "3", "--output_dir", str(tmp_path)])
    with pytest.raises(ConfigError, match="rollout.prompts_per_step"):
        _check_before_loading(cfg, resume=False, world=World(0, 2))


def test_fsdp_or_deepspeed_launch_is_refused_with_the_fix(monkeypatch):
    from rl.errors import ConfigError

    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(ConfigError, match="recipes/accelerate/ddp.yaml"):
        World.from_env()
