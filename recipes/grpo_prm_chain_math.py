"""GRPO on chain_math with a frozen PRM as dense step reward (process supervision), vs outcome only.

    python recipes/grpo_prm_chain_math.py                      # outcome+PRM, then outcome-only
    python recipes/grpo_prm_chain_math.py --max_steps 10

Both runs use recipes/configs/compare_chain_math.yaml (the distilled student, same seed and
budget) with the ``grpo`` preset; the PRM run adds ``--reward.prm runs/prm_chain_math/prm``
(train it with recipes/train_prm.py) and ``--reward.process_weight``. The plot
``<out>/prm_vs_outcome.png`` shows both reward curves against step and wall-clock.
"""

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

CONFIG = Path(__file__).parent / "configs" / "compare_chain_math.yaml"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prm", default="runs/prm_chain_math/prm")
    parser.add_argument("--process_weight", default="0.5")
    parser.add_argument("--out", default="runs/prm_vs_outcome")
    args, overrides = parser.parse_known_args(argv)
    from rl.cli import main as cli_main
    from rl.io import read_jsonl
    from rl.plots import plot_runs

    runs = {"outcome + PRM": Path(args.out) / "prm", "outcome only": Path(args.out) / "outcome"}
    extra = {"outcome + PRM": ["--reward.prm", args.prm, "--reward.process_weight", args.process_weight],
             "outcome only": []}
    for label, out in runs.items():
        if (out / "metrics.jsonl").exists():
            continue  # finished (or partial: resume it by hand with --resume)
        code = cli_main(["train", "--config", str(CONFIG), "--algorithm", "grpo", "--output_dir", str(out),
                         *extra[label], *overrides])
        if code:
            return code
    path = plot_runs(runs, ["reward/mean", "correct/mean"], Path(args.out) / "prm_vs_outcome.png", smooth=4,
                     title="GRPO on chain_math: outcome-only vs outcome + PRM step rewards")
    print(f"plot: {path}")
    for label, out in runs.items():
        rows = list(read_jsonl(out / "metrics.jsonl"))
        last = rows[-4:]
        print(f"{label:>14}: correct/mean last 4 steps {sum(r['correct/mean'] for r in last) / len(last):.3f}, "
              f"{sum(r['time/step_s'] for r in rows) / len(rows):.1f} s/step")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
