"""Train a ``ProcessRewardModel`` on stepwise rows (``labeling.to_trl_rows`` format).

TRL 1.16 has no ``PRMTrainer`` (not even under ``trl.experimental``; checked, see FACTS.md),
so this is a small hand-written loop: encode -> shuffle -> minibatch -> loss at step ends ->
AdamW.

Loss (Math-Shepherd, Wang et al. 2024, eq. 4; TRL's former ``PRMTrainer``: token
classification with every non-step-end token ignored), averaged over all step ends of the
minibatch, with ``p = softmax(head(h_t))[1]`` at step end t and target ``y_t``::

    L = -mean_t [ y_t log p_t + (1 - y_t) log (1 - p_t) ]

With hard labels (``label_key="labels"`` or ``"exact_labels"``, y in {0, 1}) this is the
2-way cross-entropy; with ``label_key="soft_labels"`` (y = MC fraction) it is the BCE with
soft targets that Math-Shepherd calls the SE variant. One formula serves both.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import torch

from rewards.prm.labeling import STEP_COLUMNS
from rewards.prm.model import ProcessRewardModel, encode
from rl.errors import DataError


def _messages(row: dict[str, Any]) -> list[dict[str, str]]:
    return row.get("messages") or [{"role": "user", "content": row["prompt"]}]


def encode_rows(tokenizer, rows, label_key: str) -> list[tuple[list[int], list[int], list[float]]]:
    """``(input_ids, step_end_positions, targets)`` per row; targets are floats in [0, 1]."""
    out = []
    for i, row in enumerate(rows):
        labels = row.get(label_key)
        if labels is None:
            raise DataError(f"row {i} ({row.get('task_id', '?')}) has no {label_key!r}: pick another label_key")
        if len(labels) != len(row["completions"]):
            raise DataError(f"row {i}: {len(row['completions'])} steps but {len(labels)} {label_key}")
        ids, positions = encode(tokenizer, _messages(row), row["completions"])
        out.append((ids, positions, [float(y) for y in labels]))
    return out


def until_first_error(row: dict[str, Any], error_key: str) -> dict[str, Any]:
    """``row`` with its steps and every per-step column cut after the first step whose
    ``error_key`` label is false (PRM800K-style: a step is judged only after a correct prefix).

    Returns a new row; a row with no error is returned whole. Math-Shepherd itself labels every
    step; cutting removes the knock-on steps that teach a PRM "later lines are worse".
    """
    flags = row[error_key]
    if flags is None:
        raise DataError(f"row {row.get('task_id', '?')} has no {error_key!r} to find its first error in")
    cut = next((i + 1 for i, ok in enumerate(flags) if not ok), len(flags))
    return {k: (v[:cut] if k in STEP_COLUMNS and v is not None else v) for k, v in row.items()}


def step_loss(logits_per_row: list[torch.Tensor], targets_per_row: list[list[float]]) -> torch.Tensor:
    """Mean soft-target cross-entropy over all step ends; ``logits_per_row[b]`` is ``[S_b, 2]``."""
    logits_nc = torch.cat(logits_per_row)
    targets_n = torch.tensor([y for ys in targets_per_row for y in ys], dtype=logits_nc.dtype,
                             device=logits_nc.device)
    logp_nc = torch.log_softmax(logits_nc, dim=-1)
    return -(targets_n * logp_nc[:, 1] + (1.0 - targets_n) * logp_nc[:, 0]).mean()


def train_prm(
    model: ProcessRewardModel,
    tokenizer,
    dataset,
    *,
    label_key: str = "labels",
    epochs: int = 1,
    lr: float = 1e-4,
    batch_size: int = 8,
    max_steps: int | None = None,
    seed: int = 0,
    max_grad_norm: float = 1.0,
    log_fn: Callable[[dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Train ``model`` in place on ``dataset`` rows (a ``datasets.Dataset`` or a list of dicts).

    Rows need ``completions`` (step texts), ``label_key`` (one label per step) and
    ``messages`` or ``prompt``. Only parameters with ``requires_grad`` are trained (LoRA +
    head, or everything when the trunk has no adapter). Deterministic for a given ``seed``:
    the shuffle of each epoch and torch's RNG are seeded (the global torch RNG is restored
    afterwards). Rows with no steps are skipped. The trunk's autocast (bf16 where the CPU
    supports it, see ``rl.models.pick_autocast_dtype``) is applied by ``model.forward``.

    ``log_fn`` gets ``{"step", "epoch", "loss", "steps_in_batch", "time"}`` after each update.

    Returns:
        ``{"losses": [per-update loss], "steps": updates made, "loss/first", "loss/last",
        "time_s"}``.
    """
    encoded = [r for r in encode_rows(tokenizer, dataset, label_key) if r[1]]
    if not encoded:
        raise DataError("train_prm got no row with at least one step")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the PRM has no trainable parameter (was it loaded with trainable=False?)")
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    order_rng = random.Random(seed)
    losses: list[float] = []
    start = time.time()
    was_training = model.training
    model.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for epoch in range(epochs):
            order = list(range(len(encoded)))
            order_rng.shuffle(order)
            for b0 in range(0, len(order), batch_size):
                if max_steps is not None and len(losses) >= max_steps:
                    break
                batch = [encoded[i] for i in order[b0:b0 + batch_size]]
                logits = model.step_logits([(ids, pos) for ids, pos, _ in batch], tokenizer.pad_token_id)
                loss = step_loss(logits, [ys for _, _, ys in batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
                optimizer.step()
                losses.append(float(loss.detach()))
                if log_fn is not None:
                    log_fn({"step": len(losses), "epoch": epoch, "loss": losses[-1],
                            "steps_in_batch": sum(len(ys) for _, _, ys in batch), "time": time.time()})
    model.train(was_training)
    return {"losses": losses, "steps": len(losses), "loss/first": losses[0] if losses else float("nan"),
            "loss/last": losses[-1] if losses else float("nan"), "time_s": time.time() - start}
