"""GSPO sequence ratios, the entropy bonus and the clipped value loss (rl/algorithms/losses.py)."""

import math

import pytest
import torch
from test_losses import OLD
from trl_grpo_loss import trl_compute_loss, trl_inputs

from rl.algorithms.losses import clipped_policy_loss, clipped_value_loss

NAN, INF = math.nan, math.inf


# --- GSPO: sequence-level ratio ----------------------------------------------------------

# row 0: log ratios [0.1, 0.3, -0.1], 3 tokens  -> mean 0.1 -> s_0 = e^0.1 = 1.1051709
# row 1: log ratios [0.5, -0.1, junk], 2 tokens -> mean 0.2 -> s_1 = e^0.2 = 1.2214028
GSPO_LOG_RATIO_BT = torch.tensor([[0.1, 0.3, -0.1], [0.5, -0.1, 1e4]])
GSPO_MASK_BT = torch.tensor([[1, 1, 1], [1, 1, 0]])
S0, S1 = math.exp(0.1), math.exp(0.2)


def test_sequence_ratio_worked_example():
    # A = +1 for both rows, clip range [0.8, 1.2]:
    #   row 0: s_0 = 1.1051709 inside -> every token's loss -1.1051709, gradient -s_0 * A
    #   row 1: s_1 = 1.2214028 > 1.2  -> clipped: every token's loss -1.2, gradient 0
    # token aggregation: (3 * -1.1051709 + 2 * -1.2) / 5 = -1.1431026
    #   d loss / d logp on row 0 = -1.1051709 / 5 = -0.2210342 per token
    logprobs_bt = (OLD + GSPO_LOG_RATIO_BT).requires_grad_()
    loss, metrics = clipped_policy_loss(
        logprobs_bt, torch.full((2, 3), OLD), torch.ones(2), GSPO_MASK_BT, ratio_level="sequence"
    )
    loss.backward()
    torch.testing.assert_close(loss, torch.tensor((3 * -S0 + 2 * -1.2) / 5))
    torch.testing.assert_close(loss, torch.tensor(-1.1431026))
    torch.testing.assert_close(
        logprobs_bt.grad, torch.tensor([[-S0 / 5] * 3, [0.0, 0.0, 0.0]])
    )
    # metrics are token-weighted: ratio/mean = (3 * 1.1051709 + 2 * 1.2214028) / 5 = 1.1516637,
    # clip_frac/high = 2 clipped tokens / 5 = 0.4 (TRL's sequence count would give 1/2)
    torch.testing.assert_close(metrics["ratio/mean"], torch.tensor((3 * S0 + 2 * S1) / 5))
    torch.testing.assert_close(metrics["clip_frac/high"], torch.tensor(0.4))

    # sequence aggregation: (-1.1051709 - 1.2) / 2 = -1.1525855; row-0 grads -s_0 / (3 * 2)
    logprobs_bt.grad = None
    loss, _ = clipped_policy_loss(
        logprobs_bt,
        torch.full((2, 3), OLD),
        torch.ones(2),
        GSPO_MASK_BT,
        ratio_level="sequence",
        aggregation="sequence",
    )
    loss.backward()
    torch.testing.assert_close(loss, torch.tensor(-1.1525855))
    torch.testing.assert_close(logprobs_bt.grad, torch.tensor([[-S0 / 6] * 3, [0.0] * 3]))

    # the token-level ratio on the same numbers differs: row 0 ratios e^0.1, e^0.3 (clipped to
    # 1.2), e^-0.1; row 1 e^0.5 (clipped to 1.2), e^-0.1
    token_loss, _ = clipped_policy_loss(
        logprobs_bt.detach(), torch.full((2, 3), OLD), torch.ones(2), GSPO_MASK_BT
    )
    expected = -(S0 + 1.2 + math.exp(-0.1) + 1.2 + math.exp(-0.1)) / 5
    torch.testing.assert_close(token_loss, torch.tensor(expected))


