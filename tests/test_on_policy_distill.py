"""On-policy distillation: the per-token reverse-KL advantage, the tokenizer check, the loop."""

import shutil

import pytest
import torch

from rl.config import load_config
from rl.trainer.config import TrainConfig
from rl.errors import ConfigError
from rl.run.io import read_jsonl
from rl.trainer.batch import TrainBatch
from rl.trainer.teacher import TeacherKL, check_same_tokenizer, reverse_kl_advantages
from rl.trainer.forward import collate
from rl.types import Sample


def test_reverse_kl_advantage_worked_example():
    # positions:            prompt  t1     t2     t3
    student_t = torch.tensor([-9.0, -2.0, -0.5, -1.0])
    teacher_t = torch.tensor([-1.0, -1.0, -0.5, -3.0])
    mask_t = torch.tensor([0.0, 1.0, 1.0, 1.0])
    # -(s - t): t1: -(-2 + 1) = 1 (teacher likes the token more: push up);
    # t2: 0 (they agree); t3: -(-1 + 3) = -2 (teacher dislikes it: push down); prompt: 0
    assert reverse_kl_advantages(student_t, teacher_t, mask_t).tolist() == [0.0, 1.0, 0.0, -2.0]


def _samples(tokenizer):
    prompt = tokenizer("Start with 3. Add 4.")["input_ids"]
    return [Sample(prompt + [10, 11, 12], [0] * len(prompt) + [1, 1, 1], [0.0] * (len(prompt) + 3), []),
            Sample(prompt + [13], [0] * len(prompt) + [1], [0.0] * (len(prompt) + 1), [])]


def test_teacher_signal_matches_formula_and_is_zero_for_itself(tiny_path, tiny_lora, tiny_fp32):
    samples = _samples(tiny_lora.tokenizer)
    signal = TeacherKL(str(tiny_path), tiny_lora.tokenizer, coef=1.0, device="cpu", dtype="float32")
    # the fresh LoRA adapter (B = 0) is the base model: teacher == student, reward exactly 0
    out = signal(TrainBatch.from_samples(samples, tiny_lora))
    assert all(float(a) == 0.0 for row in out.advantages for a in row) and out.metrics["distill/reverse_kl"] == 0.0
    # a different student: each policy token gets coef * -(log p_s - log p_t)
    with torch.no_grad():
        for p in tiny_fp32.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    signal.coef = 2.0
    batch = TrainBatch.from_samples(samples, tiny_fp32, micro_batch_size=1)
    out = signal(batch)
    s = batch.old_logprobs()
    t = signal.teacher_logprobs(TrainBatch.from_samples(samples, signal.policy))
    for row, sample, s_t, t_t in zip(out.advantages, samples, s, t):
        mask = torch.tensor(sample.loss_mask, dtype=torch.float32)
        expected = -2.0 * (s_t - t_t) * mask
        assert torch.allclose(row, expected, atol=1e-6)
        assert expected[mask == 1].abs().min() > 0
    assert out.metrics["distill/reverse_kl"] != 0.0


def _other_tokenizer_model(tiny_path, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(tiny_path, other)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(other)
    tok.add_tokens(["<only_in_teacher>"])
    tok.save_pretrained(other)
    return other


def test_mismatched_tokenizers_give_a_clear_error(tiny_path, tmp_path, tokenizer):
    other = _other_tokenizer_model(tiny_path, tmp_path)
    from rl.models import load_tokenizer

    with pytest.raises(ConfigError, match="distill.teacher.*different tokenizer.*same token ids"):
        check_same_tokenizer(tokenizer, load_tokenizer(str(other)), str(other))
    # the trainer refuses before loading any weights or creating the run directory
    from rl.trainer.loop import train

    cfg = load_config(TrainConfig, None, ["--model", str(tiny_path), "--output_dir", str(tmp_path / "run"),
                                          "--distill.teacher", str(other)])
    with pytest.raises(ConfigError, match="different tokenizer"):
        train(cfg)
    assert not (tmp_path / "run").exists()


def test_per_token_advantages_collate_and_check_length(tokenizer):
    samples = _samples(tokenizer)
    n0 = len(samples[0])
    batch = collate(samples, [0, 1], [[0.0] * (n0 - 3) + [1.0, 2.0, 3.0], 0.5], 0, torch.device("cpu"))
    assert batch.advantages_bt[0, n0 - 3:n0].tolist() == [1.0, 2.0, 3.0]
    assert batch.advantages_bt[1, : len(samples[1])].tolist() == [0.5] * len(samples[1])
    with pytest.raises(ValueError, match="per-token advantages"):
        collate(samples, [0], [[1.0, 2.0]], 0, torch.device("cpu"))


def test_grpo_with_a_teacher_logs_reverse_kl(tmp_path, tiny_path, tiny_fp32):
    from rl.trainer.loop import train

    teacher = tmp_path / "teacher"  # tiny-random with perturbed weights: same tokenizer
    with torch.no_grad():
        for p in tiny_fp32.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    tiny_fp32.model.save_pretrained(teacher)
    tiny_fp32.tokenizer.save_pretrained(teacher)
    cfg = load_config(TrainConfig, None, [
        "--model", str(tiny_path), "--output_dir", str(tmp_path / "run"), "--max_steps", "2",
        "--rollout.engine", "hf", "--rollout.prompts_per_step", "2", "--rollout.group_size", "2",
        "--rollout.max_new_tokens", "8", "--progress", "false", "--dtype", "float32",
        "--distill.teacher", str(teacher), "--optim.lr", "0.01",
        "--algorithm.drop_zero_advantage_groups", "true"])
    rows = list(read_jsonl(train(cfg) / "metrics.jsonl"))
    # all-zero outcome groups are kept: the teacher's dense signal trains on every sample
    assert [r["train/samples"] for r in rows] == [4.0, 4.0]
    assert all(r["distill/reverse_kl"] != 0.0 and r["distill/teacher_logprob"] < 0 for r in rows)
    assert all(r["update/skipped_empty"] == 0.0 and r["grad_norm"] > 0 for r in rows)
