"""The SFT anchor: a supervised loss on fixed traces, added to every policy update.

``anchor.traces`` names a saved traces dataset (what ``horizon distill`` trained the student
on). Each optimizer step draws ``anchor.batch_size`` of its rows and adds ``anchor.coef`` x
their mean NLL per completion token to the RL loss, before the gradient is clipped: one step
serves both (PPO-ptx, Ouyang et al. 2022). TRL's SFTTrainer cannot be reused here: its loss
lives in its own training loop, and this one must share the RL update's optimizer step.

Example::

    anchor = SFTAnchor.load(cfg.anchor, policy.tokenizer)
    rows = anchor.draw(generator)            # the step's rows, from the step's generator
    metrics = anchor.backward(policy, rows, micro_size=8)   # gradients accumulate into .grad
"""

from __future__ import annotations

import torch

from rl.errors import DataError
from rl.rollout.chat import render_prompt
from rl.trainer.config import AnchorConfig
from rl.trainer.distributed import ONE, World
from rl.trainer.forward import collate, micro_batches, token_logprobs
from rl.traces import load_traces
from rl.types import Sample


def trace_sample(tokenizer, prompt: list[dict], completion: list[dict]) -> Sample:
    """One trace row as a ``Sample`` whose loss mask covers the completion's tokens.

    The prompt is rendered exactly as the rollout engine is prompted (``render_prompt``); the
    completion is the rest of the whole conversation's chat rendering (its end-of-turn marker
    included, so the stop is trained too)."""
    whole = tokenizer.apply_chat_template(prompt + completion, tokenize=False)
    head = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    if not whole.startswith(head):
        raise DataError("a trace's chat rendering does not start with its prompt's rendering (the chat "
                        "template rewrites earlier turns): anchor traces need a plain prompt/completion template")
    prompt_ids = render_prompt(tokenizer, prompt)
    completion_ids = tokenizer(whole[len(head):], add_special_tokens=False)["input_ids"]
    ids = prompt_ids + completion_ids
    mask = [0] * len(prompt_ids) + [1] * len(completion_ids)
    return Sample(token_ids=ids, loss_mask=mask, old_logprobs=[0.0] * len(ids), step_spans=[])


class SFTAnchor:
    """Tokenised trace rows and the loss on a draw of them."""

    def __init__(self, samples: list[Sample], cfg: AnchorConfig):
        if not samples:
            raise DataError(f"anchor.traces '{cfg.traces}': no row fits anchor.max_length ({cfg.max_length} "
                            "tokens): raise anchor.max_length")
        self.samples, self.cfg = samples, cfg

    @classmethod
    def load(cls, cfg: AnchorConfig, tokenizer) -> "SFTAnchor":
        """Read and tokenise ``cfg.traces``, leaving out rows longer than ``cfg.max_length``."""
        dataset, _ = load_traces(cfg.traces)
        samples = [trace_sample(tokenizer, row["prompt"], row["completion"]) for row in dataset]
        return cls([s for s in samples if len(s) <= cfg.max_length], cfg)

    def draw(self, generator: torch.Generator) -> list[Sample]:
        """``batch_size`` rows, with replacement, from ``generator`` (the update's, seeded per step)."""
        picks = torch.randint(len(self.samples), (self.cfg.batch_size,), generator=generator)
        return [self.samples[i] for i in picks.tolist()]

    def backward(self, policy, rows: list[Sample], micro_size: int, share_prompt: bool = True,
                 world: World = ONE) -> dict[str, float]:
        """Accumulate the gradient of ``coef x`` mean NLL per completion token of ``rows`` into the
        policy's ``.grad`` (each rank runs its share of the micro-batches; the caller sums the ranks'
        gradients). Returns ``anchor/nll`` (this rank's token-mean) and ``anchor/tokens`` (its count)."""
        total = sum(s.num_policy_tokens for s in rows)  # every rank draws the same rows
        nll_sum, tokens = 0.0, 0
        pad_id = policy.tokenizer.pad_token_id
        for chunk in micro_batches(rows, list(range(len(rows))), micro_size)[world.rank::world.size]:
            micro = collate(rows, chunk, [0.0] * len(rows), pad_id, policy.device)
            with policy.checkpointing():
                logprobs_bt, _, _ = token_logprobs(policy, micro, temperature=1.0, share_prompt=share_prompt)
            nll = -(logprobs_bt * micro.loss_mask_bt).sum()
            (self.cfg.coef * nll / total).backward()
            nll_sum += float(nll.detach())
            tokens += int(micro.loss_mask_bt.sum())
        return {"anchor/nll": nll_sum / max(tokens, 1), "anchor/tokens": float(tokens)}