def test_sequence_ratio_masked_junk_and_empty_rows():
    # masked positions full of overflowing logprobs and inf advantages, plus an empty row:
    # same loss, gradient and metrics as with zeros there; the empty row has s = 1 and no loss
    mask_bt = torch.tensor([[1, 1, 0], [0, 0, 0], [1, 0, 0]])
    base_bt = torch.tensor([[-0.9, -1.2, 0.0], [0.0, 0.0, 0.0], [-1.1, 0.0, 0.0]])
    junk_bt = torch.tensor([[0.0, 0.0, 1e4], [INF, -1e4, 1e4], [0.0, -INF, 1e4]])
    advantages_bt = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [-2.0, 0.0, 0.0]])
    junk_advantages_bt = torch.where(mask_bt != 0, advantages_bt, torch.full((3, 3), INF))
    results = []
    for logp_fill, adv in ((base_bt, advantages_bt), (base_bt + junk_bt, junk_advantages_bt)):
        logprobs_bt = logp_fill.clone().requires_grad_()
        loss, metrics = clipped_policy_loss(
            logprobs_bt,
            torch.full((3, 3), OLD),
            adv,
            mask_bt,
            ref_logprobs_bt=torch.full((3, 3), OLD) - junk_bt,
            kl_coef=0.1,
            ratio_level="sequence",
            aggregation="sequence",
        )
        loss.backward()
        results.append((loss, metrics, logprobs_bt.grad))
    (loss_a, metrics_a, grad_a), (loss_b, metrics_b, grad_b) = results
    assert torch.isfinite(loss_b) and torch.isfinite(grad_b).all()
    torch.testing.assert_close(loss_b, loss_a)
    torch.testing.assert_close(grad_b, grad_a)
    assert torch.equal(grad_b[mask_bt == 0], torch.zeros(6))
    for key in metrics_a:
        torch.testing.assert_close(metrics_b[key], metrics_a[key])


def _gspo_batch():
    gen = torch.Generator().manual_seed(2)
    logprobs_bt = -torch.rand(4, 6, generator=gen) * 3
    old_bt = logprobs_bt + 0.3 * torch.randn(4, 6, generator=gen)
    ref_bt = logprobs_bt + 0.4 * torch.randn(4, 6, generator=gen)
    mask_bt = torch.tensor(
        [[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0]]
    )
    advantages_b = torch.tensor([0.8659, -0.8659, -0.8659, 0.8659])
    return logprobs_bt, old_bt, ref_bt, mask_bt, advantages_b


@pytest.mark.parametrize(
    "loss_type, aggregation",
    [("grpo", "sequence"), ("dr_grpo", "dr_grpo"), ("dapo", "token"), ("bnpo", "token")],
)
@pytest.mark.parametrize("row_weights", [False, True])
def test_sequence_ratio_matches_trl(loss_type, aggregation, row_weights):
    """Ours with ``ratio_level="sequence"`` vs TRL 1.16 with
    ``importance_sampling_level="sequence"``: same loss, gradient and KL metric, with one
    advantage per completion and (optionally) importance weights constant within each row.
    A narrow clip range makes both clip sides bind on some rows; only the clip-fraction
    metrics differ (TRL counts sequences, we count tokens)."""
    pytest.importorskip("trl")
    logprobs_bt, old_bt, ref_bt, mask_bt, advantages_b = _gspo_batch()
    weights_bt = torch.tensor([[0.9], [1.2], [0.7], [1.0]]).expand(4, 6).clone()
    if not row_weights:
        weights_bt = torch.ones(4, 6)
    inputs = trl_inputs(
        slice(0, 4), old_bt, ref_bt, advantages_b, mask_bt, weights_bt, int(mask_bt.sum())
    )
    trl_logprobs_bt = logprobs_bt.clone().requires_grad_()
    trl_loss, trl_metrics = trl_compute_loss(
        loss_type,
        trl_logprobs_bt,
        inputs,
        importance_sampling_level="sequence",
        use_vllm=row_weights,
        epsilon_low=0.01,
        epsilon_high=0.05,
        beta=0.04,
    )
    our_logprobs_bt = logprobs_bt.clone().requires_grad_()
    our_loss, our_metrics = clipped_policy_loss(
        our_logprobs_bt,
        old_bt,
        advantages_b,
        mask_bt,
        clip_low=0.01,
        clip_high=0.05,
        aggregation=aggregation,
        ref_logprobs_bt=ref_bt,
        kl_coef=0.04,
        importance_weights_bt=weights_bt if row_weights else None,
        max_tokens=8,
        ratio_level="sequence",
    )
    torch.testing.assert_close(our_loss, trl_loss)
    (trl_loss + our_loss).backward()
    torch.testing.assert_close(our_logprobs_bt.grad, trl_logprobs_bt.grad)
    torch.testing.assert_close(our_metrics["kl"].item(), trl_metrics["kl"])
    # s = [1.092, 1.123, 0.987, 1.197] with A = [+, -, -, +] and range [0.99, 1.05]:
    # rows 0 and 3 clip high, row 2 clips low. TRL counts sequences (2/4, 1/4), we count
    # tokens (rows of 6, 3, 1, 5 tokens: (6 + 5)/15 and 1/15)
    assert trl_metrics["clip_ratio/high_mean"] == 0.5 and trl_metrics["clip_ratio/low_mean"] == 0.25
    torch.testing.assert_close(our_metrics["clip_frac/high"], torch.tensor(11 / 15))
    torch.testing.assert_close(our_metrics["clip_frac/low"], torch.tensor(1 / 15))


