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
from rl.types import Sample


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


class TeacherScorer:
    """A frozen teacher that returns per-token logprobs of the student's samples."""

    def __init__(self, teacher: str, student_tokenizer, device: str = "auto", dtype: str = "auto"):
        from rl.models import check_model_available, load_policy, load_tokenizer

        check_model_available(teacher)
        check_same_tokenizer(student_tokenizer, load_tokenizer(teacher), teacher)
        self.policy = load_policy(teacher, lora=None, dtype=dtype, device=device, trainable=False)
        self.policy.model.eval()
        self.name = teacher

    def token_logprobs(self, policy, samples: list[Sample], temperature: float,
                       micro_batch_size: int) -> list[torch.Tensor]:
        """Per-sample 1-D logprobs of every token of ``samples`` under ``policy`` (no gradient)."""
        from rl.update import reference_pass

        old, _, _ = reference_pass(policy, samples, temperature, micro_batch_size, need_old=True, need_ref=False)
        return [lp.float().cpu() for lp in old]

    def advantages(self, student, samples: list[Sample], outcome_advantages: list[float], coef: float,
                   outcome_coef: float, temperature: float, micro_batch_size: int):
        """Per-token advantages ``coef * r_t + outcome_coef * A_outcome`` for every sample.

        Returns ``(advantages, metrics)``: ``advantages[i]`` is a list of ``len(samples[i])``
        floats; metrics hold ``distill/reverse_kl`` (mean ``log p_s - log p_t`` over policy
        tokens, a k1 estimate of KL(student || teacher)) and ``distill/teacher_logprob``.
        """
        student_lp = self.token_logprobs(student, samples, temperature, micro_batch_size)
        teacher_lp = self.token_logprobs(self.policy, samples, temperature, micro_batch_size)
        out, kl_sum, t_sum, n_tok = [], 0.0, 0.0, 0
        for sample, s_t, t_t, a in zip(samples, student_lp, teacher_lp, outcome_advantages):
            mask_t = torch.tensor(sample.loss_mask, dtype=torch.float32)
            dense_t = reverse_kl_advantages(s_t, t_t, mask_t)
            out.append((coef * dense_t + outcome_coef * a * mask_t).tolist())
            kl_sum += float(-dense_t.sum())
            t_sum += float((t_t * mask_t).sum())
            n_tok += int(mask_t.sum())
        metrics = {"distill/reverse_kl": kl_sum / max(n_tok, 1), "distill/teacher_logprob": t_sum / max(n_tok, 1)}
        return out, metrics
