import pytest
import torch

from rl.algorithms.advantages import ADVANTAGE_ESTIMATORS, group_advantages


def test_grpo_hand_example():
    # rewards [1, 0, 0, 1]: mean = 0.5, deviations = [0.5, -0.5, -0.5, 0.5]
    # unbiased var = (4 * 0.25) / (4 - 1) = 1/3, std = 0.577350
    # A = +-0.5 / (0.577350 + 1e-4) = +-0.865876
    rewards_g = torch.tensor([1.0, 0.0, 0.0, 1.0])
    a = 0.5 / (3**-0.5 + 1e-4)
    expected_g = torch.tensor([a, -a, -a, a])
    torch.testing.assert_close(group_advantages(rewards_g), expected_g)
    torch.testing.assert_close(expected_g[0], torch.tensor(0.865876), atol=1e-6, rtol=0)
    torch.testing.assert_close(ADVANTAGE_ESTIMATORS["grpo"](rewards_g), expected_g)


def test_grpo_asymmetric_group():
    # rewards [2, 0, 1]: mean = 1, deviations = [1, -1, 0]
    # unbiased var = (1 + 1 + 0) / 2 = 1, std = 1 -> A = [1, -1, 0] / 1.0001
    rewards_g = torch.tensor([2.0, 0.0, 1.0])
    expected_g = torch.tensor([1.0, -1.0, 0.0]) / 1.0001
    torch.testing.assert_close(group_advantages(rewards_g), expected_g)
    # a different eps: A = [1, -1, 0] / (1 + 0.5)
    torch.testing.assert_close(
        group_advantages(rewards_g, eps=0.5), torch.tensor([1.0, -1.0, 0.0]) / 1.5
    )


def test_dr_grpo_is_mean_centred_only():
    # Dr. GRPO: A = r - mean, no std division: [1,0,0,1] - 0.5
    rewards_g = torch.tensor([1.0, 0.0, 0.0, 1.0])
    expected_g = torch.tensor([0.5, -0.5, -0.5, 0.5])
    torch.testing.assert_close(group_advantages(rewards_g, scale_by_std=False), expected_g)
    torch.testing.assert_close(ADVANTAGE_ESTIMATORS["dr_grpo"](rewards_g), expected_g)
    # [3, 0, 0]: mean 1 -> [2, -1, -1]
    torch.testing.assert_close(
        ADVANTAGE_ESTIMATORS["dr_grpo"](torch.tensor([3.0, 0.0, 0.0])),
        torch.tensor([2.0, -1.0, -1.0]),
    )


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "raft"])
def test_all_equal_rewards_give_zeros(name):
    advantages_g = ADVANTAGE_ESTIMATORS[name](torch.full((5,), 0.7))
    assert torch.equal(advantages_g, torch.zeros(5))


@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "raft"])
def test_group_of_one_gives_zero_not_nan(name):
    advantages_g = ADVANTAGE_ESTIMATORS[name](torch.tensor([3.0]))
    assert torch.equal(advantages_g, torch.zeros(1))


@pytest.mark.parametrize("name", sorted(ADVANTAGE_ESTIMATORS))
def test_an_empty_group_gives_an_empty_result(name):
    assert ADVANTAGE_ESTIMATORS[name](torch.tensor([])).shape == (0,)


def test_integer_rewards_are_cast_to_float():
    advantages_g = group_advantages(torch.tensor([1, 0]), scale_by_std=False)
    torch.testing.assert_close(advantages_g, torch.tensor([0.5, -0.5]))


def test_rejects_non_1d_rewards():
    with pytest.raises(ValueError, match="rewards_g"):
        group_advantages(torch.zeros(2, 3))


def test_matches_trl_formula():
    """TRL 1.16 grpo_trainer.py lines 2764-2787: (r - mean) / (nanstd + 1e-4) per group."""
    pytest.importorskip("trl")
    from trl.trainer.utils import nanstd

    rewards_ng = torch.tensor([[0.3, 1.0, 0.0, 0.9], [2.0, -1.0, 0.5, 0.5]])
    trl_ng = (rewards_ng - rewards_ng.mean(dim=1, keepdim=True)) / (
        nanstd(rewards_ng, dim=1, keepdim=True) + 1e-4
    )
    ours_ng = torch.stack([group_advantages(r_g) for r_g in rewards_ng])
    torch.testing.assert_close(ours_ng, trl_ng)


def test_raft_is_one_for_the_best_and_zero_for_the_rest():
    # outcome 1 / 0 (no format bonus): the two right completions get 1, the wrong ones 0
    torch.testing.assert_close(ADVANTAGE_ESTIMATORS["raft"](torch.tensor([1.0, 0.0, 0.0, 1.0])),
                               torch.tensor([1.0, 0.0, 0.0, 1.0]))
    # only the top reward counts, not every above-mean one: [1.1, 0.1, 0.0] -> [1, 0, 0]
    torch.testing.assert_close(ADVANTAGE_ESTIMATORS["raft"](torch.tensor([1.1, 0.1, 0.0])),
                               torch.tensor([1.0, 0.0, 0.0]))
    assert ADVANTAGE_ESTIMATORS["raft"](torch.tensor([0, 2, 2])).tolist() == [0.0, 1.0, 1.0]  # ints cast
