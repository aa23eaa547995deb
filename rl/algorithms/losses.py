"""Policy-gradient losses for LLM fine-tuning: pure functions of [batch, time] tensors.

Symbols (per token t of completion i): ``logp = log pi_theta(o_t | q, o_<t)``, ``old`` the
same under the policy that sampled the batch (pi_old), ``ref`` under the frozen reference,
``A`` the advantage, ``m`` the 0/1 completion mask (nonzero = the token is trained on).

The clipped objective (PPO, Schulman et al. 2017; GRPO, Shao et al. 2024, eq. 3; DAPO,
Yu et al. 2025, eq. 8 "clip-higher") minimised here is, per token::

    r   = exp(logp - old)
    l_t = -min(r * A, clip(r, 1 - eps_low, 1 + eps_high) * A) + beta * KL_t

aggregated over tokens by one of ``AGGREGATIONS`` (see ``aggregate``). Positions where
``m == 0`` are replaced by zeros before any arithmetic, so padding may hold any finite or
infinite value without changing the loss or producing NaN gradients.

GSPO (Zheng et al. 2025) replaces the token ratio by a sequence ratio
(``clipped_policy_loss(..., ratio_level="sequence")``); ``clipped_value_loss`` is the PPO
critic loss that goes with ``rl.algorithms.gae``.
"""

import torch

AGGREGATIONS = ("token", "sequence", "dr_grpo")
KL_ESTIMATORS = ("k1", "k2", "k3")
RATIO_LEVELS = ("token", "sequence")

Number = int | float | torch.Tensor


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def masked_mean(values_bt: torch.Tensor, mask_bt: torch.Tensor) -> torch.Tensor:
    """``sum(v * m) / sum(m)`` over all positions; 0 when the mask is empty."""
    keep_bt = mask_bt != 0
    total = torch.where(keep_bt, values_bt, torch.zeros_like(values_bt)).sum()
    return total / keep_bt.sum().clamp(min=1)


def per_token_kl(
    logprobs_bt: torch.Tensor, ref_logprobs_bt: torch.Tensor, estimator: str = "k3"
) -> torch.Tensor:
    """Per-token estimate of KL(pi || ref) from tokens sampled from pi.

    Schulman, "Approximating KL Divergence" (2020), with ``d = ref - logp``
    (log of the ratio ref / pi)::

        k1 = -d = logp - ref               unbiased, can be negative
        k2 = d^2 / 2                       biased, low variance, >= 0
        k3 = exp(d) - d - 1                unbiased, >= 0 (GRPO, eq. 4)

    k3 is computed as ``expm1(d) - d`` for precision near d = 0.
    """
    _check_choice("kl_estimator", estimator, KL_ESTIMATORS)
    d_bt = ref_logprobs_bt - logprobs_bt
    if estimator == "k1":
        return -d_bt
    if estimator == "k2":
        return 0.5 * d_bt.square()
    return torch.expm1(d_bt) - d_bt


def _at_least_one(x: Number) -> Number:
    return x.clamp(min=1) if isinstance(x, torch.Tensor) else max(x, 1)


