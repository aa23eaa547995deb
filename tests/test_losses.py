import math

import pytest
import torch
from trl_grpo_loss import trl_compute_loss, trl_inputs

from rl.algorithms.losses import (
    aggregate,
    clipped_policy_loss,
    entropy_from_logits,
    masked_mean,
    per_token_kl,
)

OLD = -1.0  # log pi_old of every test token; logp = OLD + log(ratio)


def _logprobs(ratios):
    """Leaf tensor of logprobs whose ratio to OLD is exactly `ratios`."""
    return (OLD + torch.tensor(ratios).log()).requires_grad_()


# --- clipping -----------------------------------------------------------------------


def test_unclipped_inside_range():
    # ratio = 1.1 in [0.8, 1.2], A = 2: loss = -1.1 * 2 = -2.2
    # d loss / d logp = -ratio * A = -2.2 (d ratio / d logp = ratio)
    logprobs_bt = _logprobs([[1.1]])
    loss, metrics = clipped_policy_loss(
        logprobs_bt, torch.full((1, 1), OLD), torch.tensor([2.0]), torch.ones(1, 1)
    )
    loss.backward()
    torch.testing.assert_close(loss, torch.tensor(-2.2))
    torch.testing.assert_close(logprobs_bt.grad, torch.tensor([[-2.2]]))
    torch.testing.assert_close(metrics["ratio/mean"], torch.tensor(1.1))
    assert metrics["clip_frac/low"] == 0 and metrics["clip_frac/high"] == 0


def test_high_clip_with_positive_advantage():
    # token 0: ratio 1.1, A = +1 -> min(1.1, 1.1) = 1.1, loss -1.1, grad -1.1
    # token 1: ratio 1.5, A = +1 -> clip(1.5) = 1.2, min(1.5, 1.2) = 1.2, loss -1.2, grad 0
    # token 2: ratio 1.5, A = -1 -> min(-1.5, -1.2) = -1.5, loss +1.5, grad +1.5 (not clipped)
    # token mean: (-1.1 - 1.2 + 1.5) / 3 = -0.8 / 3; grads divided by 3
    logprobs_bt = _logprobs([[1.1, 1.5, 1.5]])
    advantages_bt = torch.tensor([[1.0, 1.0, -1.0]])
    loss, metrics = clipped_policy_loss(
        logprobs_bt, torch.full((1, 3), OLD), advantages_bt, torch.ones(1, 3)
    )
    loss.backward()
    torch.testing.assert_close(loss, torch.tensor(-0.8 / 3))
    torch.testing.assert_close(logprobs_bt.grad, torch.tensor([[-1.1, 0.0, 1.5]]) / 3)
    assert logprobs_bt.grad[0, 1] == 0
    torch.testing.assert_close(metrics["clip_frac/high"], torch.tensor(1 / 3))
    torch.testing.assert_close(metrics["clip_frac/low"], torch.tensor(0.0))
    torch.testing.assert_close(metrics["policy_loss"], torch.tensor(-0.8 / 3))


def test_low_clip_with_negative_advantage():
    # token 0: ratio 0.5, A = -1 -> clip(0.5) = 0.8, min(-0.5, -0.8) = -0.8, loss 0.8, grad 0
    # token 1: ratio 0.5, A = +1 -> min(0.5, 0.8) = 0.5, loss -0.5, grad -0.5 (not clipped)
    # token mean: (0.8 - 0.5) / 2 = 0.15
    logprobs_bt = _logprobs([[0.5, 0.5]])
    loss, metrics = clipped_policy_loss(
        logprobs_bt, torch.full((1, 2), OLD), torch.tensor([[-1.0, 1.0]]), torch.ones(1, 2)
    )
    loss.backward()
    torch.testing.assert_close(loss, torch.tensor(0.15))
    torch.testing.assert_close(logprobs_bt.grad, torch.tensor([[0.0, -0.5]]) / 2)
    torch.testing.assert_close(metrics["clip_frac/low"], torch.tensor(0.5))
    torch.testing.assert_close(metrics["clip_frac/high"], torch.tensor(0.0))


