"""``report.md`` of a ``long_horizon`` run: the horizon-curve table with 95 % intervals, RL against
its start and against the SFT-more control, each model's step hazard (chain_math), training plots
and sampled traces with step labels."""

from __future__ import annotations

import json
from pathlib import Path

ORDER = ("base", "SFT", "RL", "SFT-more")


def _cell(curve: dict, h: str) -> str:
    p, (lo, hi) = curve["pass@1"][h], curve["pass@1_ci"][h]
    return f"{p:.2f} [{lo:.2f}, {hi:.2f}]"


def _h50(curve: dict) -> str:
    lo, hi = curve["h50_ci"]
    value = "< shortest" if curve["h50"] is None else f"{curve['h50']:.2f}"
    fmt = lambda x: "-" if x is None else f"{x:.2f}"  # noqa: E731
    return f"{value} [{fmt(lo)}, {fmt(hi)}{'+' if curve.get('h50_censored') else ''}]"


def compare(a: dict, b: dict, paired: dict[int, dict] | None = None) -> list[str]:
    """Per horizon: ``a - b`` in points, whether the two 95 % intervals are disjoint, and, when
    ``paired`` (``rl.curve_stats.paired_comparison`` of the two models' completions) is given, the
    tasks gained and lost with the paired 95 % interval of the difference and McNemar's p."""
    rows = []
    for h in a["pass@1"]:
        if h not in b["pass@1"]:
            continue
        d = 100 * (a["pass@1"][h] - b["pass@1"][h])
        (alo, ahi), (blo, bhi) = a["pass@1_ci"][h], b["pass@1_ci"][h]
        disjoint = alo > bhi or blo > ahi
        cell = f"h{h} {d:+.1f}{' (intervals disjoint)' if disjoint else ''}"
        if paired and int(h) in paired:
            t = paired[int(h)]
            lo, hi = (100 * x for x in t["diff_ci"])
            cell += f" (+{t['gained']}/-{t['lost']} tasks, paired [{lo:+.1f}, {hi:+.1f}], p {t['p']:.2g})"
        rows.append(cell)
    return rows


def sampled_traces(run_dir: Path, n: int = 3) -> list[str]:
    """A few episodes of the last RL step, longest horizon first, each step with its exact label."""
    files = sorted((run_dir / "rollouts").glob("step_*.jsonl"), key=lambda p: int(p.stem.split("_")[1]))
    if not files:
        return []
    rows = [json.loads(line) for line in files[-1].read_text().splitlines() if line.strip()]
    rows.sort(key=lambda r: (-(r.get("horizon") or 0), not (r.get("outcome") or {}).get("correct", False)))
    picked, seen = [], set()
    for row in rows:
        if row["task_id"] in seen:
            continue
        seen.add(row["task_id"])
        labels = row.get("step_labels") or [None] * len(row["steps"])
        lines = [f"{'✓' if lab else '✗' if lab is not None else '?'} {step}" for step, lab in zip(row["steps"], labels)]
        correct = (row.get("outcome") or {}).get("correct")
        picked.append(f"**{row['task_id']}** (horizon {row['horizon']}, answer {row['answer']}, "
                      f"{'correct' if correct else 'wrong'}):\n\n```\n" + "\n".join(lines) + "\n```")
        if len(picked) == n:
            break
    return picked