def aggregate(
    values_bt: torch.Tensor,
    mask_bt: torch.Tensor,
    mode: str,
    *,
    num_sequences: Number | None = None,
    num_tokens: Number | None = None,
    max_tokens: Number | None = None,
) -> torch.Tensor:
    """Reduce per-token values to a scalar loss; masked positions count as 0.

    With ``B = values_bt.shape[0]``, ``T = values_bt.shape[1]``, ``|o_i| = sum_t m_it``:

    - ``"token"`` (DAPO, Yu et al. 2025, eq. 8): ``sum_it v m / sum_it m``. Every token
      weighs the same, so long completions are not down-weighted.
    - ``"sequence"`` (original GRPO, Shao et al. 2024, eq. 3):
      ``(1/B) sum_i (1/|o_i|) sum_t v m``. A sequence with an empty mask contributes 0
      (its ``|o_i|`` is clamped to 1) but still counts in B.
    - ``"dr_grpo"`` (Liu et al. 2025, sec. 3.2): ``sum_it v m / (B * max_tokens)``, a
      constant denominator so there is no length bias. ``max_tokens`` should be the
      generation budget (TRL's ``max_completion_length``); ``None`` falls back to the mask
      width T, which depends on padding and is only right when T is that budget.

    Gradient accumulation: pass the counts of the *whole* minibatch to every micro-batch
    (``num_tokens`` replaces ``sum_it m`` for "token"; ``num_sequences`` replaces B for
    "sequence" and "dr_grpo") and the micro-batch losses then sum to the minibatch loss.
    Denominators are clamped to at least 1, so an all-masked batch gives 0, never NaN.
    """
    _check_choice("aggregation", mode, AGGREGATIONS)
    keep_bt = mask_bt != 0
    masked_bt = torch.where(keep_bt, values_bt, torch.zeros_like(values_bt))
    batch = values_bt.shape[0] if num_sequences is None else num_sequences
    if mode == "token":
        tokens = keep_bt.sum() if num_tokens is None else num_tokens
        return masked_bt.sum() / _at_least_one(tokens)
    if mode == "sequence":
        per_sequence_b = masked_bt.sum(-1) / keep_bt.sum(-1).clamp(min=1)
        return per_sequence_b.sum() / _at_least_one(batch)
    width = values_bt.shape[1] if max_tokens is None else max_tokens
    return masked_bt.sum() / _at_least_one(batch * width)


