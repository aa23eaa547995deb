import math

import pytest
import torch

from rl.algorithms.gae import gae, whiten


def _reference_gae(rewards, values, gamma, lam):
    """Textbook GAE on one compact trajectory (python floats), V after the end = 0."""
    advantages, next_value, next_advantage = [0.0] * len(rewards), 0.0, 0.0
    for t in reversed(range(len(rewards))):
        delta = rewards[t] + gamma * next_value - values[t]
        next_advantage = delta + gamma * lam * next_advantage
        advantages[t], next_value = next_advantage, values[t]
    return advantages


def test_gamma_one_lambda_one_is_future_reward_sum_minus_value():
    # rewards [0, -0.1, 0.2, 1]: sums of future rewards [1.1, 1.1, 1.2, 1.0]
    # values [0.3, 0.5, 0.4, 0.9] -> A = [0.8, 0.6, 0.8, 0.1], returns = the sums
    rewards_bt = torch.tensor([[0.0, -0.1, 0.2, 1.0]])
    values_bt = torch.tensor([[0.3, 0.5, 0.4, 0.9]])
    advantages_bt, returns_bt = gae(rewards_bt, values_bt, torch.ones(1, 4), 1.0, 1.0)
    torch.testing.assert_close(advantages_bt, torch.tensor([[0.8, 0.6, 0.8, 0.1]]))
    torch.testing.assert_close(returns_bt, torch.tensor([[1.1, 1.1, 1.2, 1.0]]))


def test_three_tokens_gamma_09_lambda_08_by_hand():
    # rewards [0, -0.1, 1] (KL penalty on token 1, outcome on the last), values [0.5, 0.6, 0.7]
    # gamma * lam = 0.72
    # t=2: delta = 1 + 0.9 * 0 - 0.7 = 0.3               A_2 = 0.3
    # t=1: delta = -0.1 + 0.9 * 0.7 - 0.6 = -0.07        A_1 = -0.07 + 0.72 * 0.3 = 0.146
    # t=0: delta = 0 + 0.9 * 0.6 - 0.5 = 0.04            A_0 = 0.04 + 0.72 * 0.146 = 0.14512
    # returns = A + V = [0.64512, 0.746, 1.0]
    rewards_bt = torch.tensor([[0.0, -0.1, 1.0]])
    values_bt = torch.tensor([[0.5, 0.6, 0.7]])
    advantages_bt, returns_bt = gae(rewards_bt, values_bt, torch.ones(1, 3), 0.9, 0.8)
    torch.testing.assert_close(advantages_bt, torch.tensor([[0.14512, 0.146, 0.3]]))
    torch.testing.assert_close(returns_bt, torch.tensor([[0.64512, 0.746, 1.0]]))
    # lam = 0: A is the one-step TD error [0.04, -0.07, 0.3]
    advantages_bt, _ = gae(rewards_bt, values_bt, torch.ones(1, 3), 0.9, 0.0)
    torch.testing.assert_close(advantages_bt, torch.tensor([[0.04, -0.07, 0.3]]))


# the 3-token example above placed three ways in one batch of width 8:
#   row 0 compact:      steps at columns 0, 1, 2
#   row 1 left offset:  prompt at columns 0-2, steps at 3, 4, 5, right padding 6-7
#   row 2 with gaps:    prompt 0, step 1, env tokens 2-3, step 4, env token 5, step 6, pad 7
# masked-out positions hold junk (NaN, inf, large rewards) that must not leak
NAN, INF = math.nan, math.inf
REWARDS_BT = torch.tensor(
    [
        [0.0, -0.1, 1.0, NAN, 5.0, INF, 9.0, -INF],
        [NAN, 7.0, 3.0, 0.0, -0.1, 1.0, INF, NAN],
        [4.0, 0.0, NAN, 2.0, -0.1, -INF, 1.0, 8.0],
    ]
)
VALUES_BT = torch.tensor(
    [
        [0.5, 0.6, 0.7, INF, NAN, 3.0, -INF, 1e30],
        [INF, NAN, 9.0, 0.5, 0.6, 0.7, NAN, 2.0],
        [NAN, 0.5, INF, -3.0, 0.6, NAN, 0.7, INF],
    ]
)
MASK_BT = torch.tensor(
    [
        [1, 1, 1, 0, 0, 0, 0, 0],
        [0, 0, 0, 1, 1, 1, 0, 0],
        [0, 1, 0, 0, 1, 0, 1, 0],
    ]
)


