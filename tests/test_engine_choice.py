"""Engine choice (auto falls back to transformers, saying so) and the engine/trainer
mismatch correction (truncated importance sampling) on worked numbers."""

import math

import torch

from rl.config import RolloutConfig
from rl.trainer.config import AlgorithmConfig, OptimConfig
from rl.types import Sample


def test_auto_falls_back_to_hf_without_vllm(tiny_fp32, monkeypatch, capsys):
    import rl.rollout.vllm
    from rl.build import build_engine

    monkeypatch.setattr(rl.rollout.vllm, "vllm_available", lambda: False)
    engine = build_engine(RolloutConfig(engine="auto"), tiny_fp32)
    assert engine.name == "hf"
    assert "vLLM is not installed" in capsys.readouterr().err


def test_explicit_vllm_without_vllm_is_a_clear_error(tiny_fp32, monkeypatch):
    import pytest

    import rl.rollout.vllm
    from rl.errors import EngineError

    monkeypatch.setattr(rl.rollout.vllm, "vllm_available", lambda: False)
    with pytest.raises(EngineError, match="rollout.engine: hf"):
        rl.rollout.vllm.VLLMEngine(tiny_fp32, RolloutConfig().vllm)


def _samples_with_engine_offsets(policy, offsets):
    """Samples whose engine logprobs are the trainer's own plus a fixed offset per sample."""
    from rl.trainer.forward import collate, token_logprobs

    ids = [[1, 5, 9, 13, 17], [1, 6, 10, 14, 18]]
    base = [Sample(x, [0, 0, 1, 1, 1], [0.0] * 5, []) for x in ids]
    batch = collate(base, [0, 1], [0.0, 0.0], 0, torch.device("cpu"))
    with torch.no_grad():
        lp_bt, _, _ = token_logprobs(policy, batch, temperature=1.0)
    return [Sample(x, [0, 0, 1, 1, 1], [0.0, 0.0] + [float(v) + off for v in lp_bt[i, 2:]], [])
            for i, (x, off) in enumerate(zip(ids, offsets))]


def test_truncated_importance_weights_and_mismatch_metrics(tiny_lora):
    from rl.trainer.batch import TrainBatch
    from rl.trainer.update import policy_update

    # sample 0: engine logprob = trainer - log 3  -> weight pi_trainer / pi_engine = 3 -> capped at 2
    # sample 1: engine logprob = trainer + log 2  -> weight 1/2
    samples = _samples_with_engine_offsets(tiny_lora, [-math.log(3), math.log(2)])
    optimizer = torch.optim.SGD([p for p in tiny_lora.model.parameters() if p.requires_grad], lr=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    metrics = policy_update(tiny_lora, optimizer, scheduler, TrainBatch.from_samples(samples, tiny_lora), [1.0, -1.0],
                            AlgorithmConfig(importance_cap=2.0, log_kl=False), OptimConfig(), 3,
                            torch.Generator().manual_seed(0))
    # 3 tokens at weight 2, 3 tokens at weight 0.5: mean 1.25; half the tokens hit the cap
    assert metrics["importance/weight_mean"] == pytest_approx(1.25)
    assert metrics["importance/capped_frac"] == pytest_approx(0.5)
    # |delta| is log 3 on 3 tokens and log 2 on 3 tokens
    assert metrics["logprob_mismatch/mean"] == pytest_approx((math.log(3) + math.log(2)) / 2)
    assert metrics["logprob_mismatch/max"] == pytest_approx(math.log(3))


def pytest_approx(x):
    import pytest

    return pytest.approx(x, abs=1e-5)


def test_vllm_dtype_auto_keeps_merged_lora_deltas_in_float32():
    from types import SimpleNamespace

    from rl.rollout.vllm import _dtype

    bf16_trainer = SimpleNamespace(autocast_dtype=torch.bfloat16)
    assert _dtype("auto", bf16_trainer, merged_lora=True) == "float32"
    assert _dtype("auto", bf16_trainer, merged_lora=False) == "bfloat16"  # adapter or full weights
    assert _dtype("auto", SimpleNamespace(autocast_dtype=None), merged_lora=False) == "float32"
    assert _dtype("bfloat16", bf16_trainer, merged_lora=True) == "bfloat16"  # asked for: kept
    # why: a delta of ~0.1 % of each weight (an RL run's LoRA update) mostly vanishes in bf16
    w = torch.randn(256, 256, generator=torch.Generator().manual_seed(0))
    merged = w + 1e-3 * w * torch.rand(256, 256, generator=torch.Generator().manual_seed(1))
    kept_bf16 = (merged.bfloat16() != w.bfloat16()).float().mean().item()
    assert kept_bf16 < 0.5 and (merged != w).float().mean().item() > 0.99
