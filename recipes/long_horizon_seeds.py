"""Pool the held-out curves of several ``long_horizon`` runs (one per seed) into one table.

    python recipes/long_horizon_seeds.py runs/lh_s0 runs/lh_s1 --out recipes/results/long_horizon_2seeds

Each run's ``eval/horizon_curve.json`` holds greedy pass@1 per horizon for every model (base,
SFT, RL, SFT-more) on the same held-out tasks. Per model and horizon this prints each seed's
pass@1 and the pooled rate over seeds, successes / (n x seeds), with its Wilson 95 % interval
and ``h50`` from the pooled counts. Every seed scores the same held-out tasks, so the interval
takes the task as the cluster (an effective sample size, ``rl.curve_stats.clustered_counts``):
two seeds that agree on every task count about once. It covers task sampling, not the spread
between seeds, which the per-seed columns show.
The last lines compare RL with its start (SFT) and with the control (SFT-more), flagging
horizons whose pooled intervals are disjoint, and then task by task: per seed, the tasks gained
and lost with the paired 95 % interval of the difference and McNemar's exact p
(``rl.curve_stats.paired_comparison``), and over seeds a sign test with the task as the unit
(every seed is scored on the same held-out tasks, so a task's seeds are not independent pairs).

Writes ``OUT.json`` (per-seed and pooled curves, the task-by-task comparisons) and ``OUT.png`` (pooled curves with intervals).

``--all_steps`` reads every figure off the kept completions counting a task solved only when
every step is right too (the eval's stored ``all_steps_right``, or chain_math's
``every_step_right`` for completions scored before it was kept): a right answer reached
through a wrong step is not a success there.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rl.curve_stats import h50_summary, wilson_interval  # noqa: E402

sys.path.insert(0, str(ROOT / "recipes"))
from long_horizon_report import _h50 as h50_cell  # noqa: E402  (the report's h50 cell)

ORDER = ("base", "SFT", "RL", "SFT-more")


def completion_rows(eval_dir: Path, label: str, all_steps: bool = False) -> list[dict] | None:
    """The greedy completions of ``label`` in ``eval_dir`` (None if it kept none); with
    ``all_steps``, ``solved`` is true only for a solved completion whose every step is right."""
    from rl.eval_job import load_completions

    rows = load_completions(eval_dir, label)
    if rows is None or not all_steps:
        return rows
    from envs.chain_math_errors import row_all_steps_right

    return [{**r, "solved": bool(r["solved"]) and row_all_steps_right(r)} for r in rows]


def curve_from_rows(rows: list[dict]) -> dict:
    """``{"pass@1": {h: rate}, "n_per_horizon": {h: n}}`` (string horizons, as in
    ``horizon_curve.json``) of one model's kept completions."""
    n: dict[str, int] = {}
    wins: dict[str, int] = {}
    for r in rows:
        h = str(r["horizon"])
        n[h] = n.get(h, 0) + 1
        wins[h] = wins.get(h, 0) + bool(r["solved"])
    return {"pass@1": {h: wins[h] / n[h] for h in n}, "n_per_horizon": n}


