"""TRL 1.16's real ``GRPOTrainer._compute_loss`` run on given tensors: the reference our loss
tests compare against (tests/test_losses.py, tests/test_losses_sequence_ratio_entropy_value.py)."""

from collections import defaultdict
from types import SimpleNamespace

import torch


def trl_compute_loss(loss_type, logprobs_bt, inputs, *, epsilon_low=0.2, epsilon_high=0.2, beta=0.0,
                     max_completion_length=8, accumulation_steps=1, use_bias_correction_kl=False,
                     importance_sampling_level="token", use_vllm=False, entropies_bt=None, entropy_coef=0.0):
    """``(loss, metrics)`` of TRL's ``_compute_loss`` (trl/trainer/grpo_trainer.py lines 3020-3298).

    ``self`` is a SimpleNamespace holding only the attributes _compute_loss reads; its model
    call ``_get_per_token_logps_and_entropies`` returns ``logprobs_bt`` (and ``entropies_bt``).
    One process, no entropy mask, no off-policy mask. ``use_vllm=True`` applies
    ``inputs["importance_sampling_ratio"]`` to the policy term (vLLM importance-sampling
    correction); ``entropy_coef`` turns on TRL's static entropy bonus.
    """
    from trl.trainer.grpo_trainer import GRPOTrainer

    entropies_bt = torch.zeros_like(logprobs_bt) if entropies_bt is None else entropies_bt
    accelerator = SimpleNamespace(num_processes=1, sync_gradients=True, gather=lambda x: x,
                                  gather_for_metrics=lambda x: x, reduce=lambda x, reduction: x)
    trainer = SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **k: (logprobs_bt, entropies_bt, None),
        args=SimpleNamespace(use_bias_correction_kl=use_bias_correction_kl, delta=None,
                             steps_per_generation=accumulation_steps),
        accelerator=accelerator,
        model=SimpleNamespace(training=True),
        loss_type=loss_type,
        epsilon_low=epsilon_low,
        epsilon_high=epsilon_high,
        beta=beta,
        max_completion_length=max_completion_length,
        current_gradient_accumulation_steps=accumulation_steps,
        importance_sampling_level=importance_sampling_level,
        top_entropy_quantile=1.0,
        off_policy_mask_threshold=None,
        use_vllm=use_vllm,
        vllm_importance_sampling_correction=True,
        aux_loss_enabled=False,
        _entropy_bonus_enabled=entropy_coef != 0.0,
        use_adaptive_entropy=False,
        entropy_coef=entropy_coef,
        _metrics=defaultdict(lambda: defaultdict(list)),
    )
    loss = GRPOTrainer._compute_loss(trainer, None, inputs)
    return loss, {k: v[-1] for k, v in trainer._metrics["train"].items()}


def trl_inputs(rows, old_bt, ref_bt, advantages_b, mask_bt, is_ratio_bt, num_items):
    """The ``inputs`` dict ``_compute_loss`` reads, for the batch rows ``rows``."""
    batch, width = mask_bt[rows].shape
    return {
        "prompt_ids": torch.zeros(batch, 1, dtype=torch.long),
        "prompt_mask": torch.ones(batch, 1, dtype=torch.long),
        "completion_ids": torch.zeros(batch, width, dtype=torch.long),
        "completion_mask": mask_bt[rows],
        "advantages": advantages_b[rows],
        "old_per_token_logps": old_bt[rows],
        "ref_per_token_logps": ref_bt[rows],
        "importance_sampling_ratio": is_ratio_bt[rows],
        "num_items_in_batch": torch.tensor(num_items),
    }
