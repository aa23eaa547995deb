"""The run directory: resolved config, append-only metrics and rollouts, checkpoints, plots.

Layout::

    <output_dir>/config.yaml            the resolved config (written atomically)
    <output_dir>/metrics.jsonl          one row per step: {"step", "time", <metric>: value}
    <output_dir>/rollouts/step_N.jsonl  every episode sampled at step N with its rewards
    <output_dir>/checkpoints/step_N/    see rl/checkpoint.py
    <output_dir>/eval/*.json            evaluations
    <output_dir>/plots/*.png            ``horizon plot``
    <output_dir>/tensorboard/, trackio/, wandb/   the trackers of ``report_to`` (rl/run/tracking.py)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

from rl.config import save_config, to_dict
from rl.run.io import append_jsonl, atomic_write_text, read_jsonl
from rl.run.tracking import Trackers


class RunDir:
    """One run's directory. ``report_to`` adds trackers beside ``metrics.jsonl`` (checked here,
    before any model loads: ``ConfigError`` for an unknown name or a missing package); ``config``
    (a config dataclass or dict) is what they record as the run's config; ``name`` is the run's
    name in them (default: the directory's name). Call ``close()`` (or use ``with``) at the end.
    """

    def __init__(self, path: str | Path, report_to: Sequence[str] = ("jsonl",), config: Any = None,
                 name: str | None = None):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.trackers = Trackers(report_to, self.path, name, to_dict(config) if config is not None else None)

    def __enter__(self) -> "RunDir":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Flush and close the trackers (metrics.jsonl needs nothing: every row is fsynced)."""
        self.trackers.close()

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def write_config(self, cfg: Any) -> None:
        save_config(cfg, self.path / "config.yaml")

    def log_metrics(self, step: int, metrics: dict[str, Any]) -> dict[str, Any]:
        """Append one metrics row (``step`` and wall-clock ``time`` added), send it to the trackers
        and return it."""
        row = {"step": step, "time": time.time(), **metrics}
        append_jsonl(self.metrics_path, [row])
        self.trackers.log(step, metrics)
        return row

    def write_rollouts(self, step: int, records: list[dict[str, Any]]) -> None:
        path = self.path / "rollouts" / f"step_{step}.jsonl"
        path.unlink(missing_ok=True)  # a step re-run after resume replaces its partial file
        append_jsonl(path, records)

    def write_json(self, relative: str, text: str) -> Path:
        path = self.path / relative
        atomic_write_text(path, text)
        return path

    def read_metrics(self) -> list[dict[str, Any]]:
        return list(read_jsonl(self.metrics_path)) if self.metrics_path.exists() else []

    def truncate_metrics_after(self, step: int) -> None:
        """Drop metric rows past ``step`` (the steps a resumed run will redo)."""
        rows = [r for r in self.read_metrics() if r["step"] <= step]
        import json

        atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in rows))