def pooled_curves(run_dirs: list[Path], all_steps: bool = False) -> dict[str, dict]:
    """``{model: {"pass@1": {h: rate}, "pass@1_ci": {h: [lo, hi]}, "n": {h: trials}, "n_eff": {h: n},
    "clustered": {h: bool}, "h50": ..., "seeds": [{h: rate}, ...]}}`` over the models every run
    scored, horizons every run shares (``all_steps``: a success needs every step right, read off the
    completions).

    Every seed scores the same held-out tasks, so one task's results over seeds are not independent
    trials. Where every run kept completions of the model, the intervals (and h50's) take the task as
    the cluster: Wilson on the effective sample size (``clustered_counts``; ``n_eff`` <= ``n``);
    otherwise (curve JSONs only, or completions that do not match the curve's counts, said on
    stderr) every (seed, task) counts as one trial, ``n_eff`` is ``n`` and ``clustered`` false.
    """
    from rl.curve_stats import clustered_counts

    kept: list[dict[str, list[dict] | None]] = [{} for _ in run_dirs]

    def rows(i: int, model: str) -> list[dict] | None:  # each run's completions read once per model
        if model not in kept[i]:
            kept[i][model] = completion_rows(run_dirs[i] / "eval", model, all_steps)
        return kept[i][model]

    runs = [{m: curve_from_rows(rows(i, m)) for m in ORDER if rows(i, m) is not None} if all_steps else
            json.loads((d / "eval" / "horizon_curve.json").read_text())["curves"] for i, d in enumerate(run_dirs)]
    models = [m for m in ORDER if all(m in r for r in runs)]
    models += [m for m in runs[0] if m not in models and all(m in r for r in runs)]
    out = {}
    for model in models:
        curves = [r[model] for r in runs]
        hs = sorted(set.intersection(*(set(c["pass@1"]) for c in curves)), key=int)
        per_task = _successes_per_task([rows(i, model) for i in range(len(run_dirs))])
        counts, effective, clustered = {}, {}, {}
        for key in hs:
            h = int(key)
            counts[h] = (sum(round(c["pass@1"][key] * c["n_per_horizon"][key]) for c in curves),
                         sum(c["n_per_horizon"][key] for c in curves))
            tasks = per_task.get(h)
            # the completions must hold the very trials the curve counts, or the interval would sit
            # around another rate than the pass@1 shown
            clustered[h] = bool(tasks) and (sum(tasks), len(tasks) * len(run_dirs)) == counts[h]
            if tasks and not clustered[h]:
                print(f"{model} h={h}: the kept completions do not match the curve's counts "
                      f"({sum(tasks)}/{len(tasks) * len(run_dirs)} vs {counts[h][0]}/{counts[h][1]}): "
                      "interval with every (seed, task) as one trial", file=sys.stderr)
            effective[h] = clustered_counts(tasks, len(run_dirs)) if clustered[h] else counts[h]
        summary = h50_summary(effective)
        out[model] = {"pass@1": {h: w / n for h, (w, n) in counts.items()},
                      "pass@1_ci": {h: list(wilson_interval(w, n)) for h, (w, n) in effective.items()},
                      "n": {h: n for h, (_, n) in counts.items()},
                      "n_eff": {h: round(n, 1) for h, (_, n) in effective.items()}, "clustered": clustered,
                      "h50": summary["h50"], "h50_ci": [summary["low"], summary["high"]],
                      "h50_censored": summary["censored"],
                      "seeds": [{int(h): c["pass@1"][h] for h in hs} for c in curves]}
    return out


def _successes_per_task(rows_per_run: list[list[dict] | None]) -> dict[int, list[int]]:
    """``{horizon: [seeds that solved task t, ...]}`` over the horizons at which every run kept
    completions of the same tasks (empty when some run kept none)."""
    if any(rows is None for rows in rows_per_run):
        return {}
    solved = [{(int(r["horizon"]), str(r["task_id"])): bool(r["solved"]) for r in rows} for rows in rows_per_run]
    out: dict[int, list[int]] = {}
    for h in sorted({h for s in solved for h, _ in s}):
        keys = [sorted(k for k in s if k[0] == h) for s in solved]
        if all(k == keys[0] for k in keys):
            out[h] = [sum(s[key] for s in solved) for key in keys[0]]
    return out


def seeds_paired(run_dirs: list[Path], a: str, b: str, all_steps: bool = False) -> dict | None:
    """``a`` against ``b`` task by task: ``{"per_seed": [paired_comparison, ...], "tasks": {h: {"n",
    "better", "worse", "diff", "p"}}}``; None when some run kept no completions for either.

    Every seed is scored on the same held-out tasks (``eval.seed`` is fixed), so one task's pairs
    from S seeds are not independent draws. The pooled test therefore takes the task as the unit:
    its net count over seeds (seeds where a solved it minus seeds where b did) makes it better,
    worse or tied, and ``p`` is the exact sign test (McNemar's) on the better and worse tasks.
    ``diff`` is the mean of ``p_a - p_b`` over seeds. ``all_steps``: a success needs every step
    right (``completion_rows``).
    """
    from rl.curve_stats import mcnemar_exact_p, paired_comparison

    rows = [(completion_rows(d / "eval", a, all_steps), completion_rows(d / "eval", b, all_steps)) for d in run_dirs]
    if any(ra is None or rb is None for ra, rb in rows):
        return None
    try:
        per_seed = [paired_comparison(ra, baseline=rb) for ra, rb in rows]
    except ValueError as e:
        print(f"{a} vs {b} not compared task by task: {e}", file=sys.stderr)
        return None
    net: dict[tuple[int, str], int] = {}
    for pair in rows:
        for side, sign in zip(pair, (1, -1)):
            for r in side:
                key = (int(r["horizon"]), str(r["task_id"]))
                net[key] = net.get(key, 0) + sign * bool(r["solved"])
    tasks = {}
    for h in sorted({h for h, _ in net}):
        nets = [v for (hh, _), v in net.items() if hh == h]
        better, worse = sum(v > 0 for v in nets), sum(v < 0 for v in nets)
        tasks[h] = {"n": len(nets), "better": better, "worse": worse,
                    "diff": sum(nets) / (len(nets) * len(run_dirs)), "p": float(f"{mcnemar_exact_p(better, worse):.4g}")}
    return {"per_seed": per_seed, "tasks": tasks}


