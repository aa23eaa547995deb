"""Credit signals: each maps the step's ``TrainBatch`` to per-token advantages (+ metrics).

- ``GroupAdvantage`` (grpo, dr_grpo, rloo, reinforce_pp, raft): one advantage per episode from its
  group's scored rewards, broadcast over the sample's policy tokens. ``reinforce_pp`` then
  whitens all the step's episode advantages together (REINFORCE++'s global normalisation).
- ``KLReward`` (``kl_mode: reward`` with a group estimator): the reward-to-go of the per-token
  KL penalty, ``A_t = - kl_coef * sum_{k >= t} KL_k`` (gamma = 1), so a token is charged for the
  divergence it and its successors cause.
- ``GAE`` (PPO, ``advantage: gae``): per-token rewards are the outcome reward on the sample's
  last policy token plus, with ``kl_mode: reward``, ``-kl_coef * KL_t`` on every policy token
  (Ouyang et al. 2022, eq. 2); GAE(gamma, lambda) against the value head gives advantages and
  return targets. The KL penalty is inside GAE's rewards (it is discounted and bootstrapped
  with them), so ``KLReward`` is not used beside it.
- ``ProcessReward`` (``reward.prm``): a frozen PRM scores every step; DeepSeekMath process
  advantages (``rl.algorithms.process``), weighted by ``reward.process_weight`` (the group
  signal then weighs ``1 - process_weight``).
- ``TeacherKL`` (on-policy distillation) lives in ``rl.trainer.teacher``.

KL_t is estimated on the sampled token from the trainer's (old) and reference logprobs with
``algorithm.kl_estimator`` (k1 = ``logp - ref`` is the usual choice in a reward). Multi-turn
episodes rendered as one sample per turn get the outcome on each turn's last token.

A signal class declares when a config turns it on (``enabled``), what it requires of the rest
of the config (``check``) and which other signals it cannot be combined with (``excludes``:
name -> reason); ``rl.trainer.credit`` checks them all before any model loads.
"""

from __future__ import annotations

from pathlib import Path

import torch

from rl.algorithms.advantages import ADVANTAGE_ESTIMATORS, normalize_batch
from rl.algorithms.gae import gae, whiten
from rl.algorithms.losses import per_token_kl
from rl.algorithms.process import first_error_advantages, process_advantages, token_advantages_from_steps
from rl.config import check
from rl.trainer.batch import SignalOutput, TrainBatch


def pad_rows(rows: list[torch.Tensor], width: int) -> torch.Tensor:
    """Right-pad 1-D tensors with zeros into a ``[B, width]`` float tensor."""
    out = torch.zeros(len(rows), width)
    for i, row in enumerate(rows):
        out[i, : row.shape[0]] = row.float()
    return out


def unpad(rows_bt: torch.Tensor, batch: TrainBatch) -> list[torch.Tensor]:
    return [rows_bt[i, : len(s)].clone() for i, s in enumerate(batch.samples)]


def kl_penalty_bt(batch: TrainBatch, mask_bt: torch.Tensor, kl_coef: float, estimator: str) -> torch.Tensor:
    """``kl_coef * KL_t`` on policy tokens, 0 elsewhere ([B, T])."""
    width = mask_bt.shape[1]
    kl_bt = per_token_kl(pad_rows(batch.old_logprobs(), width), pad_rows(batch.ref_logprobs(), width), estimator)
    return kl_coef * torch.where(mask_bt != 0, kl_bt, torch.zeros_like(kl_bt))


