"""The SFT anchor (anchor.traces): trace rows as samples, its gradient, the anchor-only step, the loop."""

import pytest
import torch

from envs.chain_math import ChainMathConfig, ChainMathSource, oracle_solution
from rl.build import build_reward
from rl.config import EnvConfig, LoraConfig, RewardConfig, load_config
from rl.distill.pipeline import generate_traces, save_traces
from rl.distill.teachers import OracleTeacher
from rl.errors import ConfigError
from rl.models import load_policy
from rl.rollout.chat import render_prompt
from rl.run.io import read_jsonl
from rl.trainer.anchor import SFTAnchor, trace_sample
from rl.trainer.batch import TrainBatch
from rl.trainer.config import AlgorithmConfig, AnchorConfig, OptimConfig, TrainConfig
from rl.trainer.update import policy_update


def _traces(tmp_path, n=4):
    source = ChainMathSource(ChainMathConfig(min_horizon=1, max_horizon=2), seed=0)
    accepted, rejected, stats = generate_traces(OracleTeacher(oracle_solution, "oracle"), source,
                                                build_reward(EnvConfig(), RewardConfig(verifier_timeout_s=0)), n, 1)
    save_traces(tmp_path, accepted, rejected, {"teacher": "oracle", **stats})
    return tmp_path / "traces", accepted


def _policy(tiny_path):
    torch.manual_seed(0)
    return load_policy(str(tiny_path), lora=LoraConfig(r=4, alpha=8), dtype="float32", device="cpu")


def test_a_trace_row_trains_exactly_its_completion(tokenizer):
    prompt = [{"role": "user", "content": "Start at 3. Add 4."}]
    completion = [{"role": "assistant", "content": "3 + 4 = 7\n#### 7"}]
    sample = trace_sample(tokenizer, prompt, completion)
    n_prompt = sample.loss_mask.index(1)
    assert sample.token_ids[:n_prompt] == render_prompt(tokenizer, prompt)  # what the engine is prompted with
    assert all(sample.loss_mask[n_prompt:]) and len(sample) == len(sample.old_logprobs)
    trained = tokenizer.decode(sample.token_ids[n_prompt:])
    assert trained.startswith("3 + 4 = 7\n#### 7") and tokenizer.eos_token in trained  # the stop is trained


def test_anchor_gradient_is_coef_times_the_mean_token_nll(tmp_path, tiny_path):
    traces, rows = _traces(tmp_path)
    policy = _policy(tiny_path)
    anchor = SFTAnchor.load(AnchorConfig(traces=str(traces), coef=2.0, batch_size=3), policy.tokenizer)
    samples = anchor.samples[:3]
    params = [p for p in policy.model.parameters() if p.requires_grad]
    out = anchor.backward(policy, samples, micro_size=2)  # two micro-batches: 2 rows + 1 row
    got = [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    # by hand: the plain forward's NLL summed over every completion token, over the token count, x coef
    nll, tokens = 0.0, 0
    for s in samples:
        ids = torch.tensor([s.token_ids])
        logp = torch.log_softmax(policy.model(ids).logits[0, :-1].float(), -1)
        token_lp = logp.gather(1, ids[0, 1:, None])[:, 0]
        mask = torch.tensor(s.loss_mask[1:], dtype=torch.float32)
        nll = nll - (token_lp * mask).sum()
        tokens += int(mask.sum())
    (2.0 * nll / tokens).backward()
    for g, p in zip(got, params):
        torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-6)
    assert out["anchor/tokens"] == tokens
    assert out["anchor/nll"] == pytest.approx(float(nll.detach()) / tokens, rel=1e-4)