def _paired_lines(t: dict, run_dirs: list[Path]) -> list[str]:
    lines = [f"  {run_dirs[i].name}, task by task (gained/lost, paired 95 % interval in points, McNemar p): "
             + ", ".join(f"h{h} +{c['gained']}/-{c['lost']} [{100 * c['diff_ci'][0]:+.1f}, {100 * c['diff_ci'][1]:+.1f}]"
                         f" p {c['p']:.2g}" for h, c in table.items()) for i, table in enumerate(t["per_seed"])]
    lines.append("  over seeds, tasks better/worse (sign test on tasks): "
                 + ", ".join(f"h{h} {c['better']}/{c['worse']} p {c['p']:.2g}" for h, c in t["tasks"].items()))
    return lines


def _delta(a: dict, b: dict) -> str:
    cells = []
    for h, p in a["pass@1"].items():
        if h not in b["pass@1"]:
            continue
        (alo, ahi), (blo, bhi) = a["pass@1_ci"][h], b["pass@1_ci"][h]
        mark = " (disjoint)" if alo > bhi or blo > ahi else ""
        cells.append(f"h{h} {100 * (p - b['pass@1'][h]):+.0f}{mark}")
    return ", ".join(cells)


COMPARISONS = (("RL", "SFT"), ("RL", "SFT-more"), ("SFT-more", "SFT"))


def table(pooled: dict[str, dict], run_dirs: list[Path] | None = None, paired: dict | None = None) -> str:
    """The markdown table: per model, pooled pass@1 [95 %] per horizon (seed values below it),
    then each comparison in points and, given ``paired`` (``seeds_paired`` per ``"a vs b"``, of
    the ``run_dirs``), task by task."""
    hs = sorted({h for c in pooled.values() for h in c["pass@1"]})
    lines = ["| model | " + " | ".join(f"h={h}" for h in hs) + " | h50 |", "|---" * (len(hs) + 2) + "|"]
    for model, c in pooled.items():
        cells = []
        for h in hs:
            lo, hi = c["pass@1_ci"][h]
            seeds = " / ".join(f"{s[h]:.2f}" for s in c["seeds"])
            cells.append(f"{c['pass@1'][h]:.2f} [{lo:.2f}, {hi:.2f}] ({seeds})")
        lines.append(f"| {model} | " + " | ".join(cells) + f" | {h50_cell(c)} |")
    for a, b in COMPARISONS:
        if a in pooled and b in pooled:
            lines.append(f"\n{a} - {b}, points: {_delta(pooled[a], pooled[b])}")
            if run_dirs and paired and (t := paired.get(f"{a} vs {b}")) is not None:
                lines += _paired_lines(t, run_dirs)
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="long_horizon output dirs, one per seed")
    p.add_argument("--out", type=Path, default=None, help="write OUT.json and OUT.png")
    p.add_argument("--all_steps", action="store_true",
                   help="count a task solved only when every step is right too (from the kept completions)")
    args = p.parse_args(argv)
    missing = [str(d) for d in args.runs if not (d / "eval" / "horizon_curve.json").is_file()]
    if missing:
        p.error(f"no eval/horizon_curve.json in {missing}: run recipes/long_horizon.py there first")
    pooled = pooled_curves(args.runs, args.all_steps)
    verdict = "every step right" if args.all_steps else "the final answer"
    print(f"{len(args.runs)} runs pooled: {', '.join(map(str, args.runs))}; solved = {verdict}\n")
    paired = {f"{a} vs {b}": seeds_paired(args.runs, a, b, args.all_steps)
              for a, b in COMPARISONS if a in pooled and b in pooled}
    print(table(pooled, args.runs, paired))
    if args.out is not None:
        from rl.evaluate import plot_horizon_curves

        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps({"runs": [str(d) for d in args.runs], "solved": verdict,
                                                             "pooled": pooled, "paired": paired}, indent=1))
        plot_horizon_curves({m: c["pass@1"] for m, c in pooled.items()}, args.out.with_suffix(".png"),
                            title=f"held-out pass@1 ({verdict}), {len(args.runs)} seeds pooled",
                            intervals={m: c["pass@1_ci"] for m, c in pooled.items()})
        print(f"\nwrote {args.out.with_suffix('.json')} and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
