"""The sign of learning: one policy update makes positive-advantage completions more likely and
negative ones less likely, for outcome advantages and for first-error step credit."""

import torch

from rl.algorithms.process import first_error_advantages, token_advantages_from_steps
from rl.config import LoraConfig
from rl.models import load_policy
from rl.trainer.batch import TrainBatch
from rl.trainer.config import AlgorithmConfig, OptimConfig
from rl.trainer.update import policy_update
from rl.types import Sample

PROMPT = [5, 6, 7, 8]


def _token_logprobs(policy, ids: list[int]) -> list[float]:
    """log p(token i | tokens < i) for i >= 1 (index 0 has no prediction: 0.0)."""
    x = torch.tensor([ids])
    with torch.no_grad():
        logp = torch.log_softmax(policy.model(x).logits[0, :-1].float(), -1)
    return [0.0] + logp.gather(1, x[0, 1:, None])[:, 0].tolist()


def _on_policy_sample(policy, completion: list[int], spans=()) -> Sample:
    """A sample whose engine logprobs are the policy's own (an on-policy batch)."""
    ids = PROMPT + completion
    mask = [0] * len(PROMPT) + [1] * len(completion)
    lps = _token_logprobs(policy, ids)
    return Sample(ids, mask, [lp if m else 0.0 for lp, m in zip(lps, mask)], list(spans))


def _logprob(policy, sample: Sample, span: tuple[int, int]) -> float:
    start, end = span
    return sum(_token_logprobs(policy, sample.token_ids)[start:end])


def _update(policy, samples, advantages) -> None:
    batch = TrainBatch.from_samples(samples, policy, temperature=1.0, micro_batch_size=4)
    params = [p for p in policy.model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    policy_update(policy, optimizer, scheduler, batch, advantages, AlgorithmConfig.from_preset("dr_grpo"),
                  OptimConfig(micro_batch_size=4), max_new_tokens=16, generator=torch.Generator().manual_seed(0))


def _policy():
    torch.manual_seed(0)
    return load_policy("tiny-random", lora=LoraConfig(r=8, alpha=16), dtype="float32", device="cpu")


def test_outcome_advantages_move_likelihoods_the_right_way():
    policy = _policy()
    good, bad = _on_policy_sample(policy, [11, 12, 13, 14]), _on_policy_sample(policy, [21, 22, 23, 24])
    whole = (len(PROMPT), len(PROMPT) + 4)
    before = [_logprob(policy, s, whole) for s in (good, bad)]
    _update(policy, [good, bad], [[1.0] * 8, [-1.0] * 8])
    after = [_logprob(policy, s, whole) for s in (good, bad)]
    assert after[0] > before[0] + 1e-3 and after[1] < before[1] - 1e-3


def test_first_error_credit_raises_the_right_step_and_lowers_the_slip():
    # two 2-step completions of one prompt sharing a right first step; the second slips at step 2.
    # Exact labels [1, 1] and [1, 0]: step 1 gets 0 for both (same prefix, same result); step 2
    # gets +0.5 / -0.5. So the second steps move: the right one up, the slip down.
    policy = _policy()
    spans = [(4, 6), (6, 8)]
    right = _on_policy_sample(policy, [11, 12, 13, 14], spans)
    slip = _on_policy_sample(policy, [11, 12, 23, 24], spans)
    per_step = first_error_advantages([[1.0, 1.0], [1.0, 0.0]])
    assert per_step == [[0.0, 0.5], [0.0, -0.5]]
    advantages = [token_advantages_from_steps(spans, steps, 8, s.loss_mask)
                  for s, steps in zip((right, slip), per_step)]
    before = [_logprob(policy, s, spans[1]) for s in (right, slip)]
    _update(policy, [right, slip], advantages)
    after = [_logprob(policy, s, spans[1]) for s in (right, slip)]
    assert after[0] > before[0] + 1e-3 and after[1] < before[1] - 1e-3