def test_sequence_ratio_differs_from_trl_gradient_with_per_token_advantages():
    """Per-token advantages: loss values agree with TRL 1.16, gradients do not. Ours is
    GSPO-token: d loss / d logp_t = -s_i * A_it / N (unclipped, token aggregation over N
    tokens); TRL differentiates s_i, giving -s_i * mean_t'(A_it') / N on every token."""
    pytest.importorskip("trl")
    logprobs_bt, old_bt, ref_bt, mask_bt, _ = _gspo_batch()
    advantages_bt = torch.tensor(
        [[1.0, -0.5, 0.2, 0.3, 0.0, 1.0], [0.5, 1.5, -1.0, 0.0, 0.0, 0.0]]
        + [[-1.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.1, 0.2, 0.3, 0.4, -2.0, 0.0]]
    )
    inputs = trl_inputs(
        slice(0, 4), old_bt, ref_bt, advantages_bt, mask_bt, torch.ones(4, 6), int(mask_bt.sum())
    )
    trl_logprobs_bt = logprobs_bt.clone().requires_grad_()
    wide = dict(epsilon_low=10.0, epsilon_high=10.0)  # nothing clips
    trl_loss, _ = trl_compute_loss(
        "bnpo", trl_logprobs_bt, inputs, importance_sampling_level="sequence", **wide
    )
    our_logprobs_bt = logprobs_bt.clone().requires_grad_()
    our_loss, _ = clipped_policy_loss(
        our_logprobs_bt, old_bt, advantages_bt, mask_bt, clip_low=10.0, clip_high=10.0,
        ratio_level="sequence",
    )
    torch.testing.assert_close(our_loss, trl_loss)
    (trl_loss + our_loss).backward()

    keep_bt = mask_bt != 0
    num_tokens = int(keep_bt.sum())
    s_b = torch.exp(((logprobs_bt - old_bt) * keep_bt).sum(-1) / keep_bt.sum(-1))
    ours_expected_bt = -s_b[:, None] * advantages_bt * keep_bt / num_tokens
    mean_adv_b = (advantages_bt * keep_bt).sum(-1) / keep_bt.sum(-1)
    trl_expected_bt = -(s_b * mean_adv_b)[:, None] * keep_bt / num_tokens
    torch.testing.assert_close(our_logprobs_bt.grad, ours_expected_bt)
    torch.testing.assert_close(trl_logprobs_bt.grad, trl_expected_bt)
    assert not torch.allclose(our_logprobs_bt.grad, trl_logprobs_bt.grad)


def test_invalid_ratio_level_raises():
    x_bt = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="ratio_level"):
        clipped_policy_loss(x_bt, x_bt, x_bt, x_bt, ratio_level="seq")