def test_asymmetric_clip():
    # clip_low = 0.2, clip_high = 0.28 (DAPO): range [0.8, 1.28]
    # token 0: ratio 1.25, A = +1 -> inside (would clip at 1.2 if symmetric), loss -1.25, grad -1.25
    # token 1: ratio 1.30, A = +1 -> clipped to 1.28, loss -1.28, grad 0, high
    # token 2: ratio 0.75, A = -1 -> clipped to 0.80, min(-0.75, -0.8) = -0.8, loss 0.8, grad 0, low
    # token mean: (-1.25 - 1.28 + 0.8) / 3 = -1.73 / 3
    logprobs_bt = _logprobs([[1.25, 1.30, 0.75]])
    loss, metrics = clipped_policy_loss(
        logprobs_bt,
        torch.full((1, 3), OLD),
        torch.tensor([[1.0, 1.0, -1.0]]),
        torch.ones(1, 3),
        clip_low=0.2,
        clip_high=0.28,
    )
    loss.backward()
    torch.testing.assert_close(loss, torch.tensor(-1.73 / 3))
    torch.testing.assert_close(logprobs_bt.grad, torch.tensor([[-1.25, 0.0, 0.0]]) / 3)
    torch.testing.assert_close(metrics["clip_frac/high"], torch.tensor(1 / 3))
    torch.testing.assert_close(metrics["clip_frac/low"], torch.tensor(1 / 3))

    # symmetric 0.2 clips token 0 too: (-1.2 - 1.2 + 0.8) / 3
    symmetric, _ = clipped_policy_loss(
        logprobs_bt.detach(),
        torch.full((1, 3), OLD),
        torch.tensor([[1.0, 1.0, -1.0]]),
        torch.ones(1, 3),
    )
    torch.testing.assert_close(symmetric, torch.tensor(-1.6 / 3))


def test_masked_tokens_change_nothing_even_when_huge():
    # the masked positions hold values whose exp overflows and infinite advantages;
    # the loss, metrics and gradients must equal those of a batch holding zeros there
    mask_bt = torch.tensor([[1, 1, 0], [1, 0, 0]])
    base_bt = torch.tensor([[-0.9, -1.2, 0.0], [-1.1, 0.0, 0.0]])
    junk_bt = torch.tensor([[0.0, 0.0, 1e4], [0.0, 1e4, -1e4]])
    old_bt = torch.full((2, 3), OLD)
    advantages_bt = torch.tensor([[1.0, -1.0, 0.0], [2.0, 0.0, 0.0]])
    junk_advantages_bt = torch.tensor([[1.0, -1.0, math.inf], [2.0, -math.inf, math.nan]])
    results = []
    for logp_fill, adv in ((base_bt, advantages_bt), (base_bt + junk_bt, junk_advantages_bt)):
        logprobs_bt = logp_fill.clone().requires_grad_()
        loss, metrics = clipped_policy_loss(
            logprobs_bt,
            old_bt,
            adv,
            mask_bt,
            ref_logprobs_bt=old_bt - junk_bt,
            kl_coef=0.1,
            importance_weights_bt=torch.ones(2, 3) + junk_bt,
            aggregation="sequence",
        )
        loss.backward()
        results.append((loss, metrics, logprobs_bt.grad))
    (loss_a, metrics_a, grad_a), (loss_b, metrics_b, grad_b) = results
    assert torch.isfinite(loss_b) and torch.isfinite(grad_b).all()
    torch.testing.assert_close(loss_b, loss_a)
    torch.testing.assert_close(grad_b, grad_a)
    assert torch.equal(grad_b[mask_bt == 0], torch.zeros(3))
    for key in metrics_a:
        torch.testing.assert_close(metrics_b[key], metrics_a[key])


def test_zero_advantages_give_zero_loss_and_exactly_zero_gradient():
    logprobs_bt = torch.tensor([[-0.5, -2.0, -0.1], [-3.0, -1.0, -0.7]], requires_grad=True)
    old_bt = torch.tensor([[-1.0, -1.0, -1.0], [-1.0, -1.0, -1.0]])
    for aggregation in ("token", "sequence", "dr_grpo"):
        logprobs_bt.grad = None
        loss, _ = clipped_policy_loss(
            logprobs_bt, old_bt, torch.zeros(2), torch.ones(2, 3), aggregation=aggregation
        )
        loss.backward()
        assert loss == 0
        assert torch.equal(logprobs_bt.grad, torch.zeros(2, 3))


