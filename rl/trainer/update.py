"""The policy update: a ``TrainBatch`` + per-token advantages -> (epochs x minibatches) of clipped-loss steps.

Shared by every policy-gradient trainer. Sequences are right-padded per micro-batch (a
group's samples together, so they share their prompt's forward: ``rl.trainer.forward``) and
gradients are accumulated over micro-batches with the whole minibatch's token/sequence counts
as normalisers, so the micro-batch size changes memory, not the loss. Logprobs are computed in
float32 from logits divided by the sampling temperature (the distribution the engine sampled
from), at the policy tokens only.
"""

from __future__ import annotations

import math
import time

import torch

from rl.algorithms.losses import clipped_policy_loss, clipped_value_loss
from rl.trainer.config import AlgorithmConfig, OptimConfig
from rl.trainer.distributed import ONE, World
from rl.trainer.forward import Advantage, collate, micro_batches, token_logprobs
from rl.types import Sample


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

    def merged(self, world: World) -> "MetricSum":
        """The sums over every rank's micro-batches (the same means one process would log)."""
        out = MetricSum()
        for sums, weights in world.gather([(self.sums, self.weights)]):
            for name in sums:
                out.sums[name] = out.sums.get(name, 0.0) + sums[name]
                out.weights[name] = out.weights.get(name, 0.0) + weights[name]
        return out


@torch.no_grad()
def reference_pass(policy, samples: list[Sample], temperature: float, micro_size: int, need_old: bool,
                   need_ref: bool, value_head=None, share_prompt: bool = True, world: World = ONE):
    """Pre-update per-sample 1-D tensors (no gradient): ``(old, ref, values)``.

    ``old``: the trainer's logprobs now (pi_old), ``ref``: with the LoRA adapter disabled (both
    at policy tokens, 0 elsewhere), ``values``: the value head's (PPO); each a list of None
    where not asked for. With several ranks each runs its share of the micro-batches and the
    results are gathered, so every rank returns them all.
    """
    old, ref, values = [None] * len(samples), [None] * len(samples), [None] * len(samples)
    pad_id = policy.tokenizer.pad_token_id
    was_training = policy.model.training
    policy.model.eval()
    for chunk in micro_batches(samples, list(range(len(samples))), micro_size)[world.rank::world.size]:
        batch = collate(samples, chunk, [0.0] * len(samples), pad_id, policy.device)
        if need_old or value_head is not None:
            lp, _, v = token_logprobs(policy, batch, temperature, value_head=value_head, share_prompt=share_prompt)
            for row, i in enumerate(chunk):
                if need_old:
                    old[i] = lp[row, : len(samples[i])]
                if v is not None:
                    values[i] = v[row, : len(samples[i])].float()
        if need_ref:
            with policy.reference():
                lp, _, _ = token_logprobs(policy, batch, temperature, share_prompt=share_prompt)
            for row, i in enumerate(chunk):
                ref[i] = lp[row, : len(samples[i])]
    policy.model.train(was_training)
    if world.size > 1:
        mine = [(i, old[i], ref[i], values[i]) for i in range(len(samples))
                if old[i] is not None or ref[i] is not None or values[i] is not None]
        for i, o, r, v in world.gather(mine):
            old[i], ref[i], values[i] = o, r, v
    return old, ref, values


def _stack(per_sample, chunk, width, device):
    out = torch.zeros(len(chunk), width, device=device)
    for row, i in enumerate(chunk):
        out[row, : per_sample[i].shape[0]] = per_sample[i]
    return out


def needs_reference(policy, algo: AlgorithmConfig) -> bool:
    """Whether the update (or its logs) needs reference logprobs (LoRA only: adapter off)."""
    return policy.is_lora and (algo.kl_coef > 0 or algo.log_kl)


