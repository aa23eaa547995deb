"""Generalised advantage estimation (GAE) and masked whitening over [batch, time] tensors.

Schulman et al. 2016, "High-Dimensional Continuous Control Using Generalized Advantage
Estimation", eq. 16, with a critic V and per-step rewards r::

    delta_t = r_t + gamma * V_{t+1} - V_t
    A_t     = delta_t + gamma * lam * A_{t+1}          (A after the last step = 0)
    R_t     = A_t + V_t                                 (the value-function target)

Rows are right-padded token sequences; ``mask_bt`` is nonzero on the policy tokens (the
positions whose action is trained). Those positions, in order, are the time steps of the
row's trajectory: they need not start at column 0 (a prompt may precede them) and masked-out
gaps between them (e.g. environment/tool tokens of a multi-turn episode) are skipped, so
``t + 1`` means "the next policy token of this row". ``V`` after the last policy token is 0
(the episode ends; a truncated episode is treated as ended too).
"""

import torch


def gae(
    rewards_bt: torch.Tensor,
    values_bt: torch.Tensor,
    mask_bt: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE advantages and returns over the masked-in steps of each row (module docstring).

    ``rewards_bt`` holds the per-token rewards: an outcome reward on a row's last policy
    token, PRM step rewards at step ends, a per-token KL penalty, or their sum. Rewards and
    values at masked-out positions are ignored (they may hold anything, inf and NaN
    included): a reward meant to count must sit on a policy token.

    ``gamma = lam = 1`` gives ``A_t = sum_{k >= t} r_k - V_t`` (Monte-Carlo return minus
    the baseline); ``lam = 0`` gives the one-step TD error.

    Computed without gradient (the results are regression / policy-gradient targets).
    A Python loop over T columns in reverse, vectorised over the batch.

    Args:
        rewards_bt: [B, T] per-token rewards.
        values_bt: [B, T] critic values V(s_t) at the same positions.
        mask_bt: [B, T] nonzero at the policy tokens.
        gamma: discount per policy token.
        lam: GAE lambda.

    Returns:
        ``(advantages_bt, returns_bt)``, both [B, T] in the promoted float dtype of the
        inputs, with ``returns = advantages + values`` on the mask and exact zeros outside.
    """
    if rewards_bt.shape != values_bt.shape or mask_bt.shape != values_bt.shape:
        raise ValueError(
            "rewards_bt, values_bt and mask_bt must have the same [B, T] shape, got "
            f"{tuple(rewards_bt.shape)}, {tuple(values_bt.shape)}, {tuple(mask_bt.shape)}"
        )
    dtype = torch.promote_types(rewards_bt.dtype, values_bt.dtype)
    dtype = torch.promote_types(dtype, torch.float32)
    with torch.no_grad():
        keep_bt = mask_bt != 0
        zeros_bt = torch.zeros(values_bt.shape, dtype=dtype, device=values_bt.device)
        rewards_bt = torch.where(keep_bt, rewards_bt.to(dtype), zeros_bt)
        values_bt = torch.where(keep_bt, values_bt.to(dtype), zeros_bt)
        advantages_bt = torch.zeros_like(zeros_bt)
        next_value_b = zeros_bt[:, 0].clone()  # V of the next policy token; 0 after the last
        next_advantage_b = zeros_bt[:, 0].clone()
        for t in reversed(range(values_bt.shape[1])):
            keep_b = keep_bt[:, t]
            delta_b = rewards_bt[:, t] + gamma * next_value_b - values_bt[:, t]
            advantage_b = delta_b + gamma * lam * next_advantage_b
            advantages_bt[:, t] = torch.where(keep_b, advantage_b, zeros_bt[:, t])
            # masked-out columns leave the carried state untouched: the gap is skipped
            next_value_b = torch.where(keep_b, values_bt[:, t], next_value_b)
            next_advantage_b = torch.where(keep_b, advantage_b, next_advantage_b)
        returns_bt = torch.where(keep_bt, advantages_bt + values_bt, zeros_bt)
    return advantages_bt, returns_bt


def whiten(
    values_bt: torch.Tensor,
    mask_bt: torch.Tensor,
    shift_mean: bool = True,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Masked whitening: ``(v - mean) / sqrt(var + eps)`` with statistics over the mask.

    As applied to PPO advantages in OpenAI's lm-human-preferences (``whiten``) and in
    TRL's former PPO trainer (``masked_whiten``). ``shift_mean=False`` adds the mean back,
    i.e. only rescales (used for rewards). Choices:

    - ``var`` is the *population* variance over masked-in positions (divides by their
      count, as lm-human-preferences' ``tf.nn.moments`` and OpenRLHF); TRL's former
      ``masked_whiten`` used Bessel's correction (count - 1).
    - Masked-out positions are excluded from the statistics and are 0 in the result
      (they may hold inf / NaN). An empty mask gives all zeros.

    Returns:
        [B, T] whitened values, zero outside the mask.
    """
    keep_bt = mask_bt != 0
    zeros_bt = torch.zeros_like(values_bt)
    values_bt = torch.where(keep_bt, values_bt, zeros_bt)
    count = keep_bt.sum().clamp(min=1)
    mean = values_bt.sum() / count
    centred_bt = torch.where(keep_bt, values_bt - mean, zeros_bt)
    var = centred_bt.square().sum() / count
    whitened_bt = centred_bt * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened_bt = whitened_bt + mean
    return torch.where(keep_bt, whitened_bt, zeros_bt)
