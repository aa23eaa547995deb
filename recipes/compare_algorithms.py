"""Run several algorithm presets on chain_math with the same seed and budget, plot them together.

    python recipes/compare_algorithms.py                       # grpo, dapo, ppo; 20 steps each
    python recipes/compare_algorithms.py --algorithms grpo rloo --max_steps 10

Each run is ``horizon train --config recipes/configs/compare_chain_math.yaml --algorithm NAME``
into ``<out>/NAME`` (an existing finished run is reused, a partial one resumed), then
``<out>/reward_curves.png`` shows reward/mean and correct/mean against step and wall-clock.
The shared config starts from the distilled student: run ``python recipes/distill.py`` first.
"""

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).parent
CONFIG = ROOT / "configs" / "compare_chain_math.yaml"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algorithms", nargs="+", default=["grpo", "dapo", "ppo"])
    parser.add_argument("--out", default="runs/compare")
    parser.add_argument("--max_steps", type=int, default=None)
    parser.add_argument("--smooth", type=int, default=4)
    args, overrides = parser.parse_known_args(argv)
    from rl.cli import main as cli_main
    from rl.config import load_config
    from rl.trainer.config import TrainConfig
    from rl.run.io import read_jsonl
    from rl.run.plots import plot_runs

    runs = {}
    for name in args.algorithms:
        out = Path(args.out) / name
        extra = ["--algorithm", name, "--output_dir", str(out), *overrides]
        if args.max_steps:
            extra += ["--max_steps", str(args.max_steps)]
        cfg = load_config(TrainConfig, CONFIG, extra)
        done = [r["step"] for r in read_jsonl(out / "metrics.jsonl")] if (out / "metrics.jsonl").exists() else []
        if not done or max(done) < cfg.max_steps:
            code = cli_main(["train", "--config", str(CONFIG), *extra, *(["--resume"] if done else [])])
            if code:
                return code
        runs[name] = out
    path = plot_runs(runs, ["reward/mean", "correct/mean"], Path(args.out) / "reward_curves.png",
                     smooth=args.smooth, title="chain_math h2-4, SmolLM2-135M distilled + LoRA")
    print(f"plot: {path}")
    for name, out in runs.items():
        rows = list(read_jsonl(out / "metrics.jsonl"))
        first, last = rows[: args.smooth], rows[-args.smooth:]
        mean = lambda rs, k: sum(r[k] for r in rs) / len(rs)  # noqa: E731
        print(f"{name:>12}: correct/mean first {args.smooth} steps {mean(first, 'correct/mean'):.3f} -> "
              f"last {args.smooth} {mean(last, 'correct/mean'):.3f}; "
              f"{mean(rows, 'time/step_s'):.1f} s/step")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