def test_advantages_of_shape_b_broadcast_over_time():
    logprobs_bt = torch.tensor([[-0.9, -1.1], [-1.0, -0.8]])
    old_bt = torch.full((2, 2), OLD)
    mask_bt = torch.tensor([[1, 1], [1, 0]])
    loss_b, _ = clipped_policy_loss(logprobs_bt, old_bt, torch.tensor([1.0, -2.0]), mask_bt)
    loss_bt, _ = clipped_policy_loss(
        logprobs_bt, old_bt, torch.tensor([[1.0, 1.0], [-2.0, -2.0]]), mask_bt
    )
    torch.testing.assert_close(loss_b, loss_bt)


# --- aggregation --------------------------------------------------------------------

VALUES_BT = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
MASK_BT = torch.tensor([[1, 1, 1], [1, 0, 0]])  # lengths 3 and 1


def test_aggregate_token():
    # (1 + 2 + 3 + 4) / 4 tokens = 2.5
    torch.testing.assert_close(aggregate(VALUES_BT, MASK_BT, "token"), torch.tensor(2.5))
    # caller-supplied token count: 10 / 8
    torch.testing.assert_close(
        aggregate(VALUES_BT, MASK_BT, "token", num_tokens=8), torch.tensor(1.25)
    )


def test_aggregate_sequence():
    # sequence means: (1 + 2 + 3) / 3 = 2 and 4 / 1 = 4; mean over 2 sequences = 3
    torch.testing.assert_close(aggregate(VALUES_BT, MASK_BT, "sequence"), torch.tensor(3.0))
    # (2 + 4) / 4 sequences
    torch.testing.assert_close(
        aggregate(VALUES_BT, MASK_BT, "sequence", num_sequences=4), torch.tensor(1.5)
    )


def test_aggregate_dr_grpo():
    # 10 / (B=2 * max_tokens=5) = 1.0
    torch.testing.assert_close(
        aggregate(VALUES_BT, MASK_BT, "dr_grpo", max_tokens=5), torch.tensor(1.0)
    )
    # max_tokens=None falls back to the mask width 3: 10 / (2 * 3)
    torch.testing.assert_close(aggregate(VALUES_BT, MASK_BT, "dr_grpo"), torch.tensor(10 / 6))
    # 10 / (4 * 5)
    torch.testing.assert_close(
        aggregate(VALUES_BT, MASK_BT, "dr_grpo", num_sequences=4, max_tokens=5),
        torch.tensor(0.5),
    )


def test_empty_sequence_contributes_zero():
    mask_bt = torch.tensor([[1, 1, 0], [0, 0, 0]])
    # sequence: (1.5 + 0) / 2; token: 3 / 2; dr_grpo: 3 / (2 * 3)
    torch.testing.assert_close(aggregate(VALUES_BT, mask_bt, "sequence"), torch.tensor(0.75))
    torch.testing.assert_close(aggregate(VALUES_BT, mask_bt, "token"), torch.tensor(1.5))
    torch.testing.assert_close(aggregate(VALUES_BT, mask_bt, "dr_grpo"), torch.tensor(0.5))
    empty_bt = torch.zeros(2, 3)
    for mode in ("token", "sequence", "dr_grpo"):
        assert aggregate(VALUES_BT, empty_bt, mode) == 0


@pytest.mark.parametrize("aggregation", ["token", "sequence", "dr_grpo"])
@pytest.mark.parametrize("split", [2, 3])
def test_micro_batches_with_global_normalisers_sum_to_whole_batch(aggregation, split):
    gen = torch.Generator().manual_seed(0)
    logprobs_bt = -torch.rand(4, 5, generator=gen) * 2
    old_bt = logprobs_bt + 0.3 * torch.randn(4, 5, generator=gen)
    ref_bt = logprobs_bt + 0.3 * torch.randn(4, 5, generator=gen)
    advantages_b = torch.tensor([1.0, -0.5, 0.25, -2.0])
    mask_bt = torch.tensor(
        [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 0]]
    )
    common = dict(aggregation=aggregation, clip_high=0.28, kl_coef=0.05, max_tokens=8)

    def loss_of(rows, **normalisers):
        return clipped_policy_loss(
            logprobs_bt[rows],
            old_bt[rows],
            advantages_b[rows],
            mask_bt[rows],
            ref_logprobs_bt=ref_bt[rows],
            **common,
            **normalisers,
        )[0]

    whole = loss_of(slice(0, 4))
    # split after row `split`, so micro-batches may be of unequal size (3 + 1)
    globals_ = dict(num_sequences=4, num_tokens=int(mask_bt.sum()))
    summed = loss_of(slice(0, split), **globals_) + loss_of(slice(split, 4), **globals_)
    torch.testing.assert_close(summed, whole)


