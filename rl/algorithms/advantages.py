"""Group-relative advantage estimators (one scalar per sampled completion).

All functions take the rewards of ONE group ``rewards_g`` (shape [G]: G completions
sampled for the same prompt) and return advantages of the same shape. A trainer looks one
up by config name in ``ADVANTAGE_ESTIMATORS``. ``"reinforce_pp"`` also needs a second,
batch-wide step after the per-group one: ``normalize_batch`` (see its docstring).
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


def _check_group(rewards_g: torch.Tensor) -> torch.Tensor:
    if rewards_g.dim() != 1:
        raise ValueError(f"rewards_g must be 1-D [G], got shape {tuple(rewards_g.shape)}")
    return rewards_g if rewards_g.is_floating_point() else rewards_g.float()


def rloo_advantages(rewards_g: torch.Tensor) -> torch.Tensor:
    """RLOO: each completion's baseline is the mean reward of the OTHER G - 1 completions.

    Ahmadian et al. 2024, "Back to Basics: Revisiting REINFORCE Style Optimization for
    Learning from Human Feedback in LLMs" (arXiv 2402.14740; RLOO from Kool et al. 2019)::

        A_i = r_i - 1/(G-1) sum_{j != i} r_j  =  G/(G-1) * (r_i - mean(r))

    The baseline does not depend on r_i, so the estimator is unbiased (unlike
    ``r_i - mean(r)``, whose baseline contains r_i; the two differ by the factor G/(G-1)).
    No std scaling. Computed as ``r - (sum(r) - r) / (G - 1)``, the form TRL 1.16 uses.

    - A group of size 1 has no other completion: its advantage is 0 (TRL 1.16 also
      returns zeros for ``num_generations == 1``).
    - All-equal rewards give exactly zero advantages.

    Args:
        rewards_g: [G] rewards of one group (ints are cast to float32).

    Returns:
        [G] advantages, same float dtype as ``rewards_g``.
    """
    rewards_g = _check_group(rewards_g)
    num = rewards_g.numel()
    if num <= 1 or bool((rewards_g == rewards_g[0]).all()):
        return torch.zeros_like(rewards_g)
    baselines_g = (rewards_g.sum() - rewards_g) / (num - 1)
    return rewards_g - baselines_g


def reinforce_pp_advantages(rewards_g: torch.Tensor) -> torch.Tensor:
    """REINFORCE++ (group-baseline variant), per-group part: ``A_i = r_i - mean(r)``.

    Hu 2025, "REINFORCE++: A Simple and Efficient Approach for Aligning Large Language
    Models" (arXiv 2501.03262), "REINFORCE++-baseline": subtract the group mean reward,
    then normalise the advantages over the WHOLE batch (all groups of the step). The
    trainer applies ``normalize_batch`` to the concatenated advantages of the step for
    this estimator; this function alone equals ``dr_grpo_advantages``. The global std,
    not each group's, is what distinguishes REINFORCE++ from GRPO: a group of nearly
    equal rewards is not blown up by its own tiny std.

    Returns:
        [G] ``r - mean(r)`` (exact zeros for G = 1 or all-equal rewards).
    """
    return group_advantages(_check_group(rewards_g), scale_by_std=False)


def normalize_batch(advantages_n: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Whiten advantages over the whole batch: ``(a - mean(a)) / (std(a) + eps)``.

    The global normalisation step of REINFORCE++ (Hu 2025), applied by the trainer
    to ALL advantages of one step (every group concatenated) after the per-group
    ``reinforce_pp_advantages``. Choices and departures:

    - ``std`` is the *population* std (``unbiased=False``, divides by N), as in OpenRLHF's
      implementation by the paper's author (``var = masked_mean((a - mean)^2)``). TRL 1.16's
      RLOO ``normalize_advantages=True`` instead uses the Bessel-corrected std and
      ``eps = 1e-4``.
    - Each completion counts once. OpenRLHF whitens its per-token advantages over all
      action tokens, so a long completion weighs more there; with one advantage per
      completion that is ``normalize_batch`` weighted by completion length.
    - ``eps`` is added to the std (OpenRLHF clamps the variance at 1e-8 instead).
    - N <= 1, or all-equal advantages, give exact zeros (no 0 / eps blow-up of rounding
      error in the mean).

    Args:
        advantages_n: [N] one advantage per completion of the step (any shape works:
            statistics are over all elements).
        eps: added to the std before dividing.

    Returns:
        Tensor of ``advantages_n``'s shape with mean 0 and (population) std ~1.
    """
    advantages_n = advantages_n if advantages_n.is_floating_point() else advantages_n.float()
    flat_n = advantages_n.reshape(-1)
    if flat_n.numel() <= 1 or bool((flat_n == flat_n[0]).all()):
        return torch.zeros_like(advantages_n)
    mean = advantages_n.mean()
    return (advantages_n - mean) / (advantages_n.std(unbiased=False) + eps)


def raft_advantages(rewards_g: torch.Tensor) -> torch.Tensor:
    """RAFT: fine-tune on each group's best completions; ``A_i = 1`` where ``r_i`` is the group's
    highest reward, else 0. Positive only: no completion is pushed down.

    Dong et al. 2023, "RAFT: Reward rAnked FineTuning for Generative Foundation Model Alignment"
    (arXiv 2304.06767): sample K completions per prompt, keep the one with the highest reward, and
    fine-tune on it. With a binary verifier reward this is rejection-sampling fine-tuning (RFT /
    ReST-EM): the policy's own correct samples, with the SFT loss, since the ratio is 1 on-policy.
    Xiong et al. 2025 ("A Minimalist Approach to LLM Reasoning", arXiv 2504.11343) find it close
    to GRPO. Departures:

    - Every completion tied at the top gets 1 (RAFT keeps one per prompt).
    - A group whose rewards are all equal gets zeros, as in every estimator here: it says nothing
      about which sample is better. RAFT would still train on its best sample, which with an
      all-correct group sharpens the policy and with an all-wrong one trains on a wrong answer.
    - It ranks by the total scalar reward: a format bonus makes a well-formatted wrong answer
      "best" in a group with no right one (use ``reward.format_weight: 0`` for pure RFT).

    Returns:
        [G] advantages in {0., 1.}, same float dtype as ``rewards_g``.
    """
    rewards_g = _check_group(rewards_g)
    if rewards_g.numel() == 0:  # an empty group gives an empty result, as every estimator here
        return rewards_g.clone()
    best_g = rewards_g == rewards_g.max()
    return torch.zeros_like(rewards_g) if bool(best_g.all()) else best_g.to(rewards_g.dtype)


ADVANTAGE_ESTIMATORS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "grpo": grpo_advantages,
    "dr_grpo": dr_grpo_advantages,
    "rloo": rloo_advantages,
    "reinforce_pp": reinforce_pp_advantages,
    "raft": raft_advantages,
}
