"""How chain_math completions fail: the first error of every unsolved greedy completion, by horizon.

    python recipes/chain_math_errors.py runs/lh_s0/eval [more eval dirs or completions/*.jsonl]
        [--horizons 4,6,8] [--json out.json]   # {label: {"first_errors": {h: ...}, "hazard": {h: {j: ...}}}}

Reads the ``completions/<label>.jsonl`` files that ``horizon eval`` (and the recipes' eval
stages) write beside ``horizon_curve.json``, classifies each unsolved completion with
``envs.chain_math_errors.first_error`` and prints, per model and horizon, how many failed and
the share of each kind: a horizon failure (``skipped_op``, ``stopped_early``, ``lost_value``)
reads differently from an arithmetic one.

It also prints each model's **step hazard** per horizon: for operation j, the share of
completions whose first j - 1 lines are right that go wrong at line j. If every step failed
independently at one rate (the ``p ** h`` picture of a chain), each row would be flat and the
same at every horizon; a row that rises with j, or an op j that fails more often in a longer
problem, says the chain itself is what breaks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def completion_files(paths: list[str]) -> dict[str, Path]:
    """``{label: file}`` for each completions file named or found under an eval dir's ``completions/``."""
    found: dict[str, Path] = {}
    for p in map(Path, paths):
        files = sorted((p / "completions").glob("*.jsonl")) if p.is_dir() else [p]
        if not files or not all(f.is_file() for f in files):
            raise SystemExit(f"error: {p}: no completions found (an eval dir with completions/*.jsonl, "
                             "or such a file); run horizon eval first")
        for f in files:
            # the dir as given: eval dirs are all called "eval", so their names alone would collide
            found[f"{p}/{f.stem}" if p.is_dir() else str(p)] = f
    return found


def tally(rows: list[dict], horizons: set[int] | None = None) -> dict[int, dict]:
    """``{horizon: {"n", "failed", "kinds": {kind: count}, "lucky"}}``: the first errors of the unsolved
    completions, and ``lucky``, how many solved ones got there through a wrong step."""
    from envs.chain_math_errors import first_error, row_all_steps_right

    out: dict[int, dict] = {}
    for row in rows:
        h = int(row["horizon"])
        if horizons and h not in horizons:
            continue
        cell = out.setdefault(h, {"n": 0, "failed": 0, "kinds": Counter(), "lucky": 0})
        cell["n"] += 1
        if row["solved"] and not row_all_steps_right(row):
            cell["lucky"] += 1
        if not row["solved"]:
            cell["failed"] += 1
            cell["kinds"][first_error(row["prompt"], row["completion"])[0]] += 1
    return {h: {**c, "kinds": dict(c["kinds"].most_common())} for h, c in sorted(out.items())}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", help="eval dirs (with completions/) or completions .jsonl files")
    parser.add_argument("--horizons", default="", help="comma-separated horizons to keep (default: all)")
    parser.add_argument("--json", default="", help="also write the tally here")
    args = parser.parse_args(argv)
    horizons = {int(h) for h in args.horizons.split(",") if h.strip()} or None
    from envs.chain_math_errors import step_hazard

    result = {}
    for label, path in completion_files(args.paths).items():
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        result[label] = {"first_errors": tally(rows, horizons), "hazard": step_hazard(rows, horizons)}
        print(f"\n{label}")
        for h, cell in result[label]["first_errors"].items():
            shares = ", ".join(f"{k} {v / max(1, cell['failed']):.0%}" for k, v in cell["kinds"].items())
            solved = cell["n"] - cell["failed"]
            print(f"  h={h}: {cell['failed']}/{cell['n']} failed  ({shares}); of {solved} solved, "
                  f"{cell['lucky']} through a wrong step")
        print("  step hazard, first error at operation j given j - 1 right (completions at risk):")
        for h, ops in result[label]["hazard"].items():
            print(f"  h={h}: " + ", ".join(f"{j}: {c['hazard']:.2f} ({c['at_risk']})" for j, c in ops.items()))
    if args.json:
        from rl.run.io import atomic_write_text

        atomic_write_text(Path(args.json), json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
