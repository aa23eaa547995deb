"""Does the fast update learn as the plain one does? Equal-seed GRPO reward curves, side by side.

    python recipes/bench/share_prompt_curves.py           # 30 steps each, from the demo's student
    python recipes/bench/share_prompt_curves.py --steps 2 --model tiny-random   # smoke run

Two runs of ``recipes/configs/grpo_chain_math.yaml`` (LoRA r=16, chain_math h 1-4, 4 prompts x
8 samples, 96 new tokens, lr 1e-4) from the distilled student of ``make demo``
(``runs/long_horizon/distill/model``; the base model solves almost nothing, so its groups carry
no signal), with the same seed, one after the other:

- ``fast``: ``optim.share_prompt: true`` (the default): each group's prompt runs once per
  micro-batch and its keys/values are shared by the completions, packed without padding when
  padding would exceed 20 %;
- ``plain``: ``optim.share_prompt: false``: every sample is a padded row of its own.

The two updates are equal up to float rounding (tests/test_forward.py), so the runs start on
the same rollouts and drift apart only through rounding amplified by sampling: the curves are
two draws of the same process, not copies. Printed: reward and accuracy per step, the mean
over the first and last 10 steps of each with a 95 % interval over those steps, and the
median seconds per update; ``share_prompt_curves.png`` / ``.json`` go to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "recipes" / "configs" / "grpo_chain_math.yaml"
STUDENT = ROOT / "runs" / "long_horizon" / "distill" / "model"


def train(variant: str, steps: int, model: str, out: Path, seed: int) -> float:
    """Run (or resume) one variant; returns its wall seconds in this call."""
    cmd = [sys.executable, "-m", "rl.cli", "train", "--config", str(CONFIG), "--model", model,
           "--output_dir", str(out / variant), "--max_steps", str(steps), "--save_every", str(steps),
           "--seed", str(seed), "--env.max_horizon", "4", "--optim.lr", "1e-4",
           "--optim.share_prompt", "true" if variant == "fast" else "false", "--resume"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    return time.perf_counter() - t0


def read_metrics(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.jsonl") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return sorted({r["step"]: r for r in rows}.values(), key=lambda r: r["step"])  # last row per step


def window(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of a normal 95 % interval over ``values``."""
    if len(values) < 2:
        return (values[0] if values else float("nan")), float("nan")
    return statistics.fmean(values), 1.96 * statistics.stdev(values) / len(values) ** 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--model", default=str(STUDENT))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_share_prompt")
    args = parser.parse_args()
    if args.model == str(STUDENT) and not STUDENT.exists():
        sys.exit(f"no distilled student at {STUDENT}: run `make demo` first, or pass --model")

    summary = {"steps": args.steps, "model": args.model, "seed": args.seed, "runs": {}}
    for variant in ("fast", "plain"):
        wall_s = train(variant, args.steps, args.model, args.out, args.seed)
        rows = read_metrics(args.out / variant)
        k = min(10, len(rows))
        reward = [r["reward/mean"] for r in rows]
        correct = [r["correct/mean"] for r in rows]
        summary["runs"][variant] = {
            "wall_s_this_call": round(wall_s, 1),
            "update_s_median": statistics.median(r["time/update_s"] for r in rows),
            "step_s_median": statistics.median(r["time/step_s"] for r in rows),
            "reward": reward, "correct": correct,
            "reward_first": window(reward[:k]), "reward_last": window(reward[-k:]),
            "correct_first": window(correct[:k]), "correct_last": window(correct[-k:]),
        }

    fast, plain = summary["runs"]["fast"], summary["runs"]["plain"]
    print(f"\n{'step':>4} | {'reward fast':>11} {'plain':>7} | {'correct fast':>12} {'plain':>7}")
    for i, (rf, rp, cf, cp) in enumerate(zip(fast["reward"], plain["reward"], fast["correct"], plain["correct"])):
        print(f"{i + 1:>4} | {rf:>11.3f} {rp:>7.3f} | {cf:>12.3f} {cp:>7.3f}")
    for name in ("reward_first", "reward_last", "correct_first", "correct_last"):
        (mf, hf), (mp, hp) = fast[name], plain[name]
        print(f"{name:<14} fast {mf:.3f} ± {hf:.3f}   plain {mp:.3f} ± {hp:.3f}")
    print(f"update s (median): fast {fast['update_s_median']:.1f}  plain {plain['update_s_median']:.1f}  "
          f"ratio {plain['update_s_median'] / fast['update_s_median']:.2f}x")
    print(f"step s (median):   fast {fast['step_s_median']:.1f}  plain {plain['step_s_median']:.1f}")

    (args.out / "share_prompt_curves.json").write_text(json.dumps(summary, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.3))
    for ax, key in zip(axes, ("reward", "correct")):
        for variant, style in (("fast", "-"), ("plain", "--")):
            ys = summary["runs"][variant][key]
            ax.plot(range(1, len(ys) + 1), ys, style, label=f"share_prompt {variant == 'fast'}")
        ax.set_xlabel("step")
        ax.set_ylabel(f"{key}/mean (training batch)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"GRPO chain_math, seed {args.seed}: shared/packed vs plain update")
    fig.tight_layout()
    fig.savefig(args.out / "share_prompt_curves.png", dpi=120)
    print(f"wrote {args.out / 'share_prompt_curves.png'}")


if __name__ == "__main__":
    main()