def hazard_table(eval_dir: Path, labels: list[str]) -> list[str]:
    """Markdown lines: chain_math's step hazard (``envs.chain_math_errors.step_hazard``) of each
    model's held-out greedy completions, one table per horizon of 2 or more steps, a row per model."""
    from envs.chain_math_errors import step_hazard
    from rl.eval_job import load_completions

    hazards = {label: step_hazard(rows) for label in labels if (rows := load_completions(eval_dir, label))}
    horizons = sorted({h for by_h in hazards.values() for h in by_h if h >= 2})
    if not horizons:
        return []
    lines = ["## Where the chains break: step hazard", "",
             "Of the held-out completions still right before operation j (at risk in brackets), the share "
             "whose first error is at j. Independent errors at one rate per step would give flat rows, the "
             "same at every horizon; a rising row, or an op that fails more often in a longer problem, is the "
             "chain breaking.", ""]
    for h in horizons:
        lines += [f"| h={h} | " + " | ".join(f"op {j}" for j in range(1, h + 1)) + " |", "|---|" + "---|" * h]
        for label, by_h in hazards.items():
            ops = by_h.get(h, {})
            cells = [f"{ops[j]['hazard']:.2f} ({ops[j]['at_risk']})" if j in ops else "" for j in range(1, h + 1)]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def write_report(cfg, out: Path, state: dict) -> Path:
    """Write ``out/report.md`` (and ``out/rl_training.png``); returns its path."""
    from rl.eval_job import paired_against
    from rl.run.io import atomic_write_text
    from rl.run.plots import plot_runs

    curves = json.loads((out / "eval" / "horizon_curve.json").read_text())["curves"]
    present = [k for k in ORDER if k in curves]
    horizons = list(curves[present[0]]["pass@1"]) if present else []
    n = curves[present[0]]["n_per_horizon"] if present else {}
    lines = [f"# long_horizon: {cfg.model}, seed {cfg.seed}", "",
             f"Held-out greedy pass@1 per horizon (tasks per horizon: {json.dumps(n)}), Wilson 95 % intervals; "
             "h50 is where the curve crosses 50 % (interpolated in log2 h), its interval read off the "
             "interval bounds ('+': the upper curve never fell below 50 % in the horizons measured). "
             "The comparisons pair the models task by task: tasks gained / lost, the paired 95 % interval "
             "of the difference (Newcombe) and the exact McNemar p.", "",
             "![horizon curves](eval/horizon_curve.png)", "",
             "| model | " + " | ".join(f"h={h}" for h in horizons) + " | h50 |",
             "|---|" + "---|" * (len(horizons) + 1)]
    for label in present:
        c = curves[label]
        lines.append(f"| {label} | " + " | ".join(_cell(c, h) for h in horizons) + f" | {_h50(c)} |")
    lines.append("")
    chains = [k for k in present if "pass@1_all_steps" in curves[k]]
    if chains:  # the env labels steps exactly: right answers reached through a wrong step left out
        lines += ["The same greedy completions, counting only those whose every step is right (a right final "
                  "answer after a wrong step, e.g. two slips that cancel, is left out):", "",
                  "| model, every step right | " + " | ".join(f"h={h}" for h in horizons) + " |",
                  "|---|" + "---|" * len(horizons)]
        for label in chains:
            c = curves[label]
            cells = [_cell({"pass@1": c["pass@1_all_steps"], "pass@1_ci": c["pass@1_all_steps_ci"]}, h)
                     if h in c["pass@1_all_steps"] else "" for h in horizons]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    for a, b in (("RL", "SFT"), ("RL", "SFT-more"), ("SFT-more", "SFT"), ("SFT", "base")):
        if a in curves and b in curves:
            lines.append(f"- **{a} vs {b}** (points): "
                         + ", ".join(compare(curves[a], curves[b], paired_against(out / "eval", a, b))))
    lines += ["", "Minutes per stage: " + ", ".join(f"{k} {v['minutes']}" for k, v in state.items()), ""]
    if (cfg.eval_env or cfg.rl.env).name == "chain_math":
        lines += hazard_table(out / "eval", present)
    if (out / "rl" / "metrics.jsonl").exists():
        plot_runs({"GRPO + curriculum": out / "rl"}, ["reward/mean", "correct/mean", "curriculum/level"],
                  out / "rl_training.png", title="RL from the distilled student")
        lines += ["## RL training", "", "![training](rl_training.png)", "",
                  "## Sampled traces (last RL step; ✓/✗ = exact step label)", ""]
        lines += sampled_traces(out / "rl")
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