# --- entropy bonus -------------------------------------------------------------------------


def test_entropy_bonus_hand_values():
    # A = 0 -> policy term 0. entropy [1, 2] on the mask (junk NaN masked), coef 0.1:
    # token: loss = -0.1 * (1 + 2) / 2 = -0.15, d loss / d H = -0.1 / 2 per masked token
    entropy_bt = torch.tensor([[1.0, 2.0, NAN]], requires_grad=True)
    logprobs_bt = torch.full((1, 3), OLD)
    mask_bt = torch.tensor([[1, 1, 0]])
    loss, metrics = clipped_policy_loss(
        logprobs_bt, logprobs_bt, torch.zeros(1), mask_bt, entropy_bt=entropy_bt, entropy_coef=0.1
    )
    loss.backward()
    torch.testing.assert_close(loss, torch.tensor(-0.15))
    torch.testing.assert_close(entropy_bt.grad, torch.tensor([[-0.05, -0.05, 0.0]]))
    torch.testing.assert_close(metrics["entropy_bonus"], torch.tensor(0.15))
    torch.testing.assert_close(metrics["policy_loss"], torch.tensor(0.0))
    assert "entropy" not in metrics

    # sequence aggregation over rows [1, 2] and [4]: mean(1.5, 4) = 2.75 -> loss -0.275
    entropy_bt = torch.tensor([[1.0, 2.0], [4.0, INF]])
    loss, metrics = clipped_policy_loss(
        torch.full((2, 2), OLD),
        torch.full((2, 2), OLD),
        torch.zeros(2),
        torch.tensor([[1, 1], [1, 0]]),
        aggregation="sequence",
        entropy_bt=entropy_bt,
        entropy_coef=0.1,
    )
    torch.testing.assert_close(loss, torch.tensor(-0.275))
    # coef 0: the loss is untouched, the metric is 0
    loss, metrics = clipped_policy_loss(
        torch.full((2, 2), OLD),
        torch.full((2, 2), OLD),
        torch.zeros(2),
        torch.tensor([[1, 1], [1, 0]]),
        entropy_bt=entropy_bt,
    )
    assert loss == 0 and metrics["entropy_bonus"] == 0


@pytest.mark.parametrize(
    "loss_type, aggregation", [("bnpo", "token"), ("dapo", "token"), ("grpo", "sequence")]
)
def test_entropy_bonus_vs_trl(loss_type, aggregation):
    """TRL 1.16 (grpo_trainer.py lines 3189-3211) subtracts coef * token-mean entropy for
    every loss type. Ours uses the policy term's aggregation: equal for "token"; for
    "sequence" ours - TRL = coef * (token mean - mean of per-sequence means)."""
    pytest.importorskip("trl")
    logprobs_bt, old_bt, ref_bt, mask_bt, advantages_b = _gspo_batch()
    gen = torch.Generator().manual_seed(5)
    entropy_bt = torch.rand(4, 6, generator=gen) * 2
    inputs = trl_inputs(
        slice(0, 4), old_bt, ref_bt, advantages_b, mask_bt, torch.ones(4, 6), int(mask_bt.sum())
    )
    trl_logprobs_bt = logprobs_bt.clone().requires_grad_()
    trl_entropy_bt = entropy_bt.clone().requires_grad_()
    trl_loss, _ = trl_compute_loss(
        loss_type, trl_logprobs_bt, inputs, entropies_bt=trl_entropy_bt, entropy_coef=0.3
    )
    our_logprobs_bt = logprobs_bt.clone().requires_grad_()
    our_entropy_bt = entropy_bt.clone().requires_grad_()
    our_loss, _ = clipped_policy_loss(
        our_logprobs_bt,
        old_bt,
        advantages_b,
        mask_bt,
        aggregation=aggregation,
        entropy_bt=our_entropy_bt,
        entropy_coef=0.3,
    )
    (trl_loss + our_loss).backward()
    torch.testing.assert_close(our_logprobs_bt.grad, trl_logprobs_bt.grad)
    if aggregation == "token":
        torch.testing.assert_close(our_loss, trl_loss)
        torch.testing.assert_close(our_entropy_bt.grad, trl_entropy_bt.grad)
    else:
        keep_bt = mask_bt != 0
        token_mean = (entropy_bt * keep_bt).sum() / keep_bt.sum()
        sequence_mean = ((entropy_bt * keep_bt).sum(-1) / keep_bt.sum(-1)).mean()
        torch.testing.assert_close(our_loss - trl_loss, 0.3 * (token_mean - sequence_mean))
        assert abs(token_mean - sequence_mean) > 1e-2