def test_offset_and_gapped_rows_equal_compact_row_and_junk_does_not_leak():
    advantages_bt, returns_bt = gae(REWARDS_BT, VALUES_BT, MASK_BT, 0.9, 0.8)
    assert torch.isfinite(advantages_bt).all() and torch.isfinite(returns_bt).all()
    expected_a = torch.tensor([0.14512, 0.146, 0.3])
    expected_r = torch.tensor([0.64512, 0.746, 1.0])
    for row in range(3):
        keep = MASK_BT[row] != 0
        torch.testing.assert_close(advantages_bt[row][keep], expected_a)
        torch.testing.assert_close(returns_bt[row][keep], expected_r)
        assert torch.equal(advantages_bt[row][~keep], torch.zeros(5))
        assert torch.equal(returns_bt[row][~keep], torch.zeros(5))


def test_matches_reference_on_random_masks():
    gen = torch.Generator().manual_seed(0)
    rewards_bt = torch.randn(6, 9, generator=gen, dtype=torch.float64)
    values_bt = torch.randn(6, 9, generator=gen, dtype=torch.float64)
    mask_bt = torch.rand(6, 9, generator=gen) < 0.6
    mask_bt[0] = False  # an empty row
    advantages_bt, returns_bt = gae(rewards_bt, values_bt, mask_bt, 0.95, 0.9)
    assert advantages_bt.dtype == torch.float64
    for row in range(6):
        keep = mask_bt[row]
        expected = _reference_gae(
            rewards_bt[row][keep].tolist(), values_bt[row][keep].tolist(), 0.95, 0.9
        )
        expected = torch.tensor(expected, dtype=torch.float64)
        torch.testing.assert_close(advantages_bt[row][keep], expected)
        torch.testing.assert_close(returns_bt[row][keep], expected + values_bt[row][keep])
    assert torch.equal(advantages_bt[0], torch.zeros(9, dtype=torch.float64))


def test_outputs_carry_no_gradient_and_shapes_are_checked():
    values_bt = torch.tensor([[0.5, 0.6]], requires_grad=True)
    rewards_bt = torch.tensor([[0.0, 1.0]])
    advantages_bt, returns_bt = gae(rewards_bt, values_bt, torch.ones(1, 2), 1.0, 1.0)
    assert not advantages_bt.requires_grad and not returns_bt.requires_grad
    with pytest.raises(ValueError, match="same"):
        gae(torch.zeros(1, 3), torch.zeros(1, 2), torch.ones(1, 2), 1.0, 1.0)


def test_whiten_hand_example_and_masking():
    # masked-in [1, 2, 3]: mean 2, population var (1 + 0 + 1) / 3 = 2/3, 1/sqrt(2/3) = 1.2247449
    # whiten -> [-1.2247449, 0, 1.2247449]; shift_mean=False adds 2 back
    values_bt = torch.tensor([[1.0, NAN, 2.0], [INF, 3.0, -INF]])
    mask_bt = torch.tensor([[1, 0, 1], [0, 1, 0]])
    c = 1.2247449
    torch.testing.assert_close(
        whiten(values_bt, mask_bt), torch.tensor([[-c, 0.0, 0.0], [0.0, c, 0.0]])
    )
    torch.testing.assert_close(
        whiten(values_bt, mask_bt, shift_mean=False),
        torch.tensor([[2 - c, 0.0, 2.0], [0.0, 2 + c, 0.0]]),
    )
    assert torch.equal(whiten(values_bt, torch.zeros(2, 3)), torch.zeros(2, 3))
    # a single masked-in value has variance 0: (v - mean) = 0
    assert torch.equal(whiten(values_bt, torch.tensor([[0, 0, 1], [0, 0, 0]])), torch.zeros(2, 3))