class GroupAdvantage:
    name = "group"
    excludes: dict[str, tuple[str, str]] = {}  # other signal -> (config key, why)

    def __init__(self, estimator: str, weight: float = 1.0):
        self.estimator, self.weight = estimator, weight

    @staticmethod
    def enabled(cfg) -> bool:
        return cfg.algorithm.advantage != "gae"

    @staticmethod
    def check(cfg) -> None:
        check(cfg.rollout.group_size >= 2, "rollout.group_size",
              f"must be >= 2 for group-relative advantages ({cfg.algorithm.advantage}); only PPO "
              f"(algorithm.advantage: gae) works with 1, got {cfg.rollout.group_size}")
        check(not (cfg.algorithm.advantage == "raft" and cfg.reward.prm), "reward.prm",
              "advantage: raft trains only on each group's best completions (positive only), and PRM step "
              "credit is signed: set reward.prm: null, or use advantage: grpo")

    @classmethod
    def build(cls, cfg, policy) -> "GroupAdvantage":
        if cfg.reward.prm:
            weight = 1.0 - cfg.reward.process_weight
        elif cfg.distill.teacher:
            weight = cfg.distill.outcome_coef
        else:
            weight = 1.0
        return cls(cfg.algorithm.advantage, weight)

    def episode_advantages(self, groups) -> dict[tuple[int, int], float]:
        """``(group, episode) -> advantage`` for every scored episode of ``groups``."""
        fn = ADVANTAGE_ESTIMATORS[self.estimator]
        keys, values = [], []
        for g, group in enumerate(groups):
            scored = [(e, ep) for e, ep in enumerate(group.episodes) if ep.reward is not None]
            if not scored:
                continue
            advantages_g = fn(torch.tensor([ep.reward for _, ep in scored], dtype=torch.float32))
            keys += [(g, e) for e, _ in scored]
            values.append(advantages_g)
        if not keys:
            return {}
        advantages_n = torch.cat(values)
        if self.estimator == "reinforce_pp":
            advantages_n = normalize_batch(advantages_n)
        return dict(zip(keys, advantages_n.tolist()))

    def __call__(self, batch: TrainBatch) -> SignalOutput:
        by_episode = self.episode_advantages(batch.groups)
        return SignalOutput([self.weight * by_episode[o] * m for o, m in zip(batch.origin, batch.masks)])


class KLReward:
    name = "kl_reward"
    excludes: dict[str, tuple[str, str]] = {}  # other signal -> (config key, why)

    def __init__(self, kl_coef: float, estimator: str):
        self.kl_coef, self.estimator = kl_coef, estimator

    @staticmethod
    def enabled(cfg) -> bool:
        algo = cfg.algorithm
        return algo.kl_mode == "reward" and algo.kl_coef > 0 and algo.advantage != "gae"

    @staticmethod
    def check(cfg) -> None:
        pass

    @classmethod
    def build(cls, cfg, policy) -> "KLReward":
        return cls(cfg.algorithm.kl_coef, cfg.algorithm.kl_estimator)

    def __call__(self, batch: TrainBatch) -> SignalOutput:
        width = max(len(s) for s in batch.samples)
        mask_bt = pad_rows(batch.masks, width)
        penalty_bt = kl_penalty_bt(batch, mask_bt, self.kl_coef, self.estimator)
        to_go_bt = penalty_bt.flip(-1).cumsum(-1).flip(-1)  # sum over k >= t (masked k add 0)
        n = float(mask_bt.sum().clamp(min=1))
        return SignalOutput(unpad(-to_go_bt * mask_bt, batch), None, {"kl_reward/mean": float(penalty_bt.sum() / n)})


class GAE:
    name = "gae"
    excludes: dict[str, tuple[str, str]] = {}  # other signal -> (config key, why)

    def __init__(self, algo, value_head):
        self.algo, self.value_head = algo, value_head

    @staticmethod
    def enabled(cfg) -> bool:
        return cfg.algorithm.advantage == "gae"

    @staticmethod
    def check(cfg) -> None:
        pass

    @classmethod
    def build(cls, cfg, policy) -> "GAE":
        from rl.trainer.value_head import build_value_head

        return cls(cfg.algorithm, build_value_head(policy))

    def __call__(self, batch: TrainBatch) -> SignalOutput:
        """Whitened GAE advantages (``algorithm.whiten_advantages``) and return targets."""
        algo = self.algo
        width = max(len(s) for s in batch.samples)
        mask_bt = pad_rows(batch.masks, width)
        rewards_bt = torch.zeros_like(mask_bt)
        for i, sample in enumerate(batch.samples):
            last = max(j for j, m in enumerate(sample.loss_mask) if m)
            rewards_bt[i, last] = batch.episode(i).reward
        metrics: dict[str, float] = {}
        n = float(mask_bt.sum().clamp(min=1))
        if algo.kl_mode == "reward" and algo.kl_coef > 0:
            penalty_bt = kl_penalty_bt(batch, mask_bt, algo.kl_coef, algo.kl_estimator)
            rewards_bt = rewards_bt - penalty_bt
            metrics["kl_reward/mean"] = float(penalty_bt.sum() / n)
        values_bt = pad_rows(batch.values(), width)
        advantages_bt, returns_bt = gae(rewards_bt, values_bt, mask_bt, algo.gamma, algo.lam)
        metrics["value/mean"] = float((values_bt * mask_bt).sum() / n)
        metrics["value/explained_var"] = explained_variance(values_bt, returns_bt, mask_bt)
        if algo.whiten_advantages:
            advantages_bt = whiten(advantages_bt, mask_bt)
        return SignalOutput(unpad(advantages_bt * mask_bt, batch), unpad(returns_bt, batch), metrics)