# --- KL ------------------------------------------------------------------------------


def test_kl_estimators_hand_values():
    # token 0: logp = -1, ref = -1.5, d = ref - logp = -0.5
    #   k1 = 0.5, k2 = 0.5 * 0.25 = 0.125, k3 = e^-0.5 + 0.5 - 1 = 0.1065307
    # token 1: logp = -2, ref = -1, d = 1
    #   k1 = -1, k2 = 0.5, k3 = e - 1 - 1 = 0.7182818
    logprobs_bt = torch.tensor([[-1.0, -2.0]])
    ref_bt = torch.tensor([[-1.5, -1.0]])
    torch.testing.assert_close(per_token_kl(logprobs_bt, ref_bt, "k1"), torch.tensor([[0.5, -1.0]]))
    torch.testing.assert_close(
        per_token_kl(logprobs_bt, ref_bt, "k2"), torch.tensor([[0.125, 0.5]])
    )
    torch.testing.assert_close(
        per_token_kl(logprobs_bt, ref_bt), torch.tensor([[math.exp(-0.5) - 0.5, math.e - 2.0]])
    )
    # identical distributions: all estimators are 0
    for est in ("k1", "k2", "k3"):
        assert torch.equal(per_token_kl(ref_bt, ref_bt, est), torch.zeros(1, 2))


def test_k3_is_non_negative():
    grid = torch.linspace(-8, 8, 161)
    logprobs_bt, ref_bt = torch.meshgrid(grid, grid, indexing="ij")
    assert (per_token_kl(logprobs_bt, ref_bt, "k3") >= 0).all()


def test_kl_term_added_with_coefficient():
    # policy: ratio 1 (logp = old), A = [1, -1] -> per-token [-1, +1], token mean 0
    # k3 from test_kl_estimators_hand_values: [0.1065307, 0.7182818], mean 0.4124062
    # loss = 0 + 0.1 * 0.4124062
    logprobs_bt = torch.tensor([[-1.0, -2.0]])
    ref_bt = torch.tensor([[-1.5, -1.0]])
    kl_mean = (math.exp(-0.5) - 0.5 + math.e - 2.0) / 2
    loss, metrics = clipped_policy_loss(
        logprobs_bt,
        logprobs_bt,
        torch.tensor([[1.0, -1.0]]),
        torch.ones(1, 2),
        ref_logprobs_bt=ref_bt,
        kl_coef=0.1,
    )
    torch.testing.assert_close(loss, torch.tensor(0.1 * kl_mean))
    torch.testing.assert_close(metrics["kl"], torch.tensor(kl_mean))
    torch.testing.assert_close(metrics["policy_loss"], torch.tensor(0.0))
    # k1: [0.5, -1] mean -0.25
    loss_k1, _ = clipped_policy_loss(
        logprobs_bt,
        logprobs_bt,
        torch.tensor([[1.0, -1.0]]),
        torch.ones(1, 2),
        ref_logprobs_bt=ref_bt,
        kl_coef=0.1,
        kl_estimator="k1",
    )
    torch.testing.assert_close(loss_k1, torch.tensor(-0.025))
    # without ref there is no kl metric
    _, metrics = clipped_policy_loss(logprobs_bt, logprobs_bt, torch.ones(1), torch.ones(1, 2))
    assert "kl" not in metrics


def test_importance_weights_scale_policy_term_and_are_detached():
    # ratio 1.1 and 1.0, A = 1: per-token -1.1, -1.0; weights 0.5, 2.0 -> -0.55, -2.0
    # token mean = -2.55 / 2; grads: -ratio * A * w / 2 = [-0.55, -2.0] / 2
    logprobs_bt = _logprobs([[1.1, 1.0]])
    weights_bt = torch.tensor([[0.5, 2.0]], requires_grad=True)
    loss, metrics = clipped_policy_loss(
        logprobs_bt,
        torch.full((1, 2), OLD),
        torch.ones(1),
        torch.ones(1, 2),
        importance_weights_bt=weights_bt,
    )
    loss.backward()
    torch.testing.assert_close(loss, torch.tensor(-2.55 / 2))
    torch.testing.assert_close(logprobs_bt.grad, torch.tensor([[-0.55, -2.0]]) / 2)
    assert weights_bt.grad is None
    torch.testing.assert_close(metrics["policy_loss"], torch.tensor(-2.55 / 2))


