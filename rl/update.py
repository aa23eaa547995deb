"""The policy update: samples + advantages -> (epochs x minibatches) of clipped-loss steps.

Shared by every policy-gradient trainer. Sequences are right-padded per micro-batch (sorted
by length to waste little padding) and gradients are accumulated over micro-batches with the
whole minibatch's token/sequence counts as normalisers, so the micro-batch size changes
memory, not the loss. Logprobs are computed in float32 from logits divided by the sampling
temperature (the distribution the engine sampled from).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from rl.algorithms.losses import clipped_policy_loss, entropy_from_logits
from rl.config import AlgorithmConfig, OptimConfig
from rl.types import Sample


@dataclass
class MicroBatch:
    index: list[int]                 # positions of these samples in the update's sample list
    input_ids_bt: torch.Tensor
    attention_mask_bt: torch.Tensor
    loss_mask_bt: torch.Tensor       # 1 on policy tokens
    engine_logprobs_bt: torch.Tensor
    advantages_b: torch.Tensor


def collate(samples: list[Sample], index: list[int], advantages: list[float], pad_id: int,
            device) -> MicroBatch:
    """Right-pad ``samples[index]`` into tensors on ``device``."""
    width = max(len(samples[i]) for i in index)

    def pad(values, fill):
        return values + [fill] * (width - len(values))

    rows = [samples[i] for i in index]
    return MicroBatch(
        index=index,
        input_ids_bt=torch.tensor([pad(s.token_ids, pad_id) for s in rows], device=device),
        attention_mask_bt=torch.tensor([pad([1] * len(s), 0) for s in rows], device=device),
        loss_mask_bt=torch.tensor([pad(s.loss_mask, 0) for s in rows], device=device, dtype=torch.float32),
        engine_logprobs_bt=torch.tensor([pad(s.old_logprobs, 0.0) for s in rows], device=device),
        advantages_b=torch.tensor([advantages[i] for i in index], device=device, dtype=torch.float32),
    )


def token_logprobs(policy, batch: MicroBatch, temperature: float, with_entropy: bool = False):
    """Per-token logprobs ``[B, T]`` of ``input_ids`` (position 0 gets 0) and optionally entropy.

    Returns ``(logprobs_bt, entropy_bt | None)``; entropy is computed without gradient.
    """
    with policy.autocast():
        logits_btv = policy.model(input_ids=batch.input_ids_bt, attention_mask=batch.attention_mask_bt).logits
    logits_btv = logits_btv[:, :-1].float() / temperature
    targets_bt = batch.input_ids_bt[:, 1:]
    logprobs_bt = logits_btv.gather(-1, targets_bt.unsqueeze(-1)).squeeze(-1) - logits_btv.logsumexp(-1)
    logprobs_bt = torch.nn.functional.pad(logprobs_bt, (1, 0))
    entropy_bt = None
    if with_entropy:
        with torch.no_grad():
            entropy_bt = torch.nn.functional.pad(entropy_from_logits(logits_btv.detach()), (1, 0))
    return logprobs_bt, entropy_bt


def micro_batches(samples: list[Sample], index: list[int], size: int) -> list[list[int]]:
    """Split ``index`` into chunks of ``size``, longest samples first (less padding)."""
    ordered = sorted(index, key=lambda i: -len(samples[i]))
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


UPDATE_METRICS = ("loss", "entropy", "kl", "clip_frac/low", "clip_frac/high", "grad_norm",
                  "logprob_mismatch/mean", "logprob_mismatch/max", "tokens_per_s/train")


class MetricSum:
    """Token-weighted running means of scalar metrics across micro-batches."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.weights: dict[str, float] = {}

    def add(self, name: str, value, weight: float) -> None:
        value = float(value)
        self.sums[name] = self.sums.get(name, 0.0) + value * weight
        self.weights[name] = self.weights.get(name, 0.0) + weight

    def means(self) -> dict[str, float]:
        return {k: self.sums[k] / self.weights[k] for k in self.sums if self.weights[k] > 0}


@torch.no_grad()
def _reference_pass(policy, samples, advantages, algo, temperature, micro_size, need_old, need_ref):
    """Old (trainer) and reference logprobs per sample, as 1-D tensors (no gradient)."""
    old, ref = [None] * len(samples), [None] * len(samples)
    pad_id = policy.tokenizer.pad_token_id
    for chunk in micro_batches(samples, list(range(len(samples))), micro_size):
        batch = collate(samples, chunk, advantages, pad_id, policy.device)
        if need_old:
            lp, _ = token_logprobs(policy, batch, temperature)
            for row, i in enumerate(chunk):
                old[i] = lp[row, : len(samples[i])]
        if need_ref:
            with policy.reference():
                lp, _ = token_logprobs(policy, batch, temperature)
            for row, i in enumerate(chunk):
                ref[i] = lp[row, : len(samples[i])]
    return old, ref


def _stack(per_sample, chunk, width, device):
    out = torch.zeros(len(chunk), width, device=device)
    for row, i in enumerate(chunk):
        out[row, : per_sample[i].shape[0]] = per_sample[i]
    return out


