"""How chain_math completions fail: the first error of every unsolved greedy completion, by horizon.

    python recipes/chain_math_errors.py runs/lh_s0/eval [more eval dirs or completions/*.jsonl]
        [--horizons 4,6,8] [--json out.json]

Reads the ``completions/<label>.jsonl`` files that ``horizon eval`` (and the recipes' eval
stages) write beside ``horizon_curve.json``, classifies each unsolved completion with
``envs.chain_math_errors.first_error`` and prints, per model and horizon, how many failed and
the share of each kind: a horizon failure (``skipped_op``, ``stopped_early``, ``lost_value``)
reads differently from an arithmetic one.
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
            found[f"{p.name}/{f.stem}" if p.is_dir() else f.stem] = f
    return found


def tally(rows: list[dict], horizons: set[int] | None = None) -> dict[int, dict]:
    """``{horizon: {"n", "failed", "kinds": {kind: count}}}`` over unsolved completions."""
    from envs.chain_math_errors import first_error

    out: dict[int, dict] = {}
    for row in rows:
        h = int(row["horizon"])
        if horizons and h not in horizons:
            continue
        cell = out.setdefault(h, {"n": 0, "failed": 0, "kinds": Counter()})
        cell["n"] += 1
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
    result = {}
    for label, path in completion_files(args.paths).items():
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        result[label] = tally(rows, horizons)
        print(f"\n{label}")
        for h, cell in result[label].items():
            shares = ", ".join(f"{k} {v / max(1, cell['failed']):.0%}" for k, v in cell["kinds"].items())
            print(f"  h={h}: {cell['failed']}/{cell['n']} failed  ({shares})")
    if args.json:
        from rl.run.io import atomic_write_text

        atomic_write_text(Path(args.json), json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