# --- clipped value loss --------------------------------------------------------------------


# V = [0.9, 0.5, 0.5, junk], V_old = [0.8, 0.8, 1.0, junk], R = [1.5, 1.5, 0.0, junk], clip 0.2
#   t0: V - V_old = 0.1 inside: V_clip = 0.9; both (0.9 - 1.5)^2 = 0.36      -> 0.5 * 0.36 = 0.18
#       gradient V - R = -0.6
#   t1: V - V_old = -0.3 -> V_clip = 0.6; unclipped (0.5 - 1.5)^2 = 1.0, clipped (0.6 - 1.5)^2
#       = 0.81; max 1.0 (V moved away from R: unclipped binds) -> 0.5; gradient V - R = -1.0
#   t2: V - V_old = -0.5 -> V_clip = 0.8; unclipped 0.25, clipped 0.64; max 0.64 (clipped
#       binds: V moved towards R past the range) -> 0.32; gradient 0
# token mean (3 tokens): (0.18 + 0.5 + 0.32) / 3 = 1/3; clip_frac 1/3
VALUE_BT = torch.tensor([[0.9, 0.5, 0.5, NAN]])
OLD_VALUE_BT = torch.tensor([[0.8, 0.8, 1.0, INF]])
RETURN_BT = torch.tensor([[1.5, 1.5, 0.0, -INF]])
VALUE_MASK_BT = torch.tensor([[1, 1, 1, 0]])


def test_clipped_value_loss_hand_example():
    values_bt = VALUE_BT.clone().requires_grad_()
    loss, metrics = clipped_value_loss(values_bt, OLD_VALUE_BT, RETURN_BT, VALUE_MASK_BT, 0.2)
    loss.backward()
    torch.testing.assert_close(loss, torch.tensor(1 / 3))
    torch.testing.assert_close(values_bt.grad, torch.tensor([[-0.6, -1.0, 0.0, 0.0]]) / 3)
    torch.testing.assert_close(metrics["value/clip_frac"], torch.tensor(1 / 3))
    torch.testing.assert_close(metrics["value/loss"], torch.tensor(1 / 3))
    assert not metrics["value/loss"].requires_grad

    # dr_grpo aggregation: sum 1.0 / (1 row * max_tokens 5) = 0.2
    loss, _ = clipped_value_loss(
        VALUE_BT, OLD_VALUE_BT, RETURN_BT, VALUE_MASK_BT, 0.2, aggregation="dr_grpo", max_tokens=5
    )
    torch.testing.assert_close(loss, torch.tensor(0.2))


def test_unclipped_value_loss():
    # clip=None: 0.5 * [0.36, 1.0, 0.25] = [0.18, 0.5, 0.125], mean 0.805 / 3 = 0.2683333
    # gradients V - R = [-0.6, -1.0, 0.5] / 3
    values_bt = VALUE_BT.clone().requires_grad_()
    loss, metrics = clipped_value_loss(values_bt, OLD_VALUE_BT, RETURN_BT, VALUE_MASK_BT, None)
    loss.backward()
    torch.testing.assert_close(loss, torch.tensor(0.805 / 3))
    torch.testing.assert_close(values_bt.grad, torch.tensor([[-0.6, -1.0, 0.5, 0.0]]) / 3)
    assert metrics["value/clip_frac"] == 0
    with pytest.raises(ValueError, match="aggregation"):
        clipped_value_loss(VALUE_BT, OLD_VALUE_BT, RETURN_BT, VALUE_MASK_BT, 0.2, aggregation="x")
