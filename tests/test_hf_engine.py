"""HFEngine: batched left-padded sampling, logprobs equal a teacher-forced forward pass."""

import torch

from rl.rollout.base import SamplingParams
from rl.rollout.hf import HFEngine
from rl.rollout.chat import render_prompt
from rl.trainer.forward import collate, token_logprobs
from rl.types import Sample


def _prompts(tokenizer):
    return [
        render_prompt(tokenizer, [{"role": "user", "content": "Start with 3. Add 4."}]),
        render_prompt(tokenizer, [{"role": "user", "content": "hi"}]),  # shorter: left padding
    ]


def test_engine_logprobs_equal_teacher_forced_forward(tiny_fp32, tokenizer):
    engine = HFEngine(tiny_fp32, batch_size=3)  # 3 < 2 prompts x 2 samples: two engine batches
    params = SamplingParams(max_new_tokens=12, temperature=0.7, seed=0)
    groups = engine.generate(_prompts(tokenizer), params, n=2)
    assert [len(g) for g in groups] == [2, 2]
    samples, prompts = [], _prompts(tokenizer)
    for prompt, group in zip(prompts, groups):
        for c in group:
            assert len(c.token_ids) == len(c.logprobs) >= 1
            samples.append(Sample(prompt + c.token_ids, [0] * len(prompt) + [1] * len(c.token_ids),
                                  [0.0] * len(prompt) + c.logprobs, []))
    batch = collate(samples, list(range(len(samples))), [0.0] * len(samples),
                    tokenizer.pad_token_id, torch.device("cpu"))
    with torch.no_grad():
        trainer_bt, _, _ = token_logprobs(tiny_fp32, batch, temperature=0.7)
    mask = batch.loss_mask_bt.bool()
    # fp32 on both sides; left padding (engine) vs right padding (trainer) only reorders sums
    torch.testing.assert_close(trainer_bt[mask], batch.engine_logprobs_bt[mask], atol=1e-4, rtol=0)


def test_sampling_is_seeded_and_respects_max_tokens(tiny_fp32, tokenizer):
    engine = HFEngine(tiny_fp32)
    params = SamplingParams(max_new_tokens=5, temperature=1.0, seed=123)
    a = engine.generate(_prompts(tokenizer), params, n=3)
    b = engine.generate(_prompts(tokenizer), params, n=3)
    c = engine.generate(_prompts(tokenizer), params.with_seed(124), n=3)
    ids = lambda gs: [x.token_ids for g in gs for x in g]  # noqa: E731
    assert ids(a) == ids(b) and ids(a) != ids(c)
    for g in a:
        for x in g:
            assert len(x.token_ids) <= 5
            assert x.finish_reason == ("length" if len(x.token_ids) == 5 and tokenizer.eos_token_id
                                       not in x.token_ids else "stop")


def test_stops_at_eos_and_keeps_it(tiny_fp32, tokenizer):
    eos = tokenizer.eos_token_id
    # make EOS the only likely token: a huge bias on its logit (lm_head is tied, so add a bias)
    with torch.no_grad():
        bias = torch.zeros(tiny_fp32.model.config.vocab_size)
        bias[eos] = 1e4
        tiny_fp32.model.lm_head.bias = torch.nn.Parameter(bias)
    engine = HFEngine(tiny_fp32)
    (group,) = engine.generate(_prompts(tokenizer)[:1], SamplingParams(max_new_tokens=8, seed=0), n=2)
    for c in group:
        assert c.token_ids == [eos] and c.finish_reason == "stop" and c.text == ""