def explained_variance(values_bt, returns_bt, mask_bt) -> float:
    """``1 - Var(R - V) / Var(R)`` over policy tokens (1: perfect critic, <= 0: useless)."""
    keep = mask_bt != 0
    r, v = returns_bt[keep], values_bt[keep]
    var_r = r.var(unbiased=False)
    return float(1 - (r - v).var(unbiased=False) / var_r) if var_r > 0 else 0.0


class ProcessReward:
    name = "process"
    excludes = {
        "gae": ("reward.prm", "PRM step rewards are wired into the group estimators (grpo, dr_grpo, rloo, "
                "reinforce_pp); PPO (gae) does not use them yet"),
        "teacher": ("reward.prm", "PRM step rewards and on-policy distillation (distill.teacher) cannot be "
                    "combined yet; use one of them"),
        "kl_reward": ("algorithm.kl_mode", "with reward.prm use kl_mode: loss (both set per-token advantages)"),
    }

    dense = "reward.prm"  # a per-token signal for every group: dynamic sampling would drop real signal

    CREDIT = {"to_go": process_advantages, "first_error": first_error_advantages}

    def __init__(self, scorer, weight: float, credit: str = "to_go"):
        self.scorer, self.weight, self.credit = scorer, weight, self.CREDIT[credit]

    @staticmethod
    def enabled(cfg) -> bool:
        return bool(cfg.reward.prm)

    @classmethod
    def collect_time_credit(cls, cfg):
        """The credit function when the step rewards are the env's exact labels (``reward.prm:
        exact``, known once collect has scored an episode, so dynamic sampling can judge a group's
        credit); None for a learned PRM, which scores at train time."""
        return cls.CREDIT[cfg.reward.process_credit] if cfg.reward.prm == "exact" else None

    @staticmethod
    def check(cfg) -> None:
        if cfg.reward.prm == "exact":
            check(cfg.env.spec.step_labels is not None, "reward.prm",
                  f"'exact' takes the env's exact step labels, and env '{cfg.env.name}' has none: "
                  "train a PRM with recipes/train_prm.py and pass its directory")
            return
        check(Path(cfg.reward.prm, "prm_config.json").is_file(), "reward.prm",
              f"'{cfg.reward.prm}' is not a saved PRM (no prm_config.json): train one with recipes/train_prm.py, "
              "or use 'exact' for the env's exact step labels")

    @classmethod
    def build(cls, cfg, policy) -> "ProcessReward":
        from rewards.prm.scorer import ExactLabelScorer, PRMScorer

        if cfg.reward.prm == "exact":
            return cls(ExactLabelScorer(), cfg.reward.process_weight, cfg.reward.process_credit)
        scorer = PRMScorer(cfg.reward.prm, device=cfg.device, dtype=cfg.dtype, batch_size=cfg.reward.prm_batch_size)
        return cls(scorer, cfg.reward.process_weight, cfg.reward.process_credit)

    def __call__(self, batch: TrainBatch) -> SignalOutput:
        """``weight * A_process`` per token; a sample without PRM values (a PRM error, no steps,
        or a turn rendered as its own sample) gets 0 here, so only the group's ``(1 - w) * A``
        reaches it (counted in ``prm/fallback_samples``). Data-parallel ranks split the scoring (a
        scorer's ``score(groups, world=None)``; ``world`` is passed only with several ranks)."""
        self.scorer.score(batch.groups, **({"world": batch.world} if batch.world.size > 1 else {}))
        values: dict[tuple[int, int], list[float]] = {}
        for g, group in enumerate(batch.groups):
            rated = [(e, ep) for e, ep in enumerate(group.episodes) if ep.reward is not None and ep.step_rewards]
            for (e, _), per_step in zip(rated, self.credit([ep.step_rewards for _, ep in rated])):
                values[(g, e)] = per_step
        out, fallbacks = [], 0
        for origin, sample in zip(batch.origin, batch.samples):
            per_step = values.get(origin)
            if per_step is None or len(per_step) != len(sample.step_spans):
                fallbacks += 1
                out.append(torch.zeros(len(sample)))
                continue
            tokens = token_advantages_from_steps(sample.step_spans, per_step, len(sample), sample.loss_mask)
            out.append(self.weight * torch.tensor(tokens, dtype=torch.float32))
        return SignalOutput(out, None, {"prm/fallback_samples": float(fallbacks)})
