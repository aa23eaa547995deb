"""The trainer's forward: logits only at policy tokens and a shared prompt run once give the same
logprobs, entropy, values and gradients as the plain full forward."""

import pytest
import torch

from rl.algorithms.losses import entropy_from_logits
from rl.trainer.forward import collate, common_prefix, micro_batches, token_logprobs
from rl.types import Sample

PROMPT = [1, 17, 33, 49, 65, 81, 97]


def _samples():
    """A group of three completions of one prompt (different lengths) and one other prompt."""
    rows = [PROMPT + [5, 6, 7, 8], PROMPT + [9, 10], PROMPT + [11, 12, 13], [1, 17, 40, 41, 42, 43]]
    prompt_len = [len(PROMPT)] * 3 + [3]
    return [Sample(r, [0] * n + [1] * (len(r) - n), [0.0] * len(r), []) for r, n in zip(rows, prompt_len)]


def _perturbed(policy):
    with torch.no_grad():  # a trained-looking adapter: LoRA B = 0 would hide gradient differences
        for name, p in policy.model.named_parameters():
            if "lora_" in name:
                p.add_(0.05 * torch.randn_like(p))
    return policy


def _plain(policy, micro, temperature):
    """The reference: full logits at every position, log-softmax, gather."""
    out = policy.model(input_ids=micro.input_ids_bt, attention_mask=micro.attention_mask_bt)
    logits_btv = out.logits[:, :-1].float() / temperature
    lp_bt = logits_btv.log_softmax(-1).gather(-1, micro.input_ids_bt[:, 1:, None]).squeeze(-1)
    return torch.nn.functional.pad(lp_bt, (1, 0)), torch.nn.functional.pad(entropy_from_logits(logits_btv), (1, 0))


def test_common_prefix_and_micro_batches_keep_a_group_together():
    samples = _samples()
    assert common_prefix([s.token_ids for s in samples[:3]]) == len(PROMPT)
    assert common_prefix([s.token_ids for s in samples]) == 2
    assert common_prefix([PROMPT, PROMPT]) == len(PROMPT) - 1  # every row keeps a token of its own
    assert common_prefix([PROMPT]) == 0
    interleaved = [samples[3], samples[0], samples[3], samples[1], samples[2]]
    chunks = micro_batches(interleaved, list(range(5)), 3)
    assert chunks == [[0, 2, 1], [4, 3]]  # prompt B first (seen first), then A longest-first


@pytest.mark.parametrize("share, pack", [(True, True), (True, False), (False, None)])
def test_logprobs_and_entropy_equal_the_plain_forward(tiny_lora, share, pack, monkeypatch):
    import rl.trainer.forward

    policy, samples = _perturbed(tiny_lora), _samples()
    micro = collate(samples, [0, 1, 2], [0.0] * 4, 0, torch.device("cpu"))
    assert micro.shared_prefix == len(PROMPT)
    monkeypatch.setattr(rl.trainer.forward, "PACK_BELOW", 1.0 if pack else 0.0)  # force either path
    with torch.no_grad():
        lp_bt, ent_bt, _ = token_logprobs(policy, micro, 0.7, with_entropy=True, share_prompt=share)
        plain_lp_bt, plain_ent_bt = _plain(policy, micro, 0.7)
    at_bt = micro.loss_mask_bt != 0
    torch.testing.assert_close(lp_bt[at_bt], plain_lp_bt[at_bt], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ent_bt[at_bt], plain_ent_bt[at_bt], atol=1e-5, rtol=1e-5)
    assert (lp_bt[~at_bt] == 0).all() and (ent_bt[~at_bt] == 0).all()


@pytest.mark.parametrize("pack", [True, False])
def test_shared_prompt_gives_the_unshared_gradient_and_values(tiny_lora, pack, monkeypatch):
    import rl.trainer.forward
    from rl.trainer.value_head import build_value_head

    monkeypatch.setattr(rl.trainer.forward, "PACK_BELOW", 1.0 if pack else 0.0)
    policy, samples = _perturbed(tiny_lora), _samples()
    head = build_value_head(policy)
    torch.nn.init.normal_(head.linear.weight, std=0.1)
    micro = collate(samples, [0, 1, 2], [0.0] * 4, 0, torch.device("cpu"))
    weights_bt = torch.randn(micro.loss_mask_bt.shape, generator=torch.Generator().manual_seed(0))
    params = [p for p in policy.model.parameters() if p.requires_grad] + list(head.parameters())
    grads, values = {}, {}
    for share in (True, False):
        lp_bt, _, v_bt = token_logprobs(policy, micro, 1.0, value_head=head, share_prompt=share)
        loss = (lp_bt * weights_bt * micro.loss_mask_bt).sum() + (v_bt * micro.attention_mask_bt).square().sum()
        grads[share] = torch.autograd.grad(loss, params)
        values[share] = v_bt.detach()
    for shared, unshared in zip(grads[True], grads[False]):
        torch.testing.assert_close(shared, unshared, atol=1e-5, rtol=1e-4)
    assert any(g.abs().sum() > 0 for g in grads[True])
    real_bt = micro.attention_mask_bt.bool()
    torch.testing.assert_close(values[True][real_bt], values[False][real_bt], atol=1e-5, rtol=1e-5)


def test_update_is_the_same_with_and_without_prompt_sharing(tiny_path):
    """One full ``policy_update`` on a group: the LoRA weights after it agree either way."""
    from rl.config import LoraConfig
    from rl.models import load_policy
    from rl.trainer.batch import TrainBatch
    from rl.trainer.config import AlgorithmConfig, OptimConfig
    from rl.trainer.update import policy_update

    after = {}
    for share in (True, False):
        torch.manual_seed(0)
        policy = _perturbed(load_policy(str(tiny_path), lora=LoraConfig(r=4, alpha=8), dtype="float32", device="cpu"))
        params = [p for p in policy.model.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(params, lr=0.5)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
        metrics = policy_update(policy, optimizer, scheduler, TrainBatch.from_samples(_samples(), policy),
                                [1.0, -1.0, 0.5, -0.5], AlgorithmConfig(log_kl=False), OptimConfig(share_prompt=share),
                                8, torch.Generator().manual_seed(0))
        after[share] = [p.detach().clone() for p in params]
        assert metrics["grad_norm"] > 0
    for shared, unshared in zip(after[True], after[False]):
        torch.testing.assert_close(shared, unshared, atol=1e-6, rtol=1e-5)
