"""Group-relative advantage estimators (one scalar per sampled completion).

All functions take the rewards of ONE group ``rewards_g`` (shape [G]: G completions
sampled for the same prompt) and return advantages of the same shape. A trainer looks one
up by config name in ``ADVANTAGE_ESTIMATORS``.
"""

from collections.abc import Callable

import torch


def group_advantages(
    rewards_g: torch.Tensor, *, scale_by_std: bool = True, eps: float = 1e-4
) -> torch.Tensor:
    """Group-relative advantages for one group of G rewards.

    GRPO (Shao et al. 2024, DeepSeekMath, eq. 3 / sec. 4.1.2), ``scale_by_std=True``::

        A_i = (r_i - mean(r)) / (std(r) + eps)

    Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-like Training", sec. 3.2),
    ``scale_by_std=False``: drops the std division, which biases updates towards groups
    of low reward variance (questions that are too easy or too hard)::

        A_i = r_i - mean(r)

    Normalisers and departures from the paper:

    - ``std`` is torch's *unbiased* std (divides by G - 1), and ``eps`` is added to the
      std, not to the variance; this matches TRL 1.16 (see the comment in the body).
      The paper writes ``std`` without saying which.
    - A group of size 1 has no baseline: its advantage is 0 (torch's unbiased std of one
      element is NaN; we return zeros rather than propagate it).
    - All-equal rewards give exactly zero advantages (std 0, numerator 0).

    Args:
        rewards_g: [G] rewards of one group (any float dtype; ints are cast to float32).
        scale_by_std: divide by ``std + eps`` (GRPO) or not (Dr. GRPO).
        eps: added to the std before dividing.

    Returns:
        [G] advantages, same dtype as ``rewards_g`` (float).
    """
    if rewards_g.dim() != 1:
        raise ValueError(f"rewards_g must be 1-D [G], got shape {tuple(rewards_g.shape)}")
    rewards_g = rewards_g if rewards_g.is_floating_point() else rewards_g.float()
    if rewards_g.numel() <= 1 or bool((rewards_g == rewards_g[0]).all()):
        return torch.zeros_like(rewards_g)  # exact zeros: float32 mean of e.g. 0.1s is inexact
    # Matches TRL 1.16 trl/trainer/grpo_trainer.py lines 2764-2787
    # (_generate_and_score_completions, scale_rewards="group" / "none"):
    #   mean_grouped_rewards = torch.nanmean(rewards.view(-1, num_generations), dim=1)
    #   std_rewards = nanstd(rewards.view(-1, num_generations), dim=1)  # Bessel-corrected
    #   advantages = rewards - mean_grouped_rewards
    #   if self.scale_rewards != "none": advantages = advantages / (std_rewards + 1e-4)
    # (nanstd, trl/trainer/utils.py line 1021, is torch.std with NaNs ignored.)
    advantages_g = rewards_g - rewards_g.mean()
    if scale_by_std:
        advantages_g = advantages_g / (rewards_g.std() + eps)
    return advantages_g


def grpo_advantages(rewards_g: torch.Tensor) -> torch.Tensor:
    """GRPO: ``(r - mean) / (std + 1e-4)``; see ``group_advantages``."""
    return group_advantages(rewards_g, scale_by_std=True)


def dr_grpo_advantages(rewards_g: torch.Tensor) -> torch.Tensor:
    """Dr. GRPO: ``r - mean``; see ``group_advantages``."""
    return group_advantages(rewards_g, scale_by_std=False)


ADVANTAGE_ESTIMATORS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "grpo": grpo_advantages,
    "dr_grpo": dr_grpo_advantages,
}
