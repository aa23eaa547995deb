"""One credit-assignment path: configured signals -> per-token advantages the update uses.

Every source of credit (group estimators, GAE, KL in the reward, PRM process advantages,
the teacher's reverse KL) is a signal: an object called on the step's ``TrainBatch`` that
returns per-token advantages, weighted already (``SignalOutput``). ``assign_credit`` sums them;
the signal that trains a value head (GAE) also gives the return targets. The loop composes the
configured signals and never branches on which they are.

Which signals a config turns on, and which cannot be combined, the signal classes declare
(``enabled``, ``check``, ``excludes``); ``check_signals`` runs those checks when the config is
built, before any model loads.

Example::

    signals = build_signals(cfg, policy)
    credit = assign_credit(batch, signals)
    credit.advantages[i]          # 1-D tensor, one advantage per token of batch.samples[i]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from rl.errors import ConfigError
from rl.trainer.batch import TrainBatch
from rl.trainer.signals import GAE, GroupAdvantage, KLReward, ProcessReward
from rl.trainer.teacher import TeacherKL

SIGNALS = (GroupAdvantage, GAE, KLReward, ProcessReward, TeacherKL)


@dataclass
class Credit:
    """The advantages of a batch, summed over signals, and where they came from.

    ``advantages[i]``: per-token advantages of sample i (0 off policy tokens); ``returns[i]``:
    value targets (PPO) or None; ``terms[name][i]``: signal ``name``'s share of
    ``advantages[i]``; ``metrics``: the signals' metrics.
    """

    advantages: list[torch.Tensor]
    returns: list[torch.Tensor] | None = None
    terms: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)

    def select(self, keep: list[int]) -> "Credit":
        return Credit([self.advantages[i] for i in keep],
                      None if self.returns is None else [self.returns[i] for i in keep],
                      {name: [rows[i] for i in keep] for name, rows in self.terms.items()}, self.metrics)


def enabled_signals(cfg) -> list[type]:
    return [cls for cls in SIGNALS if cls.enabled(cfg)]


def check_signals(cfg) -> None:
    """Raise ``ConfigError`` when an enabled signal's requirement fails or two exclude each other."""
    classes = enabled_signals(cfg)
    names = {cls.name for cls in classes}
    for cls in classes:
        cls.check(cfg)
        dense = getattr(cls, "dense", None)
        # dynamic sampling can keep a dense signal's groups only when their credit is known at
        # collect time (collect.informative)
        at_collect = getattr(cls, "collect_time_credit", lambda _cfg: None)(cfg)
        if dense and cfg.algorithm.dynamic_sampling and at_collect is None:
            raise ConfigError(f"config key 'algorithm.dynamic_sampling': drops groups whose answers are all "
                              f"equally correct, but {dense} gives such groups a per-token signal scored only "
                              "at train time: turn one off (with reward.prm: exact the two combine)")
        for other, (key, why) in cls.excludes.items():
            if other in names:
                raise ConfigError(f"config key '{key}': {why}")


def build_signals(cfg, policy) -> list[Any]:
    """The configured signals, built (PRM and teacher models load here)."""
    return [cls.build(cfg, policy) for cls in enabled_signals(cfg)]


def trainable_modules(signals) -> dict[str, torch.nn.Module]:
    """Modules that signals train beside the policy (PPO's value head), by checkpoint name."""
    return {"value_head": s.value_head for s in signals if getattr(s, "value_head", None) is not None}


def assign_credit(batch: TrainBatch, signals) -> Credit:
    """Sum every signal's per-token advantages over ``batch``; returns a ``Credit``."""
    if not batch.samples:
        return Credit([], None)
    totals = [torch.zeros(len(s)) for s in batch.samples]
    credit = Credit(totals)
    for signal in signals:
        out = signal(batch)
        if len(out.advantages) != len(batch.samples):
            raise ValueError(f"signal {signal.name} gave {len(out.advantages)} rows for {len(batch.samples)} samples")
        for total, row in zip(totals, out.advantages):
            total += row
        credit.terms[signal.name] = out.advantages
        credit.metrics.update(out.metrics)
        if out.returns is not None:
            credit.returns = out.returns
    return credit


def drop_zero_credit_groups(batch: TrainBatch, credit: Credit) -> tuple[TrainBatch, Credit, int]:
    """Leave out groups in which no sample has a non-zero advantage on a policy token (they give
    the policy loss no gradient); returns ``(batch, credit, groups_dropped)``. Nothing is dropped
    when a value head trains (its loss uses every sample)."""
    if credit.returns is not None:
        return batch, credit, 0
    live_groups = {batch.origin[i][0] for i, (adv, s) in enumerate(zip(credit.advantages, batch.samples))
                   if bool((adv * torch.tensor(s.loss_mask, dtype=adv.dtype)).abs().sum() > 0)}
    keep = [i for i, (g, _) in enumerate(batch.origin) if g in live_groups]
    dropped = len({g for g, _ in batch.origin} - live_groups)
    if len(keep) == len(batch.samples):
        return batch, credit, 0
    return batch.select(keep), credit.select(keep), dropped


def rollout_records(step: int, batch: TrainBatch, credit: Credit, left_out_groups=()) -> list[dict[str, Any]]:
    """One ``rollouts/step_N.jsonl`` row per episode of the batch's groups, then of
    ``left_out_groups`` (set aside by dynamic sampling), with what the update used: ``trained``
    (its samples entered the update), ``advantage`` (mean over its policy tokens),
    ``advantage_tokens`` (per policy token, over its samples in order) and ``advantage_terms``
    (each signal's mean share); None / [] / {} for episodes left out."""
    by_episode: dict[tuple[int, int], list[int]] = {}
    for i, origin in enumerate(batch.origin):
        by_episode.setdefault(origin, []).append(i)
    rows = []
    for g, group in enumerate([*batch.groups, *left_out_groups]):
        for e, episode in enumerate(group.episodes):
            samples = by_episode.get((g, e), [])
            tokens = [v for i in samples for v in _policy_values(credit.advantages[i], batch.samples[i])]
            terms = {name: _mean([v for i in samples for v in _policy_values(rows_[i], batch.samples[i])])
                     for name, rows_ in credit.terms.items()} if samples else {}
            rows.append({**episode.to_record(step), "trained": bool(samples), "advantage": _mean(tokens),
                         "advantage_tokens": [round(v, 6) for v in tokens], "advantage_terms": terms})
    return rows


def _policy_values(row: torch.Tensor, sample) -> list[float]:
    return [float(v) for v, m in zip(row.tolist(), sample.loss_mask) if m]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
