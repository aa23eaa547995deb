"""A ``rich`` progress bar that shows the latest step's headline metrics."""

from __future__ import annotations

import math

HEADLINE = ("reward/mean", "correct/mean", "kl", "entropy", "time/step_s")


class Progress:
    def __init__(self, total: int, completed: int = 0, enabled: bool = True):
        self.total, self.completed, self.enabled = total, completed, enabled
        self._bar = None

    def __enter__(self) -> "Progress":
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                TimeRemainingColumn(), TextColumn("{task.description}"),
            )
            self._bar.__enter__()
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
        self._bar.update(self._task, advance=1, description=" ".join(parts))

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
