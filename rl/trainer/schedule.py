"""The policy's learning-rate schedule: warmup, then constant or a cosine over the run's budget.

Written here rather than taken from transformers' ``get_cosine_schedule_with_warmup``, which decays
over a fixed step count: a time-budgeted run (``max_train_s``) does not know its step count, so
the cosine here runs over the fraction of the budget spent - steps or seconds, whichever ends the
run first. That fraction is read from the loop's own counters (the step, ``train_s``), which the
checkpoint holds: a resumed run picks up the schedule where it stopped (with a step budget, exactly the
uninterrupted run's rates; with a time budget the seconds after the resume are measured anew).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from rl.trainer.config import OptimConfig


def budget_spent(updates_done: int, max_steps: int, train_s: float, max_train_s: float | None) -> float:
    """The fraction of the run's budget spent after ``updates_done`` updates and ``train_s`` loop seconds,
    in [0, 1]: the larger of the step fraction and (with a time budget) the seconds fraction."""
    spent = updates_done / max_steps
    if max_train_s is not None:
        spent = max(spent, train_s / max_train_s)
    return min(1.0, spent)


@dataclass(frozen=True)
class LRSchedule:
    """The factor on each parameter group's base rate: ``(u + 1) / (warmup + 1)`` for the ``u``-th
    update (0-based) while ``u < warmup``, times, with ``lr_scheduler: cosine``,
    ``min_lr_ratio + (1 - min_lr_ratio) * (1 + cos(pi * spent)) / 2`` (``spent`` from
    ``budget_spent``: 1 at the start, ``min_lr_ratio`` when the budget is gone)."""

    optim: OptimConfig

    def factor(self, update: int, spent: float) -> float:
        """Returns the factor for the ``update``-th update (0-based) with ``spent`` of the budget gone."""
        warmup = self.optim.warmup_steps
        factor = min(1.0, (update + 1) / (warmup + 1)) if warmup else 1.0
        if self.optim.lr_scheduler == "cosine":
            floor = self.optim.min_lr_ratio
            factor *= floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * spent))
        return factor

    def apply(self, optimizer: torch.optim.Optimizer, base_lrs: list[float], update: int, spent: float) -> float:
        """Set every group's rate for the coming update; returns the first group's (the policy's)."""
        factor = self.factor(update, spent)
        for group, base in zip(optimizer.param_groups, base_lrs):
            group["lr"] = base * factor
        return optimizer.param_groups[0]["lr"]
