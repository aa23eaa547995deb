"""Process-supervision advantages: per-step rewards of one group -> per-token advantages.

DeepSeekMath (Shao et al. 2024, sec. 4.1.3, "Process Supervision RL with GRPO"): a PRM scores
every step of every output in a group of G outputs. With ``R = {r_i^{index(j)}}`` the step
rewards of ALL outputs of the group, each reward is normalised by the group's statistics::

    r~_i^{index(j)} = (r_i^{index(j)} - mean(R)) / std(R)

and the advantage of token t of output i is the sum of the normalised rewards of the steps
that end at or after t::

    A_{i,t} = sum_{index(j) >= t} r~_i^{index(j)}

A token inside step j therefore gets the "to-go" sum of steps j, j+1, ..., last.

Departures and choices (the paper leaves them open):

- ``std`` is the Bessel-corrected (unbiased, divides by N - 1) std over the N step rewards of
  the group, and ``eps`` is added to the std, as in ``advantages.group_advantages`` (and TRL).
- N <= 1 step rewards, or all-equal ones, give exact zeros (no 0 / eps blow-up of rounding).
- Plain Python lists in and out: step counts differ between episodes, and the numbers are a
  few per episode, so there is nothing for a tensor to batch.
"""

from __future__ import annotations

import math


def process_advantages(step_rewards_g: list[list[float]], eps: float = 1e-4) -> list[list[float]]:
    """To-go sums of group-normalised step rewards (DeepSeekMath process supervision).

    Args:
        step_rewards_g: for each of the G episodes of ONE group, its step rewards (one per
            step; counts may differ, an episode with no steps is ``[]``).
        eps: added to the group's std before dividing.

    Returns:
        Same nesting as ``step_rewards_g``: ``out[i][j] = sum_{k >= j} r~_i^k``, the advantage
        of every token of step j of episode i.
    """
    flat_n = [float(r) for rewards in step_rewards_g for r in rewards]
    if len(flat_n) <= 1 or all(r == flat_n[0] for r in flat_n):
        return [[0.0] * len(rewards) for rewards in step_rewards_g]
    mean = sum(flat_n) / len(flat_n)
    std = math.sqrt(sum((r - mean) ** 2 for r in flat_n) / (len(flat_n) - 1))
    out: list[list[float]] = []
    for rewards in step_rewards_g:
        to_go, running = [], 0.0
        for r in reversed(rewards):
            running += (r - mean) / (std + eps)
            to_go.append(running)
        out.append(to_go[::-1])
    return out


def first_error_advantages(step_rewards_g: list[list[float]], threshold: float = 0.5) -> list[list[float]]:
    """Local step credit up to each episode's first failed step, against a shared-prefix baseline.

    Not DeepSeekMath: its to-go sums (``process_advantages``) charge a knock-on error to every
    earlier step, so a right first step of a solution that slips later is pushed down. Here a step
    is judged on its own, given the prefix it was written after:

    - the *peers* of step position j are the group's episodes whose steps 0..j-1 all scored
      ``>= threshold`` and that have a step j;
    - ``baseline_j`` is the mean step-j reward of those peers, and a peer's step j gets
      ``r_ij - baseline_j`` (no division by the std, as in Dr. GRPO: a step that 7 of 8 peers get
      right costs the eighth -0.875, not -2.5);
    - steps after an episode's first failed step get 0: they start from a wrong state, so they are
      neither credited nor blamed.

    With exact labels (``reward.prm: exact``) every peer at position j is in the same true state,
    so ``baseline_j`` is a Monte Carlo value of that state, paid for by the group's own samples
    (VinePPO, Kazemnejad et al. 2024, spends extra rollouts on the same estimate). A position
    with a single peer gets 0: there is nothing to compare it with.

    Returns:
        Same nesting as ``step_rewards_g``: ``out[i][j]`` is the advantage of every token of step
        j of episode i.
    """
    ok_prefix = [[True] * (len(rewards) + 1) for rewards in step_rewards_g]  # ok_prefix[i][j]: steps < j passed
    for i, rewards in enumerate(step_rewards_g):
        for j, r in enumerate(rewards):
            ok_prefix[i][j + 1] = ok_prefix[i][j] and float(r) >= threshold
    out = [[0.0] * len(rewards) for rewards in step_rewards_g]
    for j in range(max((len(r) for r in step_rewards_g), default=0)):
        peers = [i for i, rewards in enumerate(step_rewards_g) if j < len(rewards) and ok_prefix[i][j]]
        if len(peers) < 2:
            continue
        baseline = sum(float(step_rewards_g[i][j]) for i in peers) / len(peers)
        for i in peers:
            out[i][j] = float(step_rewards_g[i][j]) - baseline
    return out


def token_advantages_from_steps(
    step_spans: list[tuple[int, int]],
    step_values: list[float],
    length: int,
    loss_mask: list[int],
) -> list[float]:
    """Spread per-step values (e.g. ``process_advantages`` of one episode) onto tokens.

    Token rule, for a sample of ``length`` tokens with ``step_spans`` ``[start, end)``
    (``rl.types.Sample.step_spans``, in order):

    - a token with ``loss_mask`` 0 (prompt, env/tool tokens) gets 0;
    - a token inside step j's span gets ``step_values[j]``;
    - a policy token in no span takes the value of the NEXT step that starts after it. This
      covers tokens before the first step (e.g. leading whitespace) and gaps between steps
      (``StepSplitter`` leaves blank-line newlines out of every span): they lead into
      that step, so they share its credit;
    - a policy token after the last span (the EOS token, trailing whitespace) gets 0: no step
      follows it, so no step reward is "to go". The outcome advantage still reaches it (the
      trainer adds the group signal's share, as ``mix_advantages`` does).

    A sample with no steps gets all zeros (the caller should fall back to the outcome).

    Returns:
        ``length`` floats, one per token of the sample.
    """
    if len(step_spans) != len(step_values):
        raise ValueError(f"{len(step_spans)} step spans but {len(step_values)} step values")
    if len(loss_mask) != length:
        raise ValueError(f"loss_mask has {len(loss_mask)} entries for a sample of {length} tokens")
    values_t = [0.0] * length
    next_start = 0
    for (start, end), value in zip(step_spans, step_values):
        if not next_start <= start <= end <= length:
            raise ValueError(f"step span ({start}, {end}) is out of order or outside [0, {length})")
        for t in range(next_start, end):  # the lead-in gap, then the span itself
            values_t[t] = float(value)
        next_start = end
    return [v if m else 0.0 for v, m in zip(values_t, loss_mask)]


def mix_advantages(outcome_adv: float, process_adv_tokens: list[float], weight: float) -> list[float]:
    """Per-token ``(1 - weight) * A_outcome + weight * A_process``.

    ``outcome_adv`` is the episode's scalar (e.g. GRPO) advantage, broadcast to every token;
    ``process_adv_tokens`` comes from ``token_advantages_from_steps``. ``weight`` 0 is pure
    outcome supervision, 1 pure process supervision (DeepSeekMath uses one or the other; the
    convex mix is ours, for PRMs whose step scores are only partly trusted). The outcome part
    lands on every token, masked ones included: the loss mask removes those anyway.

    Returns:
        One float per token, same length as ``process_adv_tokens``.
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1], got {weight}")
    return [(1.0 - weight) * outcome_adv + weight * a for a in process_adv_tokens]