def clipped_policy_loss(
    logprobs_bt: torch.Tensor,
    old_logprobs_bt: torch.Tensor,
    advantages_bt: torch.Tensor,
    mask_bt: torch.Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    aggregation: str = "token",
    ref_logprobs_bt: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    kl_estimator: str = "k3",
    importance_weights_bt: torch.Tensor | None = None,
    num_sequences: Number | None = None,
    num_tokens: Number | None = None,
    max_tokens: Number | None = None,
    ratio_level: str = "token",
    entropy_bt: torch.Tensor | None = None,
    entropy_coef: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO-clip loss with asymmetric clipping and an optional KL penalty.

    Per token (DAPO eq. 8 with GRPO's per-token KL, eq. 3)::

        r   = exp(logp - old)
        pg  = -min(r * A, clip(r, 1 - clip_low, 1 + clip_high) * A) * w
        l   = pg + kl_coef * KL(logp, ref)          # KL only when ref_logprobs_bt given

    then ``aggregate(l, mask, aggregation, ...)``. ``w`` is ``importance_weights_bt``
    (detached; e.g. truncated importance weights pi_old / pi_engine correcting for a
    sampler whose numerics differ from the trainer's), default 1. Departures / choices:

    - ``w`` multiplies the policy term only, not the KL term (as TRL 1.16 does with its
      vLLM importance-sampling ratio, grpo_trainer.py lines 3146-3147).
    - The KL term is NOT multiplied by r. TRL 1.16 does by default
      (``use_bias_correction_kl=True``, lines 3103-3105); with ``old == logp`` the values agree
      but the KL gradients differ.
    - ``advantages_bt`` may be [B] (one advantage per completion, broadcast over time,
      as in GRPO) or [B, T].

    ``ratio_level="sequence"`` is GSPO (Zheng et al. 2025, "Group Sequence Policy
    Optimization", arXiv 2507.18071, in its "GSPO-token" form): every token of
    completion i uses the length-normalised sequence ratio::

        s_i   = exp( (1/|o_i|) sum_t m_t (logp_t - old_t) )
        s_i,t = sg[s_i] * pi(o_t) / sg[pi(o_t)]     i.e. log s_i,t = logp - sg[logp] + sg[log s_i]

    ``s_i,t`` equals ``s_i`` in value (so clipping acts on whole sequences), and token t's
    gradient is ``s_i * A_i,t * grad logp_t``. With one advantage per completion this is
    the paper's GSPO exactly. TRL 1.16 (``importance_sampling_level="sequence"``) instead
    differentiates ``s_i`` itself, spreading the gradient ``(1/|o_i|) sum_t' ...`` evenly
    over the tokens: identical loss values, and identical gradients while the advantage and
    ``importance_weights_bt`` are constant within each completion; with per-token
    advantages or weights the gradients differ (ours is the paper's GSPO-token). The clip
    fractions and ``ratio/mean`` stay token-weighted (TRL's count sequences). An empty row
    has ``s_i = 1``. The paper's clip ranges are far narrower than PPO's (3e-4 / 4e-4), and
    it averages per sequence (``aggregation="sequence"``); "token" / "dr_grpo" weight each
    sequence by its length (TRL warns likewise).

    Entropy bonus (Williams & Peng 1991; PPO eq. 9): with ``entropy_bt`` given,
    ``loss -= entropy_coef * aggregate(entropy_bt, mask, aggregation, ...)`` with the same
    normalisers as the policy term, so micro-batches still sum to the minibatch loss. It
    only changes the update if ``entropy_bt`` carries gradient (e.g. from
    ``entropy_from_logits`` on the live logits). TRL 1.16 always uses a token mean for it;
    the two agree for ``aggregation="token"``.

    Zero advantages give exactly zero policy-term gradient. When r leaves the clip range
    on the side where clipping binds (r > 1 + clip_high with A > 0, or r < 1 - clip_low
    with A < 0) the token's gradient is zero.

    Returns:
        ``(loss, metrics)``; metrics are detached scalars, masked means over all masked
        tokens (independent of ``aggregation``): ``clip_frac/low``, ``clip_frac/high``,
        ``ratio/mean``, ``policy_loss`` (aggregated ``pg``, i.e. the loss without the KL
        term), when ``ref_logprobs_bt`` is given ``kl``, and when ``entropy_bt`` is given
        ``entropy_bonus`` (``entropy_coef`` times the aggregated entropy: what was subtracted).
    """
    _check_choice("aggregation", aggregation, AGGREGATIONS)
    _check_choice("kl_estimator", kl_estimator, KL_ESTIMATORS)
    _check_choice("ratio_level", ratio_level, RATIO_LEVELS)
    if advantages_bt.dim() == 1:
        advantages_bt = advantages_bt.unsqueeze(-1)
    keep_bt = mask_bt != 0
    zeros_bt = torch.zeros_like(logprobs_bt)
    advantages_bt = torch.where(keep_bt, advantages_bt, zeros_bt)

    log_ratio_bt = torch.where(keep_bt, logprobs_bt - old_logprobs_bt, zeros_bt)
    if ratio_level == "sequence":
        log_seq_ratio_b = log_ratio_bt.sum(-1) / keep_bt.sum(-1).clamp(min=1)
        kept_logprobs_bt = torch.where(keep_bt, logprobs_bt, zeros_bt)
        log_ratio_bt = (
            kept_logprobs_bt - kept_logprobs_bt.detach() + log_seq_ratio_b.detach().unsqueeze(-1)
        )
        log_ratio_bt = torch.where(keep_bt, log_ratio_bt, zeros_bt)
    ratio_bt = torch.exp(log_ratio_bt)
    clipped_ratio_bt = torch.clamp(ratio_bt, 1.0 - clip_low, 1.0 + clip_high)
    pg_loss_bt = -torch.minimum(ratio_bt * advantages_bt, clipped_ratio_bt * advantages_bt)
    if importance_weights_bt is not None:
        pg_loss_bt = pg_loss_bt * torch.where(keep_bt, importance_weights_bt.detach(), zeros_bt)

    normalisers = dict(num_sequences=num_sequences, num_tokens=num_tokens, max_tokens=max_tokens)
    policy_loss = aggregate(pg_loss_bt, keep_bt, aggregation, **normalisers)
    loss = policy_loss
    metrics: dict[str, torch.Tensor] = {}
    if ref_logprobs_bt is not None:
        kl_bt = per_token_kl(
            torch.where(keep_bt, logprobs_bt, zeros_bt),
            torch.where(keep_bt, ref_logprobs_bt, zeros_bt),
            kl_estimator,
        )
        if kl_coef != 0.0:
            loss = aggregate(pg_loss_bt + kl_coef * kl_bt, keep_bt, aggregation, **normalisers)
        metrics["kl"] = masked_mean(kl_bt, keep_bt).detach()
    if entropy_bt is not None:
        bonus = entropy_coef * aggregate(entropy_bt, keep_bt, aggregation, **normalisers)
        if entropy_coef != 0.0:
            loss = loss - bonus
        metrics["entropy_bonus"] = bonus.detach()

    with torch.no_grad():
        low_bt = (ratio_bt < 1.0 - clip_low) & (advantages_bt < 0)
        high_bt = (ratio_bt > 1.0 + clip_high) & (advantages_bt > 0)
        metrics["clip_frac/low"] = masked_mean(low_bt.to(ratio_bt.dtype), keep_bt)
        metrics["clip_frac/high"] = masked_mean(high_bt.to(ratio_bt.dtype), keep_bt)
        metrics["ratio/mean"] = masked_mean(ratio_bt, keep_bt)
        metrics["policy_loss"] = policy_loss.detach()
    return loss, metrics


def clipped_value_loss(
    values_bt: torch.Tensor,
    old_values_bt: torch.Tensor,
    returns_bt: torch.Tensor,
    mask_bt: torch.Tensor,
    clip: float | None,
    *,
    aggregation: str = "token",
    num_sequences: Number | None = None,
    num_tokens: Number | None = None,
    max_tokens: Number | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO critic loss with the value prediction clipped around the sampling-time value.

    Per token, with ``V`` the critic now, ``V_old`` its value when the batch was built
    and ``R`` the return target (``rl.algorithms.gae.gae``)::

        V_clip = V_old + clip(V - V_old, -clip, +clip)
        l_t    = 0.5 * max((V - R)^2, (V_clip - R)^2)

    then ``aggregate(l, mask, aggregation, ...)`` (same modes and normalisers as the
    policy loss). The PPO paper (Schulman et al. 2017, eq. 9) writes the unclipped
    ``(V - R)^2``; the clipping is from OpenAI baselines' ppo2 (and TRL's former
    PPOTrainer, ``cliprange_value``). ``clip=None`` gives the unclipped ``0.5 * (V - R)^2``.
    Clipping is in absolute value units, so it depends on the reward scale. Masked-out
    positions may hold anything (inf / NaN included); they contribute 0.

    Returns:
        ``(loss, metrics)``; metrics are detached scalars: ``value/loss`` (the loss) and
        ``value/clip_frac``, the masked fraction of tokens where the clipped term is the
        larger one (its gradient is then 0); 0 when ``clip`` is None.
    """
    _check_choice("aggregation", aggregation, AGGREGATIONS)
    keep_bt = mask_bt != 0
    zeros_bt = torch.zeros_like(values_bt)
    values_bt = torch.where(keep_bt, values_bt, zeros_bt)
    old_values_bt = torch.where(keep_bt, old_values_bt, zeros_bt)
    returns_bt = torch.where(keep_bt, returns_bt, zeros_bt)
    unclipped_bt = (values_bt - returns_bt).square()
    if clip is None:
        per_token_bt = unclipped_bt
        clipped_frac = torch.zeros((), dtype=values_bt.dtype, device=values_bt.device)
    else:
        clipped_values_bt = old_values_bt + torch.clamp(values_bt - old_values_bt, -clip, clip)
        clipped_bt = (clipped_values_bt - returns_bt).square()
        per_token_bt = torch.maximum(unclipped_bt, clipped_bt)
        clipped_frac = masked_mean((clipped_bt > unclipped_bt).to(values_bt.dtype), keep_bt)
    normalisers = dict(num_sequences=num_sequences, num_tokens=num_tokens, max_tokens=max_tokens)
    loss = aggregate(0.5 * per_token_bt, keep_bt, aggregation, **normalisers)
    return loss, {"value/loss": loss.detach(), "value/clip_frac": clipped_frac.detach()}


def entropy_from_logits(logits_btv: torch.Tensor, *, chunk_size: int = 8) -> torch.Tensor:
    """Entropy of softmax(logits) at each position: [B, T, V] -> [B, T] (float32).

    ``H = -sum_v p_v log p_v`` with ``log p = logits - logsumexp(logits)``, computed in
    float32 on ``chunk_size`` sequences at a time to bound the [chunk, T, V] temporaries.
    Logits of -inf (banned tokens) contribute 0. Differentiable.
    """
    chunks = []
    for chunk_ctv in logits_btv.split(chunk_size, dim=0):
        logp_ctv = torch.log_softmax(chunk_ctv.float(), dim=-1)
        finite_logp_ctv = logp_ctv.clamp(min=torch.finfo(logp_ctv.dtype).min)
        chunks.append(-(logp_ctv.exp() * finite_logp_ctv).sum(-1))
    return torch.cat(chunks, dim=0)