def policy_update(policy, optimizer, scheduler, samples: list[Sample], advantages: list[float],
                  algo: AlgorithmConfig, optim: OptimConfig, temperature: float,
                  max_new_tokens: int, generator: torch.Generator) -> dict[str, float]:
    """Run ``algo.epochs`` x ``algo.minibatches`` optimizer steps on ``samples``.

    ``advantages[i]`` is broadcast over sample i's policy tokens. Returns the step's metrics:
    ``loss``, ``kl``, ``entropy``, ``clip_frac/low``, ``clip_frac/high``, ``grad_norm``,
    ``logprob_mismatch/mean|max`` (engine vs trainer on the same tokens, before the update),
    ``update/skipped_nonfinite``, ``tokens_per_s/train``, ``time/update_s``.
    """
    t0 = time.perf_counter()
    lr = scheduler.get_last_lr()[0]  # the rate this update uses
    if not samples:  # every group had equal rewards (and was dropped): nothing to learn from
        scheduler.step()
        return {**{k: None for k in UPDATE_METRICS}, "update/skipped_empty": 1.0,
                "lr": lr, "time/update_s": 0.0}
    need_old = algo.epochs > 1 or algo.minibatches > 1
    need_ref = policy.is_lora and (algo.kl_coef > 0 or algo.log_kl)
    if algo.kl_coef > 0 and not policy.is_lora:
        raise ValueError("algorithm.kl_coef > 0 needs LoRA (lora.r > 0): the reference is the base model")
    # eval mode throughout (dropout off): the ratio pi/pi_old must compare the same function
    was_training = policy.model.training
    policy.model.eval()
    old, ref = _reference_pass(policy, samples, advantages, algo, temperature,
                               optim.micro_batch_size, need_old, need_ref)
    pad_id = policy.tokenizer.pad_token_id
    stats, mismatch_max, skipped, tokens_seen = MetricSum(), 0.0, 0, 0
    params = [p for p in policy.model.parameters() if p.requires_grad]
    for epoch in range(algo.epochs):
        order = torch.randperm(len(samples), generator=generator)
        for mb in [c.tolist() for c in torch.tensor_split(order, algo.minibatches) if len(c)]:
            num_tokens = sum(samples[i].num_policy_tokens for i in mb)
            finite = True
            optimizer.zero_grad(set_to_none=True)
            for chunk in micro_batches(samples, mb, optim.micro_batch_size):
                batch = collate(samples, chunk, advantages, pad_id, policy.device)
                mask_bt = batch.loss_mask_bt
                width = mask_bt.shape[1]
                logprobs_bt, entropy_bt = token_logprobs(policy, batch, temperature, with_entropy=True)
                old_bt = _stack(old, chunk, width, policy.device) if need_old else logprobs_bt.detach()
                ref_bt = _stack(ref, chunk, width, policy.device) if need_ref else None
                n_tok = float(mask_bt.sum())
                # log(pi_trainer / pi_engine) on the tokens the engine sampled: both the mismatch
                # metric and the truncated importance weights come from it
                log_w_bt = (old_bt - batch.engine_logprobs_bt) * mask_bt
                if epoch == 0:
                    stats.add("logprob_mismatch/mean", log_w_bt.abs().sum() / max(n_tok, 1), n_tok)
                    mismatch_max = max(mismatch_max, float(log_w_bt.abs().max()))
                weights_bt = None
                if algo.importance_correction == "tis":
                    weights_bt = log_w_bt.exp().clamp(max=algo.importance_cap)
                    stats.add("importance/weight_mean", (weights_bt * mask_bt).sum() / max(n_tok, 1), n_tok)
                    capped_bt = (log_w_bt.exp() > algo.importance_cap).float() * mask_bt
                    stats.add("importance/capped_frac", capped_bt.sum() / max(n_tok, 1), n_tok)
                loss, m = clipped_policy_loss(
                    logprobs_bt, old_bt, batch.advantages_b, mask_bt, importance_weights_bt=weights_bt,
                    clip_low=algo.clip_low, clip_high=algo.clip_high, aggregation=algo.aggregation,
                    ref_logprobs_bt=ref_bt, kl_coef=algo.kl_coef, kl_estimator=algo.kl_estimator,
                    num_sequences=len(mb), num_tokens=num_tokens, max_tokens=max_new_tokens,
                )
                finite = finite and bool(torch.isfinite(loss))
                loss.backward()
                tokens_seen += int(n_tok)
                stats.add("loss", loss.detach() * len(mb) / len(chunk), len(chunk))
                stats.add("entropy", (entropy_bt * mask_bt).sum() / max(n_tok, 1), n_tok)
                for name in ("clip_frac/low", "clip_frac/high", "kl"):
                    if name in m:
                        stats.add(name, m[name], n_tok)
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, optim.max_grad_norm))
            if finite and math.isfinite(grad_norm):
                optimizer.step()
                stats.add("grad_norm", grad_norm, 1.0)
            else:
                skipped += 1
            optimizer.zero_grad(set_to_none=True)
    scheduler.step()
    policy.model.train(was_training)
    elapsed = time.perf_counter() - t0
    out = stats.means()
    out.update({
        "logprob_mismatch/max": mismatch_max,
        "update/skipped_nonfinite": float(skipped),
        "update/skipped_empty": 0.0,
        "lr": lr,
        "tokens_per_s/train": tokens_seen / elapsed if elapsed > 0 else 0.0,
        "time/update_s": elapsed,
    })
    return out