def policy_update(policy, optimizer, scheduler, batch, advantages: list[Advantage],
                  algo: AlgorithmConfig, optim: OptimConfig, max_new_tokens: int, generator: torch.Generator,
                  *, returns: list[torch.Tensor] | None = None, anchor=None, world: World = ONE) -> dict[str, float]:
    """Run ``algo.epochs`` x ``algo.minibatches`` optimizer steps on ``batch`` (a ``TrainBatch``).

    ``advantages[i]`` is a float broadcast over sample i's policy tokens, or per-token values
    (a list or 1-D tensor of ``len(sample)``: what ``rl.trainer.credit`` gives). With a value
    head on the batch (PPO), ``returns`` are the value targets and the loss adds ``vf_coef`` x
    the clipped value loss. The pre-update passes (pi_old when the batch is used for more than
    one optimizer step, the reference when KL is in the loss or logged, PPO's old values) come
    from the batch's cache. Returns the step's metrics: ``loss``, ``kl``,
    ``entropy``, ``clip_frac/low``, ``clip_frac/high``, ``grad_norm``,
    ``logprob_mismatch/mean|max`` (engine vs trainer on the same tokens, before the update),
    ``value/loss``, ``value/clip_frac`` (PPO), ``update/skipped_nonfinite``,
    ``tokens_per_s/train``, ``time/update_s``.

    With an SFT ``anchor`` (``rl.trainer.anchor.SFTAnchor``), each optimizer step also draws its
    trace rows (from ``generator``) and adds their scaled NLL's gradient before clipping; it then
    steps even when every group was dropped (the anchor alone), and logs ``anchor/nll``.

    With several ranks (``world``), every rank holds the whole batch; each runs the gradient
    pass of its share of every minibatch's micro-batches, the gradients are summed over ranks
    before clipping, and the metrics are merged: the same step (up to float summation order)
    and the same metrics as one process.
    """
    t0 = time.perf_counter()
    lr = optimizer.param_groups[0]["lr"]  # the rate this update uses (the loop may have set it: schedule.py)
    samples, value_head = batch.samples, batch.value_head
    if not samples and anchor is None:  # every group had equal rewards (and was dropped): nothing to learn from
        scheduler.step()
        return {**{k: None for k in UPDATE_METRICS}, "update/skipped_empty": 1.0,
                "lr": lr, "time/update_s": 0.0}
    need_old = algo.epochs > 1 or algo.minibatches > 1
    need_ref = needs_reference(policy, algo)
    if algo.kl_coef > 0 and not policy.is_lora:
        raise ValueError("algorithm.kl_coef > 0 needs LoRA (lora.r > 0): the reference is the base model")
    if (value_head is None) != (returns is None):
        raise ValueError("PPO needs both a value head on the batch and returns")
    kl_in_loss = algo.kl_coef if algo.kl_mode == "loss" else 0.0
    temperature = batch.temperature
    # eval mode throughout (dropout off): the ratio pi/pi_old must compare the same function
    was_training = policy.model.training
    policy.model.eval()
    old = batch.old_logprobs() if need_old else None
    ref = batch.ref_logprobs() if need_ref else None
    old_values = batch.values() if value_head is not None else None
    pad_id = policy.tokenizer.pad_token_id
    stats, mismatch_max, skipped, tokens_seen = MetricSum(), 0.0, 0, 0
    # clipped per group: a fresh value head's large gradient must not shrink the policy's step
    param_groups = [group["params"] for group in optimizer.param_groups]
    for epoch in range(algo.epochs):
        order = torch.randperm(len(samples), generator=generator)
        minibatches = [c.tolist() for c in torch.tensor_split(order, algo.minibatches) if len(c)]
        for mb in minibatches or [[]]:  # [[]]: no samples, an anchor-only step (else returned above)
            num_tokens = sum(samples[i].num_policy_tokens for i in mb)
            finite = True
            optimizer.zero_grad(set_to_none=True)
            for chunk in micro_batches(samples, mb, optim.micro_batch_size)[world.rank::world.size]:
                micro = collate(samples, chunk, advantages, pad_id, policy.device)
                mask_bt = micro.loss_mask_bt
                width = mask_bt.shape[1]
                with policy.checkpointing():  # recompute layers in the backward (optim.gradient_checkpointing)
                    logprobs_bt, entropy_bt, values_bt = token_logprobs(
                        policy, micro, temperature, with_entropy=True, value_head=value_head,
                        entropy_grad=algo.entropy_coef > 0, share_prompt=optim.share_prompt)
                old_bt = _stack(old, chunk, width, policy.device) if need_old else logprobs_bt.detach()
                ref_bt = _stack(ref, chunk, width, policy.device) if need_ref else None
                n_tok = float(mask_bt.sum())
                # log(pi_trainer / pi_engine) on the tokens the engine sampled: both the mismatch
                # metric and the truncated importance weights come from it
                log_w_bt = (old_bt - micro.engine_logprobs_bt) * mask_bt
                if epoch == 0:
                    stats.add("logprob_mismatch/mean", log_w_bt.abs().sum() / max(n_tok, 1), n_tok)
                    mismatch_max = max(mismatch_max, float(log_w_bt.abs().max()))
                weights_bt = None
                if algo.importance_correction == "tis":
                    weights_bt = log_w_bt.exp().clamp(max=algo.importance_cap)
                    stats.add("importance/weight_mean", (weights_bt * mask_bt).sum() / max(n_tok, 1), n_tok)
                    capped_bt = (log_w_bt.exp() > algo.importance_cap).float() * mask_bt
                    stats.add("importance/capped_frac", capped_bt.sum() / max(n_tok, 1), n_tok)
                norms = dict(num_sequences=len(mb), num_tokens=num_tokens, max_tokens=max_new_tokens)
                loss, m = clipped_policy_loss(
                    logprobs_bt, old_bt, micro.advantages_bt, mask_bt, importance_weights_bt=weights_bt,
                    clip_low=algo.clip_low, clip_high=algo.clip_high, aggregation=algo.aggregation,
                    ref_logprobs_bt=ref_bt, kl_coef=kl_in_loss, kl_estimator=algo.kl_estimator,
                    ratio_level=algo.ratio_level, entropy_bt=entropy_bt if algo.entropy_coef > 0 else None,
                    entropy_coef=algo.entropy_coef, **norms,
                )
                if value_head is not None:
                    v_loss, vm = clipped_value_loss(
                        values_bt, _stack(old_values, chunk, width, policy.device),
                        _stack(returns, chunk, width, policy.device), mask_bt, algo.value_clip,
                        aggregation=algo.aggregation, **norms)
                    loss = loss + algo.vf_coef * v_loss
                    # the micro-batch's share of the minibatch loss, scaled like `loss` below
                    stats.add("value/loss", vm["value/loss"] * len(mb) / len(chunk), len(chunk))
                    stats.add("value/clip_frac", vm["value/clip_frac"], n_tok)
                finite = finite and bool(torch.isfinite(loss))
                loss.backward()
                tokens_seen += int(n_tok)
                stats.add("loss", loss.detach() * len(mb) / len(chunk), len(chunk))
                stats.add("entropy", (entropy_bt.detach() * mask_bt).sum() / max(n_tok, 1), n_tok)
                if "entropy_bonus" in m:
                    stats.add("entropy_bonus", m["entropy_bonus"] * len(mb) / len(chunk), len(chunk))
                for name in ("clip_frac/low", "clip_frac/high", "kl"):
                    if name in m:
                        stats.add(name, m[name], n_tok)
            if anchor is not None:
                a = anchor.backward(policy, anchor.draw(generator), optim.micro_batch_size,
                                    optim.share_prompt, world)
                stats.add("anchor/nll", a["anchor/nll"], a["anchor/tokens"])
                finite = finite and math.isfinite(a["anchor/nll"])
            world.all_reduce_grads([p for g in param_groups for p in g])
            finite = world.all_true(finite)
            norms = [float(torch.nn.utils.clip_grad_norm_(g, optim.max_grad_norm)) for g in param_groups]
            grad_norm = norms[0]
            if finite and all(math.isfinite(n) for n in norms):
                optimizer.step()
                stats.add("grad_norm", grad_norm, 1.0)
                if len(norms) > 1:
                    stats.add("grad_norm/value", norms[1], 1.0)
            else:
                skipped += 1
            optimizer.zero_grad(set_to_none=True)
    scheduler.step()
    policy.model.train(was_training)
    if world.size > 1:
        stats, mismatch_max = stats.merged(world), world.max(mismatch_max)
        tokens_seen = sum(world.gather([tokens_seen]))
    elapsed = time.perf_counter() - t0
    # kl: null when it was neither in the loss nor logged; the policy terms, on an anchor-only step
    out = {**{k: None for k in UPDATE_METRICS}, **stats.means()}
    out.update({
        "logprob_mismatch/max": mismatch_max if samples else None,
        "update/skipped_nonfinite": float(skipped),
        "update/skipped_empty": 0.0 if samples else 1.0,
        "lr": lr,
        "tokens_per_s/train": tokens_seen / elapsed if elapsed > 0 else 0.0,
        "time/update_s": elapsed,
    })
    return out
