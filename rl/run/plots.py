"""Learning-curve plots from run directories (``metrics.jsonl``), saved as PNG.

``plot_runs`` draws chosen metrics; ``plot_standard`` draws the standard set of
``STANDARD_PLOTS`` (``horizon plot``), one PNG per entry, skipping the metrics a run did not log
and the figures with nothing to draw. A metric name holding ``*`` is a pattern (``correct/h*``):
its panel draws every matching column, one line per (run, column), ordered by their numbers.
Each panel is drawn against the step (left) and the loop's wall-clock minutes (right).
"""

from __future__ import annotations

import fnmatch
import math
import re
from pathlib import Path
from typing import Any

from rl.errors import DataError

# file stem -> the panels of that figure (metric names from metrics.jsonl, or patterns)
STANDARD_PLOTS: dict[str, list[str]] = {
    "reward": ["reward/mean", "correct/mean"],
    "accuracy_by_horizon": ["correct/h*", "curriculum/success_h*", "curriculum/level"],
    "kl": ["kl"],
    "entropy": ["entropy"],
    "clip_fraction": ["clip_frac/low", "clip_frac/high"],
    "lengths": ["len/mean", "len/truncated_frac"],
    "step_time": ["time/step_s", "time/rollout_s", "time/update_s"],
}


_STYLES = ("-", "--", ":", "-.")


def read_run_metrics(run: str | Path) -> list[dict[str, Any]]:
    """The rows of ``run/metrics.jsonl``; ``DataError`` naming the path when there is none."""
    from rl.run.io import read_jsonl

    path = Path(run) / "metrics.jsonl"
    if not path.is_file():
        what = "is not a directory" if not Path(run).is_dir() else "has no metrics.jsonl"
        raise DataError(f"'{run}' {what}: pass a run directory (the output_dir of horizon train), "
                        "which holds metrics.jsonl")
    return list(read_jsonl(path))


def run_labels(runs: list[str | Path]) -> dict[str, Path]:
    """Legend label -> run dir: the directory's name, or the path as given where names repeat."""
    names = [Path(r).resolve().name for r in runs]
    return {(name if names.count(name) == 1 else str(r)): Path(r) for name, r in zip(names, runs)}


def plot_runs(runs: dict[str, str | Path], metrics: list[str], path: str | Path, smooth: int = 1,
              title: str = "") -> Path:
    """One panel per metric, one line per run (label -> run dir), against step and wall-clock.

    ``smooth`` > 1 draws a trailing moving average over that many steps. Every panel is drawn,
    with or without data. Returns ``path``.
    """
    data = {label: read_run_metrics(run) for label, run in runs.items()}
    _draw(data, metrics, Path(path), smooth, title)
    return Path(path)


def plot_standard(runs: list[str | Path], output_dir: str | Path, smooth: int = 1) -> tuple[list[Path], list[str]]:
    """Draw ``STANDARD_PLOTS`` for ``runs`` (overlaid) into ``output_dir``.

    Returns (the PNGs written, the metrics or patterns no run logged). A panel without data is
    left out, and a figure without panels is not written.
    """
    data = {label: read_run_metrics(run) for label, run in run_labels(runs).items()}
    written, missing = [], []
    for stem, panels in STANDARD_PLOTS.items():
        present = [m for m in panels if _has_data(data, m)]
        missing += [m for m in panels if m not in present]
        if present:
            path = Path(output_dir) / f"{stem}.png"
            _draw(data, present, path, smooth, title=stem.replace("_", " "))
            written.append(path)
    return written, missing


def _columns(rows: list[dict[str, Any]], metric: str) -> list[str]:
    """The columns ``metric`` names in ``rows``: itself, or a pattern's matches by their numbers."""
    if "*" not in metric:
        return [metric]
    found = {k for r in rows for k in r if fnmatch.fnmatchcase(k, metric)}
    return sorted(found, key=lambda k: (int(n.group()) if (n := re.search(r"\d+", k)) else math.inf, k))


def _series(rows: list[dict[str, Any]], column: str) -> tuple[list[int], list[float], list[float]]:
    """(steps, wall-clock minutes, values) of the rows holding a number in ``column``.

    The minutes are ``time/train_s``, the loop's own clock, which leaves out pauses between a
    kill and a resume; rows without it use ``time`` since the first step began.
    """
    t0 = rows[0].get("time", 0.0) - rows[0].get("time/step_s", 0.0) if rows else 0.0
    points = [(r["step"], r.get("time/train_s", r.get("time", t0) - t0) / 60, float(r[column])) for r in rows
              if isinstance(r.get(column), (int, float))]
    steps, minutes, values = (list(c) for c in zip(*points)) if points else ([], [], [])
    return steps, minutes, values


def _has_data(data: dict[str, list[dict[str, Any]]], metric: str) -> bool:
    return any(not math.isnan(v) for rows in data.values() for column in _columns(rows, metric)
               for v in _series(rows, column)[2])


def _draw(data: dict[str, list[dict[str, Any]]], metrics: list[str], path: Path, smooth: int, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(metrics), 2, figsize=(10, 3.2 * len(metrics)), squeeze=False)
    for i, metric in enumerate(metrics):
        # a run keeps its colour in every panel; in a pattern's panel the colour is the column
        # (horizon) and the line style the run
        union = _columns([{k: None for rows in data.values() for r in rows for k in r}], metric)
        for run_index, (label, rows) in enumerate(data.items()):
            for column in _columns(rows, metric):
                steps, minutes, values = _series(rows, column)
                if not steps:
                    continue
                if column == metric:
                    name, style = label, dict(color=f"C{run_index % 10}")
                else:
                    short = column.rsplit("/", 1)[-1]
                    name = f"{label} {short}" if len(data) > 1 else short
                    style = dict(color=f"C{union.index(column) % 10}", linestyle=_STYLES[run_index % len(_STYLES)])
                values = _moving_average(values, smooth)
                axes[i][0].plot(steps, values, label=name, **style)
                axes[i][1].plot(minutes, values, label=name, **style)
        axes[i][0].set_ylabel(metric + (f" (avg of {smooth})" if smooth > 1 else ""))
        axes[i][0].set_xlabel("step")
        axes[i][1].set_xlabel("wall-clock minutes")
        for ax in axes[i]:
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _moving_average(values, window: int) -> list[float]:
    """Trailing mean over ``window`` points, NaNs left out (NaN where the window holds only NaN)."""
    out = []
    for i in range(len(values)):
        chunk = [v for v in values[max(0, i - window + 1): i + 1] if not math.isnan(v)]
        out.append(sum(chunk) / len(chunk) if chunk else math.nan)
    return out
