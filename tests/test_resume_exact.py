"""Kill-and-resume: a run SIGKILLed between steps or mid-step, then resumed, logs exactly the
metrics an uninterrupted run logs (bitwise on CPU with the HF engine; wall-clock fields aside)."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from rl.run.io import read_jsonl

ROOT = Path(__file__).parents[1]
ARGS = ["--model", "tiny-random", "--rollout.engine", "hf", "--rollout.prompts_per_step", "2",
        "--rollout.group_size", "3", "--rollout.max_new_tokens", "10", "--progress", "false",
        "--save_every", "1", "--max_steps", "4", "--optim.lr", "1e-2", "--reward.verifier_timeout_s", "0",
        "--optim.lr_scheduler", "cosine", "--optim.warmup_steps", "1"]
# the rates those settings give updates 1-4: warmup's 1/2 on the first, then a cosine over the 4 steps
# (budget spent 0, .25, .5, .75 before each): 1e-2 x [.5, .85355, .5, .14645]
LRS = [5e-3, 8.5355339e-3, 5e-3, 1.4644661e-3]
TIMING = ("time", "time/", "tokens_per_s/")


def _run(out: Path, *extra, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    if kill_at:
        env["HORIZON_FAULT"] = kill_at
    # the recipe's own CLI on the parity env of tests/test_user_env.py: a reward the random model
    # earns in varying amounts, so the compared runs really train (chain_math's would be all 0)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), env.get("PYTHONPATH", "")])
    config = str(ROOT / "recipes/configs/grpo_chain_math.yaml")
    cmd = [sys.executable, "-m", "rl.cli", "train", "--config", config, *ARGS, "--env.name", "test_user_env:PARITY", "--env.min_horizon", "2",
           "--output_dir", str(out), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def _comparable(rows):
    return [{k: v for k, v in r.items() if not k.startswith(TIMING)} for r in rows]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    proc = _run(out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return _comparable(read_jsonl(out / "metrics.jsonl"))


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", ["after_checkpoint:2", "after_update:3"])
def test_sigkill_then_resume_gives_identical_metrics(reference, tmp_path, kill_at):
    killed = _run(tmp_path, kill_at=kill_at)
    assert killed.returncode == -signal.SIGKILL
    resumed = _run(tmp_path, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    rows = _comparable(read_jsonl(tmp_path / "metrics.jsonl"))
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert rows == reference
    assert reference[-1]["grad_norm"] > 0  # the compared runs really trained
    assert [r["lr"] for r in reference] == pytest.approx(LRS)  # the resumed run's rates are in rows too


CURRICULUM = ["--curriculum.enabled", "true", "--curriculum.start", "3", "--curriculum.min_level", "2",
              "--curriculum.max_level", "3", "--curriculum.width", "2", "--curriculum.window", "6",
              "--curriculum.min_episodes", "3", "--curriculum.up", "0.3", "--curriculum.down", "0.1"]


@pytest.mark.slow
def test_curriculum_state_resumes_exactly(tmp_path):
    """The curriculum's level, histories and draw count travel in the checkpoint: a run killed
    mid-step and resumed draws the same horizons and logs the same curriculum metrics."""
    ref = tmp_path / "ref"
    assert _run(ref, *CURRICULUM).returncode == 0
    expected = _comparable(read_jsonl(ref / "metrics.jsonl"))
    assert all("curriculum/level" in r for r in expected)
    killed = _run(tmp_path / "run", *CURRICULUM, kill_at="after_update:3")
    assert killed.returncode == -signal.SIGKILL
    resumed = _run(tmp_path / "run", *CURRICULUM, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _comparable(read_jsonl(tmp_path / "run" / "metrics.jsonl")) == expected
