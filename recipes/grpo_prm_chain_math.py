"""GRPO on chain_math with a frozen PRM as dense step reward (process supervision), vs outcome only.

    python recipes/grpo_prm_chain_math.py                         # 15 min each, then held-out eval
    python recipes/grpo_prm_chain_math.py --budget_s 300 --out runs/prm_vs_outcome_short

Both runs use recipes/configs/compare_chain_math.yaml (the distilled student, same seed and
prompts) with the ``grpo`` preset and the same wall-clock budget (``--max_train_s``): the PRM
run pays for PRM scoring out of its budget, so it gets fewer steps. It adds
``--reward.prm runs/prm_chain_math/prm`` (train it with recipes/train_prm.py) and
``--reward.process_weight``. Afterwards the start model and both final checkpoints are scored
by greedy pass@1 on held-out tasks at horizons 2-4 (``<out>/eval.json``): training reward
curves are noisy (each step draws 4 prompts of mixed horizon), held-out pass@1 is not.
The plot ``<out>/prm_vs_outcome.png`` shows both reward curves against step and wall-clock.
A killed run is resumed by running the same command again.
"""

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

CONFIG = Path(__file__).parent / "configs" / "compare_chain_math.yaml"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prm", default="runs/prm_chain_math/prm")
    parser.add_argument("--process_weight", default="0.5")
    parser.add_argument("--budget_s", default="900", help="training wall-clock per run (seconds)")
    parser.add_argument("--eval_tasks", type=int, default=50, help="held-out tasks per horizon")
    parser.add_argument("--out", default="runs/prm_vs_outcome")
    args, overrides = parser.parse_known_args(argv)
    from rl.cli import main as cli_main
    from rl.distill.config import EvalConfig
    from rl.trainer.run_eval import evaluate_run
    from rl.run.io import atomic_write_text, read_jsonl
    from rl.run.plots import plot_runs

    out_dir = Path(args.out)
    runs = {"outcome + PRM": out_dir / "prm", "outcome only": out_dir / "outcome"}
    extra = {"outcome + PRM": ["--reward.prm", args.prm, "--reward.process_weight", args.process_weight],
             "outcome only": []}
    for label, out in runs.items():
        resume = ["--resume"] if (out / "metrics.jsonl").exists() else []  # finished runs stop at once
        code = cli_main(["train", "--config", str(CONFIG), "--algorithm", "grpo", "--output_dir", str(out),
                         "--max_steps", "1000", "--max_train_s", args.budget_s, "--save_every", "5",
                         *extra[label], *resume, *overrides])
        if code:
            return code
    path = plot_runs(runs, ["reward/mean", "correct/mean"], out_dir / "prm_vs_outcome.png", smooth=4,
                     title="GRPO on chain_math, same wall-clock: outcome-only vs outcome + PRM")
    print(f"plot: {path}")
    eval_cfg = EvalConfig(horizons=[2, 3, 4], tasks_per_horizon=args.eval_tasks, max_new_tokens=96)
    results = {"start": evaluate_run(runs["outcome only"], eval_cfg, step=0)}
    results.update({label: evaluate_run(out, eval_cfg) for label, out in runs.items()})
    atomic_write_text(out_dir / "eval.json", json.dumps(results, indent=2))
    for label, result in results.items():
        train = "(no training)"
        if label in runs:
            rows = list(read_jsonl(runs[label] / "metrics.jsonl"))
            train = f"{len(rows)} steps in {rows[-1]['time/train_s'] / 60:.1f} min"
        curve = "  ".join(f"h{h} {p:.2f}" for h, p in result["pass@1"].items())
        mean = sum(result["pass@1"].values()) / len(result["pass@1"])
        print(f"{label:>14}: held-out greedy pass@1 {curve}  mean {mean:.3f}  {train}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
