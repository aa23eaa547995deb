"""The trainer's forward pass: micro-batches -> per-token logprobs (and entropy, values).

Two things make it cheaper than ``model(...).logits`` on every position, and neither changes
the numbers the loss sees (tested against the plain forward):

- **Logits only where the loss reads them.** The decoder gives hidden states ``[B, T, H]``; the
  LM head, the float32 log-softmax and the entropy run only at the positions that predict a
  policy token, ``LOGIT_CHUNK`` rows at a time, so no ``[B, T, V]`` tensor is ever built (the
  prompt, env and padding positions of a 49k-vocabulary model were ~half the vocabulary work).
- **A shared prompt runs once.** Samples of one group share their prompt. When the samples of
  a micro-batch start with the same ``p`` tokens, those run once as a batch of one; their keys
  and values are repeated for the ``B`` rows and each row's own tokens attend to them
  (``past_key_values``), and the prefix's hidden states are broadcast. Gradients flow through
  the shared prefix (the repeat and the broadcast sum them back). When the rows are of very
  different lengths (completions that stopped early), their own tokens are instead packed into
  one sequence after the prefix, without padding, under a block-diagonal attention mask.
  ``micro_batches`` orders samples so that a group's samples share micro-batches.

Example::

    micro = collate(samples, [0, 1, 2], advantages, pad_id, device)
    logprobs_bt, entropy_bt, _ = token_logprobs(policy, micro, temperature=1.0, with_entropy=True)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rl.algorithms.losses import entropy_from_logits
from rl.types import Sample

LOGIT_CHUNK = 1024  # rows of [rows, V] logits at a time: bounds the float32 temporaries
PACK_BELOW = 0.8  # pack a shared-prefix micro-batch when its own tokens are < 80 % of the padded rows


@dataclass
class MicroBatch:
    index: list[int]                 # positions of these samples in the update's sample list
    input_ids_bt: torch.Tensor
    attention_mask_bt: torch.Tensor
    loss_mask_bt: torch.Tensor       # 1 on policy tokens
    engine_logprobs_bt: torch.Tensor
    advantages_bt: torch.Tensor      # per token (a per-sample advantage is broadcast over its row)
    shared_prefix: int = 0           # leading tokens identical in every row (each row has more)


Advantage = float | list[float] | torch.Tensor  # one per sample, or one per token of the sample


def collate(samples: list[Sample], index: list[int], advantages: list[Advantage], pad_id: int,
            device) -> MicroBatch:
    """Right-pad ``samples[index]`` into tensors on ``device``.

    ``advantages[i]`` is a float (broadcast over sample i's tokens) or a list / 1-D tensor of
    ``len(samples[i])`` per-token values (only policy tokens matter: the loss masks the rest).
    """
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
        advantages_bt=torch.tensor([pad(_advantage_row(advantages[i], len(samples[i]), i), 0.0) for i in index],
                                   device=device, dtype=torch.float32),
        shared_prefix=common_prefix([samples[i].token_ids for i in index]),
    )


def _advantage_row(advantage: Advantage, length: int, i: int) -> list[float]:
    if isinstance(advantage, (int, float)):
        return [float(advantage)] * length
    row = advantage.tolist() if isinstance(advantage, torch.Tensor) else [float(a) for a in advantage]
    if len(row) != length:
        raise ValueError(f"sample {i}: {len(row)} per-token advantages for {length} tokens")
    return row


def common_prefix(rows: list[list[int]]) -> int:
    """How many leading tokens all ``rows`` share, leaving every row at least one token of its own
    (0 for a single row: there is nothing to share)."""
    if len(rows) < 2:
        return 0
    first, limit = rows[0], min(len(r) for r in rows) - 1
    for t in range(limit):
        if any(r[t] != first[t] for r in rows[1:]):
            return t
    return max(limit, 0)


def micro_batches(samples: list[Sample], index: list[int], size: int) -> list[list[int]]:
    """Split ``index`` into chunks of ``size``: samples with the same prompt together (so a
    micro-batch can share it), longest first within a prompt (less padding)."""
    def prompt(i: int) -> tuple[int, ...]:
        mask = samples[i].loss_mask
        return tuple(samples[i].token_ids[: mask.index(1) if 1 in mask else len(mask)])

    first_seen: dict[tuple[int, ...], int] = {}
    for i in index:
        first_seen.setdefault(prompt(i), len(first_seen))
    ordered = sorted(index, key=lambda i: (first_seen[prompt(i)], -len(samples[i])))
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


def _decoder_and_head(model):
    """The transformer body and the LM head of a causal LM (through a peft wrapper if any)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.model, base.get_output_embeddings()


def hidden_states(policy, micro: MicroBatch, share_prompt: bool = True) -> torch.Tensor:
    """Last-layer (normed) hidden states ``[B, T, H]``, the shared prefix run once when asked.

    With a shared prefix the rows' own tokens run either packed into one sequence without
    padding (block-diagonal attention over the rows, all of them attending to the prefix), when
    they are under ``PACK_BELOW`` of the padded rows (completions that stopped early), or as a
    padded batch over the prefix's repeated keys/values: packing saves the padded tokens' linear
    layers but computes a dense attention over the whole pack. Under gradient checkpointing
    (``Policy.checkpointing``) the rows are always packed: a checkpointed layer drops a KV cache.
    """
    decoder, _ = _decoder_and_head(policy.model)
    rows, p = micro.input_ids_bt.shape[0], micro.shared_prefix if share_prompt else 0
    if p == 0:
        return decoder(input_ids=micro.input_ids_bt, attention_mask=micro.attention_mask_bt,
                       use_cache=False).last_hidden_state
    lengths = micro.attention_mask_bt.sum(1).tolist()
    own, padded = sum(lengths) - rows * p, rows * (micro.input_ids_bt.shape[1] - p)
    if own <= PACK_BELOW * padded or _checkpointing(decoder):  # a checkpointed layer drops a KV cache
        return _packed_hidden_states(decoder, micro.input_ids_bt, lengths, p)
    prefix = decoder(input_ids=micro.input_ids_bt[:1, :p], use_cache=True)
    cache = prefix.past_key_values
    cache.batch_repeat_interleave(rows)
    rest = decoder(input_ids=micro.input_ids_bt[:, p:], attention_mask=micro.attention_mask_bt,
                   past_key_values=cache, use_cache=True)
    return torch.cat([prefix.last_hidden_state.expand(rows, -1, -1), rest.last_hidden_state], dim=1)


def _checkpointing(decoder) -> bool:
    """Whether transformers' gradient checkpointing is on for a layer of ``decoder`` (it then
    replaces a ``past_key_values`` passed to the layer by None: ``Policy.checkpointing``)."""
    return any(getattr(m, "gradient_checkpointing", False) and m.training for m in decoder.modules())


def _packed_hidden_states(decoder, input_ids_bt: torch.Tensor, lengths: list[int], p: int) -> torch.Tensor:
    """The prefix then every row's own tokens in one sequence: a custom 4D mask lets a token see
    the prefix and the earlier tokens of its own row; positions restart after the prefix per row.
    Hidden states are gathered back into the padded ``[B, T, H]`` layout (padding reads token 0)."""
    device = input_ids_bt.device
    pieces, segment, positions, index_bt = [input_ids_bt[0, :p]], [-1] * p, list(range(p)), []
    offset = p
    for row, length in enumerate(lengths):
        pieces.append(input_ids_bt[row, p:length])
        segment += [row] * (length - p)
        positions += list(range(p, length))
        index_bt.append(list(range(p)) + list(range(offset, offset + length - p))
                        + [0] * (input_ids_bt.shape[1] - length))
        offset += length - p
    seg_l = torch.tensor(segment, device=device)
    causal_ll = torch.ones(offset, offset, dtype=torch.bool, device=device).tril()
    visible_ll = causal_ll & ((seg_l[None, :] == seg_l[:, None]) | (seg_l[None, :] == -1))
    h_1lh = decoder(input_ids=torch.cat(pieces)[None], attention_mask=visible_ll[None, None],
                    position_ids=torch.tensor([positions], device=device), use_cache=False).last_hidden_state
    return h_1lh[0][torch.tensor(index_bt, device=device)]


def token_logprobs(policy, micro: MicroBatch, temperature: float, with_entropy: bool = False,
                   value_head=None, entropy_grad: bool = False, share_prompt: bool = True):
    """Per-token logprobs ``[B, T]`` of ``input_ids`` at the policy (loss) tokens, 0 elsewhere;
    entropy there likewise, and the value head's values at every position.

    Returns ``(logprobs_bt, entropy_bt | None, values_bt | None)``, float32. Logprobs come from
    ``logits / temperature`` (the distribution the engine sampled from). Entropy is computed
    without gradient unless ``entropy_grad`` (an entropy bonus in the loss); values come from
    ``value_head`` on the last hidden state (PPO), from the same forward.
    """
    _, head = _decoder_and_head(policy.model)
    rows, width = micro.input_ids_bt.shape
    at_bt = micro.loss_mask_bt[:, 1:] != 0  # position t predicts token t + 1
    targets_n = micro.input_ids_bt[:, 1:][at_bt]
    with policy.autocast():
        h_bth = hidden_states(policy, micro, share_prompt)
        h_nh = h_bth[:, :-1][at_bt]
        logprobs, entropies = [], []
        for start in range(0, h_nh.shape[0], LOGIT_CHUNK):
            logits_cv = head(h_nh[start:start + LOGIT_CHUNK]).float() / temperature
            targets_c = targets_n[start:start + LOGIT_CHUNK]
            logprobs.append(logits_cv.gather(-1, targets_c[:, None]).squeeze(-1) - logits_cv.logsumexp(-1))
            if with_entropy:
                with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
                    source = logits_cv if entropy_grad else logits_cv.detach()
                    entropies.append(entropy_from_logits(source[None])[0])
    logprobs_bt = _scatter(at_bt, logprobs, h_bth)
    entropy_bt = _scatter(at_bt, entropies, h_bth) if with_entropy else None
    values_bt = value_head(h_bth) if value_head is not None else None
    return logprobs_bt, entropy_bt, values_bt


def _scatter(at_bt: torch.Tensor, chunks: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """Per-position values ``[B, T]`` (0 at position 0 and off ``at_bt``) from the flat chunks."""
    flat_n = torch.cat(chunks) if chunks else like.new_zeros(0, dtype=torch.float32)
    out_bt = torch.zeros(at_bt.shape, dtype=torch.float32, device=at_bt.device).masked_scatter(at_bt, flat_n)
    return torch.nn.functional.pad(out_bt, (1, 0))
