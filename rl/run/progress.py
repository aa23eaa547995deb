"""``rich`` progress bars: training steps with the latest step's headline metrics, and a
plain work bar (``WorkBar``) for stages that are not step loops (evaluations)."""

from __future__ import annotations

import math

HEADLINE = ("reward/mean", "correct/mean", "kl", "entropy", "time/step_s")


class Progress:
    """Steps done of ``total``; with ``budget_s`` (a wall-clock budget) the bar's total becomes
    the steps the budget still allows at the latest step's pace, so the ETA is the budget's."""

    def __init__(self, total: int, completed: int = 0, enabled: bool = True, budget_s: float | None = None):
        self.total, self.completed, self.enabled, self.budget_s = total, completed, enabled, budget_s
        self._bar = None

    def __enter__(self) -> "Progress":
        if self.enabled:
            self._bar = _rich_bar("train")
            self._task = self._bar.add_task("", total=self.total, completed=self.completed)
        return self

    def advance(self, row: dict) -> None:
        if self._bar is None:
            return
        parts = []
        for key in HEADLINE:
            value = row.get(key)
            if isinstance(value, float) and math.isfinite(value):
                parts.append(f"{key.split('/')[0] if key != 'time/step_s' else 's/step'}={value:.3g}")
        self.completed += 1
        total = self.total
        step_s, spent_s = row.get("time/step_s"), row.get("time/train_s")
        if self.budget_s and step_s and spent_s is not None:
            total = min(total, self.completed + math.ceil(max(0.0, self.budget_s - spent_s) / step_s))
        self._bar.update(self._task, completed=self.completed, total=total, description=" ".join(parts))

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


def _rich_bar(label: str):
    """An entered rich bar: label, bar, done/total, ETA, description."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
    from rich.progress import Progress as RichProgress

    bar = RichProgress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
                       TimeRemainingColumn(), TextColumn("{task.description}"))
    bar.__enter__()
    return bar


class WorkBar:
    """Units of work done of ``total`` (e.g. generations of an evaluation), with an ETA."""

    def __init__(self, label: str, total: int, enabled: bool = True):
        self.label, self.total, self.enabled = label, total, enabled
        self._bar = None

    def __enter__(self) -> "WorkBar":
        if self.enabled:
            self._bar = _rich_bar(self.label)
            self._task = self._bar.add_task("", total=self.total)
        return self

    def advance(self, units: int, description: str = "") -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=units, description=description)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