# --- helpers and validation -----------------------------------------------------------


def test_entropy_of_uniform_logits_is_log_v():
    logits_btv = torch.zeros(3, 2, 7)
    torch.testing.assert_close(entropy_from_logits(logits_btv), torch.full((3, 2), math.log(7)))


def test_entropy_hand_value_chunking_and_banned_tokens():
    # logits [0, log 3] -> p = [0.25, 0.75]: H = -(0.25 ln 0.25 + 0.75 ln 0.75) = 0.5623351
    # logits [0, 0, -inf]: p = [0.5, 0.5, 0] -> H = ln 2, finite gradient
    logits_btv = torch.tensor(
        [[[0.0, math.log(3), -math.inf]], [[0.0, 0.0, -math.inf]], [[5.0, 5.0, 5.0]]],
        requires_grad=True,
    )
    h_bt = entropy_from_logits(logits_btv, chunk_size=2)
    expected_bt = torch.tensor([[0.5623351], [math.log(2)], [math.log(3)]])
    torch.testing.assert_close(h_bt, expected_bt)
    torch.testing.assert_close(entropy_from_logits(logits_btv, chunk_size=1), expected_bt)
    h_bt.sum().backward()
    assert torch.isfinite(logits_btv.grad).all()


def test_masked_mean():
    # (1 + 2 + 3 + 4) / 4
    torch.testing.assert_close(masked_mean(VALUES_BT, MASK_BT), torch.tensor(2.5))
    assert masked_mean(VALUES_BT, torch.zeros(2, 3)) == 0


def test_invalid_names_raise():
    x_bt = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="aggregation.*'token'"):
        aggregate(x_bt, x_bt, "mean")
    with pytest.raises(ValueError, match="aggregation"):
        clipped_policy_loss(x_bt, x_bt, x_bt, x_bt, aggregation="seq")
    with pytest.raises(ValueError, match="kl_estimator.*'k3'"):
        per_token_kl(x_bt, x_bt, "k4")
    with pytest.raises(ValueError, match="kl_estimator"):
        clipped_policy_loss(x_bt, x_bt, x_bt, x_bt, kl_estimator="k4")


# --- agreement with TRL ----------------------------------------------------------------


