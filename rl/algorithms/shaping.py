"""Reward shaping terms that depend on the completion, not on its correctness."""

import torch


def overlong_penalty(
    lengths_n: torch.Tensor, max_len: int, buffer: int, penalty: float = 1.0
) -> torch.Tensor:
    """DAPO soft overlong punishment, added to the task reward of each completion.

    Yu et al. 2025, "DAPO: An Open-Source LLM Reinforcement Learning System at Scale"
    (arXiv 2503.14476), eq. 13, with ``L_max = max_len``, ``L_cache = buffer``::

        R(L) = 0                                    L <= L_max - L_cache
               ((L_max - L_cache) - L) / L_cache     L_max - L_cache < L <= L_max
               -1                                   L_max < L

    scaled by ``penalty`` (the paper has 1). The ramp reaches ``-penalty`` at ``L = max_len``,
    so a completion truncated at the generation budget gets the full penalty. ``buffer = 0``
    is a hard cut: 0 up to ``max_len``, ``-penalty`` beyond. Same values as TRL 1.16's
    ``get_soft_overlong_punishment(max_completion_len=max_len, soft_punish_cache=buffer)``
    when ``penalty = 1``.

    Args:
        lengths_n: [N] completion lengths in tokens (int or float).
        max_len: L_max, normally the generation budget.
        buffer: L_cache, the width of the linear ramp; ``0 <= buffer <= max_len``.
        penalty: the penalty at and beyond ``max_len`` (a positive number).

    Returns:
        [N] float32 (or ``lengths_n``'s float dtype) penalties in ``[-penalty, 0]``.
    """
    if not 0 <= buffer <= max_len:
        raise ValueError(f"need 0 <= buffer <= max_len, got buffer={buffer}, max_len={max_len}")
    lengths_n = lengths_n if lengths_n.is_floating_point() else lengths_n.float()
    start = max_len - buffer
    ramp_n = (start - lengths_n) / max(buffer, 1) * penalty  # only used when buffer > 0
    zeros_n = torch.zeros_like(lengths_n)
    return torch.where(
        lengths_n <= start,
        zeros_n,
        torch.where(lengths_n <= max_len, ramp_n, zeros_n - penalty),
    )
