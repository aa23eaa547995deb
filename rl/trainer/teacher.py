"""On-policy distillation: the student samples, a frozen teacher scores the student's tokens.

The per-token reward is the negative reverse-KL estimate on the sampled token,
``r_t = -(log p_student(y_t | y_<t) - log p_teacher(y_t | y_<t))``, used directly as that
token's advantage (Agarwal et al. 2024, "On-Policy Distillation of Language Models" (GKD);
Lu & Thinking Machines 2025, "On-Policy Distillation"): no group baseline and no discounting,
so each token is pushed towards what the teacher would have said at that point. It can be
mixed with the group-relative outcome advantage (``distill.outcome_coef``). Both models score
the sampled tokens at the rollout temperature (T = 1 by default: the models themselves).

The student's logprobs come from the trainer's weights before the update (what the engine
sampled from, without the engine's numerical mismatch). Teacher and student must share a
tokenizer: the reward compares the two models on the same token ids.
"""

from __future__ import annotations

import torch

from rl.errors import ConfigError
from rl.trainer.batch import SignalOutput, TrainBatch


def reverse_kl_advantages(student_logprobs_t: torch.Tensor, teacher_logprobs_t: torch.Tensor,
                          mask_t: torch.Tensor) -> torch.Tensor:
    """``-(student - teacher)`` on positions where ``mask_t`` is 1, exactly 0 elsewhere."""
    keep = mask_t != 0
    diff = torch.where(keep, student_logprobs_t - teacher_logprobs_t, torch.zeros_like(student_logprobs_t))
    return -diff


def check_same_tokenizer(student_tokenizer, teacher_tokenizer, teacher: str) -> None:
    """Raise ``ConfigError`` unless both tokenizers map every token string to the same id."""
    s_vocab, t_vocab = student_tokenizer.get_vocab(), teacher_tokenizer.get_vocab()
    if s_vocab == t_vocab and student_tokenizer.eos_token_id == teacher_tokenizer.eos_token_id:
        return
    differing = sorted(set(s_vocab.items()) ^ set(t_vocab.items()), key=lambda kv: kv[1])[:3]
    raise ConfigError(
        f"config key 'distill.teacher': teacher '{teacher}' has a different tokenizer than the student "
        f"(vocab sizes {len(t_vocab)} vs {len(s_vocab)}, eos ids {teacher_tokenizer.eos_token_id} vs "
        f"{student_tokenizer.eos_token_id}; e.g. {differing}): per-token reverse KL needs the same "
        "token ids. Pick a teacher of the student's model family, or distil offline from its text "
        "(horizon distill --teacher.kind model --teacher.model ...)")


class TeacherKL:
    """The on-policy distillation signal: ``coef * r_t`` per token, ``r_t`` the reverse-KL reward
    above, from a frozen teacher (``distill.teacher``) scoring the student's samples."""

    name = "teacher"
    excludes = {
        "gae": ("distill.teacher", "on-policy distillation sets per-token advantages itself; it cannot be "
                "combined with PPO (advantage: gae). Use a group estimator (grpo, rloo, ...)"),
        "kl_reward": ("algorithm.kl_mode", "on-policy distillation's reward is already a per-token KL (to the "
                      "teacher); use kl_mode: loss for a KL to the reference"),
    }

    dense = "distill.teacher"  # a per-token signal for every group: dynamic sampling would drop real signal

    def __init__(self, teacher: str, student_tokenizer, coef: float, device: str = "auto", dtype: str = "auto"):
        from rl.models import check_model_available, load_policy, load_tokenizer

        check_model_available(teacher)
        check_same_tokenizer(student_tokenizer, load_tokenizer(teacher), teacher)
        self.policy = load_policy(teacher, lora=None, dtype=dtype, device=device, trainable=False)
        self.policy.model.eval()
        self.name_or_path, self.coef = teacher, coef

    @staticmethod
    def enabled(cfg) -> bool:
        return bool(cfg.distill.teacher)

    @staticmethod
    def check(cfg) -> None:
        pass

    @staticmethod
    def check_models(cfg) -> None:
        """Before anything loads: the teacher exists and shares the student's tokenizer."""
        from rl.models import check_model_available, load_tokenizer

        check_model_available(cfg.distill.teacher)
        check_same_tokenizer(load_tokenizer(cfg.model), load_tokenizer(cfg.distill.teacher), cfg.distill.teacher)

    @classmethod
    def build(cls, cfg, policy) -> "TeacherKL":
        return cls(cfg.distill.teacher, policy.tokenizer, cfg.distill.coef, device=cfg.device, dtype=cfg.dtype)

    def teacher_logprobs(self, batch: TrainBatch) -> list[torch.Tensor]:
        """Per-sample 1-D logprobs of every token of the batch under the teacher (no gradient); with
        several data-parallel ranks each runs its share of the micro-batches and all are gathered."""
        from rl.trainer.update import reference_pass

        old, _, _ = reference_pass(self.policy, batch.samples, batch.temperature, batch.micro_batch_size,
                                   need_old=True, need_ref=False, share_prompt=batch.share_prompt, world=batch.world)
        return [lp.float().cpu() for lp in old]

    def __call__(self, batch: TrainBatch) -> SignalOutput:
        """Metrics: ``distill/reverse_kl`` (mean ``log p_s - log p_t`` over policy tokens, a k1
        estimate of KL(student || teacher)) and ``distill/teacher_logprob``."""
        student_lp = [lp.float().cpu() for lp in batch.old_logprobs()]
        teacher_lp = self.teacher_logprobs(batch)
        out, kl_sum, t_sum, n_tok = [], 0.0, 0.0, 0
        for mask_t, s_t, t_t in zip(batch.masks, student_lp, teacher_lp):
            dense_t = reverse_kl_advantages(s_t, t_t, mask_t)
            out.append(self.coef * dense_t)
            kl_sum += float(-dense_t.sum())
            t_sum += float((t_t * mask_t).sum())
            n_tok += int(mask_t.sum())
        metrics = {"distill/reverse_kl": kl_sum / max(n_tok, 1), "distill/teacher_logprob": t_sum / max(n_tok, 1)}
        return SignalOutput(out, None, metrics)