@pytest.mark.parametrize(
    "loss_type, aggregation",
    [("grpo", "sequence"), ("dr_grpo", "dr_grpo"), ("dapo", "token"), ("bnpo", "token")],
)
def test_matches_trl_grpo_trainer_compute_loss(loss_type, aggregation):
    """Our loss, gradient and metrics equal TRL 1.16's on identical tensors.

    TRL's normalisers (grpo_trainer.py lines 3153-3174):
      grpo:    mean_i(sum_t l m / clamp(sum_t m, 1)) / grad_accum      -> "sequence"
      bnpo:    sum l m / clamp(sum m, 1) / grad_accum                  -> "token" (1 micro-batch)
      dr_grpo: sum l m / (B_micro * max_completion_length) / grad_accum -> "dr_grpo"
      dapo:    sum l m / (num_items_in_batch / num_processes * grad_accum / steps_per_generation)
               where num_items_in_batch = mask tokens of the whole generation batch, all ranks
               -> "token" with num_tokens = whole-batch token count
    Run once on the whole batch and once as two equal micro-batches with
    gradient_accumulation_steps = steps_per_generation = 2 (bnpo only whole-batch: it
    normalises each micro-batch by its own tokens, which is not the whole-batch token mean).
    """
    pytest.importorskip("trl")
    gen = torch.Generator().manual_seed(1)
    logprobs_bt = -torch.rand(4, 6, generator=gen) * 3
    old_bt = logprobs_bt + 0.4 * torch.randn(4, 6, generator=gen)
    ref_bt = logprobs_bt + 0.4 * torch.randn(4, 6, generator=gen)
    is_ratio_bt = 0.5 + torch.rand(4, 6, generator=gen)
    advantages_b = torch.tensor([0.8659, -0.8659, -0.8659, 0.8659])
    mask_bt = torch.tensor(
        [[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0]]
    )
    num_tokens = int(mask_bt.sum())
    hyper = dict(epsilon_low=0.2, epsilon_high=0.28, beta=0.04, max_completion_length=8)

    splits = [[slice(0, 4)]] + ([[slice(0, 2), slice(2, 4)]] if loss_type != "bnpo" else [])
    for rows_list in splits:
        trl_logprobs_bt = logprobs_bt.clone().requires_grad_()
        our_logprobs_bt = logprobs_bt.clone().requires_grad_()
        for rows in rows_list:
            inputs = trl_inputs(
                rows, old_bt, ref_bt, advantages_b, mask_bt, is_ratio_bt, num_tokens
            )
            trl_loss, trl_metrics = trl_compute_loss(
                loss_type,
                trl_logprobs_bt[rows],
                inputs,
                accumulation_steps=len(rows_list),
                use_vllm=True,
                **hyper,
            )
            our_loss, our_metrics = clipped_policy_loss(
                our_logprobs_bt[rows],
                old_bt[rows],
                advantages_b[rows],
                mask_bt[rows],
                clip_low=0.2,
                clip_high=0.28,
                aggregation=aggregation,
                ref_logprobs_bt=ref_bt[rows],
                kl_coef=0.04,
                importance_weights_bt=is_ratio_bt[rows],
                num_sequences=4,
                num_tokens=None if loss_type == "bnpo" else num_tokens,
                max_tokens=8,
            )
            torch.testing.assert_close(our_loss, trl_loss)
            (trl_loss + our_loss).backward()
            for ours, theirs in [
                ("clip_frac/low", "clip_ratio/low_mean"),
                ("clip_frac/high", "clip_ratio/high_mean"),
                ("kl", "kl"),
            ]:
                torch.testing.assert_close(our_metrics[ours].item(), trl_metrics[theirs])
        torch.testing.assert_close(our_logprobs_bt.grad, trl_logprobs_bt.grad)
    # the example exercises both clip sides
    assert trl_metrics["clip_ratio/low_mean"] > 0 and trl_metrics["clip_ratio/high_mean"] > 0


def test_trl_default_kl_bias_correction_changes_gradient_not_value():
    """TRL 1.16 defaults to use_bias_correction_kl=True (grpo_trainer.py lines 3103-3105):
    its KL term is ratio * k3. On-policy (old == logp) the ratio is 1, so the loss values
    agree with ours, but d ratio / d logp = 1 adds k3 to the gradient of each token."""
    pytest.importorskip("trl")
    logprobs_bt = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    ref_bt = torch.tensor([[-1.5, -1.0]])
    mask_bt = torch.ones(1, 2, dtype=torch.long)
    inputs = trl_inputs(
        slice(0, 1), logprobs_bt.detach(), ref_bt, torch.zeros(1), mask_bt, torch.ones(1, 2), 2
    )
    trl_loss, _ = trl_compute_loss(
        "dapo",
        logprobs_bt,
        inputs,
        epsilon_low=0.2,
        epsilon_high=0.2,
        beta=1.0,
        max_completion_length=2,
        use_bias_correction_kl=True,
    )
    (trl_grad_bt,) = torch.autograd.grad(trl_loss, logprobs_bt)
    our_loss, _ = clipped_policy_loss(
        logprobs_bt,
        logprobs_bt.detach(),
        torch.zeros(1),
        mask_bt,
        ref_logprobs_bt=ref_bt,
        kl_coef=1.0,
    )
    (our_grad_bt,) = torch.autograd.grad(our_loss, logprobs_bt)
    torch.testing.assert_close(our_loss, trl_loss)
    # d k3 / d logp = 1 - exp(ref - logp); TRL adds k3 itself (token mean over 2 tokens)
    k3_bt = per_token_kl(logprobs_bt.detach(), ref_bt)
    torch.testing.assert_close(our_grad_bt, (1 - torch.exp(ref_bt - logprobs_bt.detach())) / 2)
    torch.testing.assert_close(trl_grad_bt, our_grad_bt + k3_bt / 2)
