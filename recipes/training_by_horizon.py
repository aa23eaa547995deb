"""What an RL run's own samples solved, by horizon, early and late in training.

    python recipes/training_by_horizon.py runs/rlsft_s3/rl [more run dirs] [--window 10]

Reads ``rollouts/step_N.jsonl`` of the first and the last ``window`` steps and prints, per
horizon, how many scored samples there were and the share solved with every step right (answer
right and every exact step label true). ``correct/h<N>`` in ``metrics.jsonl`` is a per-step mean of
answers alone; with a curriculum or frontier weighting the mix of sampled horizons moves during
training, so a pooled success rate can fall while every horizon's rises: read it per horizon.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def solved_by_horizon(run_dir: Path, steps) -> dict[int, tuple[int, float]]:
    """``{horizon: (scored samples, share with a right answer and every step label true)}`` over
    ``steps`` of the run's rollouts."""
    from rl.run.io import read_jsonl

    seen, solved = Counter(), Counter()
    for step in steps:
        for row in read_jsonl(run_dir / "rollouts" / f"step_{step}.jsonl"):
            if row["outcome"] is None or row["horizon"] is None:  # not scored, or no horizon
                continue
            seen[row["horizon"]] += 1
            labels = row["step_labels"]
            solved[row["horizon"]] += bool(row["outcome"]["correct"]) and bool(labels) and all(labels)
    return {h: (seen[h], solved[h] / seen[h]) for h in sorted(seen)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="RL run dirs (with metrics.jsonl and rollouts/)")
    parser.add_argument("--window", type=int, default=10, help="steps at the start and at the end")
    args = parser.parse_args(argv)
    from rl.run.io import read_jsonl

    for run in map(Path, args.runs):
        if not (run / "metrics.jsonl").is_file():
            raise SystemExit(f"error: {run}: no metrics.jsonl (pass an RL run dir, e.g. runs/x/rl)")
        last = len(list(read_jsonl(run / "metrics.jsonl")))
        window = min(args.window, last)
        for name, steps in (("first", range(1, window + 1)), ("last", range(last - window + 1, last + 1))):
            cells = "  ".join(f"h{h} {v:.2f} ({n})" for h, (n, v) in solved_by_horizon(run, steps).items())
            print(f"{run} {name} {window} steps, every step right (samples): {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