def test_the_draw_is_fixed_by_the_generator_and_drops_long_rows(tmp_path, tiny_path):
    traces, _ = _traces(tmp_path, n=6)
    policy = _policy(tiny_path)
    anchor = SFTAnchor.load(AnchorConfig(traces=str(traces), batch_size=5), policy.tokenizer)
    draw = lambda seed: [s.token_ids for s in anchor.draw(torch.Generator().manual_seed(seed))]  # noqa: E731
    assert draw(3) == draw(3) and draw(3) != draw(4) and len(draw(3)) == 5
    shortest = min(len(s) for s in anchor.samples)
    kept = SFTAnchor.load(AnchorConfig(traces=str(traces), max_length=shortest), policy.tokenizer)
    assert 0 < len(kept.samples) < len(anchor.samples) and all(len(s) <= shortest for s in kept.samples)
    with pytest.raises(Exception, match="anchor.max_length"):
        SFTAnchor.load(AnchorConfig(traces=str(traces), max_length=8), policy.tokenizer)


def test_an_update_with_no_groups_left_still_takes_the_anchor_step(tmp_path, tiny_path):
    traces, _ = _traces(tmp_path)
    policy = _policy(tiny_path)
    anchor = SFTAnchor.load(AnchorConfig(traces=str(traces), batch_size=4), policy.tokenizer)
    rows = anchor.samples

    def mean_nll():
        with torch.no_grad():
            return sum(_nll(policy, s) for s in rows) / len(rows)

    before = mean_nll()
    params = [p for p in policy.model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    batch = TrainBatch.from_samples([], policy)
    metrics = policy_update(policy, optimizer, scheduler, batch, [], AlgorithmConfig(), OptimConfig(micro_batch_size=4),
                            max_new_tokens=16, generator=torch.Generator().manual_seed(0), anchor=anchor)
    assert metrics["update/skipped_empty"] == 1.0 and metrics["anchor/nll"] > 0 and metrics["loss"] is None
    assert mean_nll() < before - 1e-3  # the step was taken, on the anchor's loss alone
    without = policy_update(policy, optimizer, scheduler, batch, [], AlgorithmConfig(), OptimConfig(),
                            max_new_tokens=16, generator=torch.Generator().manual_seed(0))
    assert "anchor/nll" not in without and without["update/skipped_empty"] == 1.0


def _nll(policy, sample):
    ids = torch.tensor([sample.token_ids])
    logp = torch.log_softmax(policy.model(ids).logits[0, :-1].float(), -1)
    mask = torch.tensor(sample.loss_mask[1:], dtype=torch.float32)
    return float(-(logp.gather(1, ids[0, 1:, None])[:, 0] * mask).sum() / mask.sum())


def test_bad_anchor_settings_fail_before_loading(tmp_path):
    from rl.trainer.loop import train

    with pytest.raises(ConfigError, match="anchor.coef"):
        load_config(TrainConfig, None, ["--anchor.coef", "0"])
    with pytest.raises(ConfigError, match="anchor.batch_size"):
        load_config(TrainConfig, None, ["--anchor.batch_size", "0"])
    cfg = load_config(TrainConfig, None, ["--anchor.traces", str(tmp_path / "nowhere"),
                                          "--output_dir", str(tmp_path / "run")])
    with pytest.raises(ConfigError, match="anchor.traces.*run the 'traces' stage"):
        train(cfg)
    assert not (tmp_path / "run").exists()


def test_the_loop_logs_the_anchor_loss(tmp_path):
    from rl.trainer.loop import train

    traces, _ = _traces(tmp_path / "distill")
    cfg = load_config(TrainConfig, None, [
        "--model", "tiny-random", "--rollout.engine", "hf", "--rollout.prompts_per_step", "2",
        "--rollout.group_size", "2", "--rollout.max_new_tokens", "8", "--progress", "false",
        "--max_steps", "2", "--output_dir", str(tmp_path / "run"), "--anchor.traces", str(traces),
        "--anchor.batch_size", "2"])
    train(cfg)
    rows = list(read_jsonl(tmp_path / "run" / "metrics.jsonl"))
    assert [r["step"] for r in rows] == [1, 2] and all(r["anchor/nll"] > 0 for r in rows)
