"""Learning-curve plots from run directories (``metrics.jsonl``), saved as PNG."""

from __future__ import annotations

from pathlib import Path


def plot_runs(runs: dict[str, str | Path], metrics: list[str], path: str | Path, smooth: int = 1,
              title: str = "") -> Path:
    """One panel per metric, one line per run (label -> run dir), against step and wall-clock.

    ``smooth`` > 1 draws a trailing moving average over that many steps. Returns ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rl.run.io import read_jsonl

    fig, axes = plt.subplots(len(metrics), 2, figsize=(10, 3.2 * len(metrics)), squeeze=False)
    for label, run in runs.items():
        rows = list(read_jsonl(Path(run) / "metrics.jsonl"))
        if not rows:
            continue
        t0 = rows[0]["time"] - rows[0].get("time/step_s", 0.0)
        for i, metric in enumerate(metrics):
            # time/train_s: the loop's own clock, which leaves out pauses between a kill and a resume
            points = [(r["step"], r.get("time/train_s", r["time"] - t0) / 60, r[metric]) for r in rows
                      if r.get(metric) is not None]
            if not points:
                continue
            steps, minutes, values = zip(*points)
            values = _moving_average(values, smooth)
            axes[i][0].plot(steps, values, label=label)
            axes[i][1].plot(minutes, values, label=label)
    for i, metric in enumerate(metrics):
        axes[i][0].set_ylabel(metric + (f" (avg of {smooth})" if smooth > 1 else ""))
        axes[i][0].set_xlabel("step")
        axes[i][1].set_xlabel("wall-clock minutes")
        for ax in axes[i]:
            ax.grid(alpha=0.3)
            ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _moving_average(values, window: int) -> list[float]:
    out = []
    for i in range(len(values)):
        chunk = values[max(0, i - window + 1): i + 1]
        out.append(sum(chunk) / len(chunk))
    return out
