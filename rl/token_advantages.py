"""Per-token advantages from per-token rewards: PPO's GAE targets and KL in the reward.

Two ways a step's per-sample results become per-token advantages:

- ``gae_targets`` (PPO): per-token rewards are the outcome reward on the sample's last policy
  token plus, with ``kl_mode: reward``, ``-kl_coef * KL_t`` on every policy token (Ouyang et al.
  2022, eq. 2); GAE(gamma, lambda) against the value head gives advantages and return targets.
- ``with_kl_reward`` (group estimators with ``kl_mode: reward``, e.g. REINFORCE++): the group
  advantage of the sample plus the reward-to-go of the per-token KL penalty,
  ``A_t = A - kl_coef * sum_{k >= t} KL_k`` (gamma = 1), so a token is charged for the
  divergence it and its successors cause.

KL_t is estimated on the sampled token from the trainer's (old) and reference logprobs with
``algorithm.kl_estimator`` (k1 = ``logp - ref`` is the usual choice in a reward).
Multi-turn episodes rendered as one sample per turn get the outcome on each turn's last token.
"""

from __future__ import annotations

import torch

from rl.algorithms.gae import gae, whiten
from rl.algorithms.losses import per_token_kl
from rl.config import AlgorithmConfig
from rl.types import Sample


def _pad(rows: list[torch.Tensor], width: int) -> torch.Tensor:
    out = torch.zeros(len(rows), width)
    for i, row in enumerate(rows):
        out[i, : row.shape[0]] = row.float()
    return out


def _masks(samples: list[Sample], width: int) -> torch.Tensor:
    return _pad([torch.tensor(s.loss_mask, dtype=torch.float32) for s in samples], width)


def kl_penalty_bt(old: list[torch.Tensor], ref: list[torch.Tensor], mask_bt: torch.Tensor,
                  algo: AlgorithmConfig) -> torch.Tensor:
    """``kl_coef * KL_t`` on policy tokens, 0 elsewhere ([B, T])."""
    width = mask_bt.shape[1]
    kl_bt = per_token_kl(_pad(old, width), _pad(ref, width), algo.kl_estimator)
    return algo.kl_coef * torch.where(mask_bt != 0, kl_bt, torch.zeros_like(kl_bt))


def with_kl_reward(samples: list[Sample], advantages: list[float], old, ref,
                   algo: AlgorithmConfig) -> tuple[list[list[float]], dict[str, float]]:
    """Per-token ``A - kl_coef * (reward-to-go of KL)``; returns ``(advantages, metrics)``."""
    width = max(len(s) for s in samples)
    mask_bt = _masks(samples, width)
    penalty_bt = kl_penalty_bt(old, ref, mask_bt, algo)
    to_go_bt = penalty_bt.flip(-1).cumsum(-1).flip(-1)  # sum over k >= t (masked k add 0)
    adv_bt = (torch.tensor(advantages).unsqueeze(-1) - to_go_bt) * mask_bt
    rows = [adv_bt[i, : len(s)].tolist() for i, s in enumerate(samples)]
    n = float(mask_bt.sum().clamp(min=1))
    return rows, {"kl_reward/mean": float(penalty_bt.sum() / n)}


def gae_targets(samples: list[Sample], rewards: list[float], old, ref, values,
                algo: AlgorithmConfig):
    """PPO targets for every sample.

    ``rewards[i]`` is sample i's scalar (outcome + shaping) reward; ``old``, ``ref`` and
    ``values`` are per-sample 1-D tensors from the pre-update pass (``ref`` may be None when
    the KL is not in the reward). Returns ``(advantages, returns, metrics)``: per-sample lists
    of per-token floats (whitened advantages when ``algo.whiten_advantages``) and return
    targets for the value loss.
    """
    width = max(len(s) for s in samples)
    mask_bt = _masks(samples, width)
    rewards_bt = torch.zeros_like(mask_bt)
    for i, sample in enumerate(samples):
        last = max(j for j, m in enumerate(sample.loss_mask) if m)
        rewards_bt[i, last] = rewards[i]
    metrics: dict[str, float] = {}
    n = float(mask_bt.sum().clamp(min=1))
    if algo.kl_mode == "reward" and algo.kl_coef > 0:
        penalty_bt = kl_penalty_bt(old, ref, mask_bt, algo)
        rewards_bt = rewards_bt - penalty_bt
        metrics["kl_reward/mean"] = float(penalty_bt.sum() / n)
    values_bt = _pad(values, width)
    advantages_bt, returns_bt = gae(rewards_bt, values_bt, mask_bt, algo.gamma, algo.lam)
    metrics["value/mean"] = float((values_bt * mask_bt).sum() / n)
    metrics["value/explained_var"] = _explained_variance(values_bt, returns_bt, mask_bt)
    if algo.whiten_advantages:
        advantages_bt = whiten(advantages_bt, mask_bt)
    advantages = [advantages_bt[i, : len(s)].tolist() for i, s in enumerate(samples)]
    returns = [returns_bt[i, : len(s)] for i, s in enumerate(samples)]
    return advantages, returns, metrics


def _explained_variance(values_bt, returns_bt, mask_bt) -> float:
    """``1 - Var(R - V) / Var(R)`` over policy tokens (1: perfect critic, <= 0: useless)."""
    keep = mask_bt != 0
    r, v = returns_bt[keep], values_bt[keep]
    var_r = r.var(unbiased=False)
    return float(1 - (r - v).var(unbiased=False) / var_r) if var_r > 0 else 0.0
