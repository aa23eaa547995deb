import inspect

import pytest
import torch

from rl.algorithms.advantages import (
    ADVANTAGE_ESTIMATORS,
    normalize_batch,
    reinforce_pp_advantages,
    rloo_advantages,
)

# --- RLOO ------------------------------------------------------------------------------


def test_rloo_hand_examples():
    # [1, 0, 0, 1]: A_0 = 1 - (0 + 0 + 1) / 3 = 2/3, A_1 = 0 - (1 + 0 + 1) / 3 = -2/3
    #   (= G/(G-1) * (r - mean) = 4/3 * +-0.5)
    torch.testing.assert_close(
        rloo_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0])),
        torch.tensor([2 / 3, -2 / 3, -2 / 3, 2 / 3]),
    )
    # [3, 0, 0]: A_0 = 3 - (0 + 0) / 2 = 3, A_1 = A_2 = 0 - (3 + 0) / 2 = -1.5
    torch.testing.assert_close(
        ADVANTAGE_ESTIMATORS["rloo"](torch.tensor([3.0, 0.0, 0.0])),
        torch.tensor([3.0, -1.5, -1.5]),
    )
    # G = 2: [1, 0] -> [1 - 0, 0 - 1]
    torch.testing.assert_close(rloo_advantages(torch.tensor([1, 0])), torch.tensor([1.0, -1.0]))


def test_rloo_is_scaled_mean_centring():
    gen = torch.Generator().manual_seed(0)
    for size in (2, 3, 8):
        rewards_g = torch.randn(size, generator=gen, dtype=torch.float64)
        expected_g = size / (size - 1) * (rewards_g - rewards_g.mean())
        torch.testing.assert_close(rloo_advantages(rewards_g), expected_g)
        assert rloo_advantages(rewards_g).dtype == torch.float64


def test_rloo_degenerate_groups_give_exact_zeros():
    assert torch.equal(rloo_advantages(torch.tensor([3.0])), torch.zeros(1))
    assert torch.equal(rloo_advantages(torch.full((5,), 0.1)), torch.zeros(5))
    with pytest.raises(ValueError, match="rewards_g"):
        rloo_advantages(torch.zeros(2, 2))


def _trl_rloo_source():
    from trl.trainer.rloo_trainer import RLOOTrainer

    return inspect.getsource(RLOOTrainer._generate_and_score_completions)


def _trl_rloo_advantages(rewards, num_generations, normalize_advantages):
    """TRL 1.16 rloo_trainer.py lines 1675-1699 (_generate_and_score_completions), verbatim
    apart from names; the test below checks those lines are still in TRL's source."""
    from trl.trainer.utils import nanstd

    grouped_rewards = rewards.view(-1, num_generations)
    scorable_counts = (~torch.isnan(grouped_rewards)).sum(dim=1, keepdim=True)
    grouped_sum = torch.nansum(grouped_rewards, dim=1, keepdim=True)
    baselines = (grouped_sum - grouped_rewards) / (scorable_counts - 1)
    advantages = rewards - baselines.view(-1)
    if normalize_advantages:
        advantages = (advantages - torch.nanmean(advantages)) / (nanstd(advantages) + 1e-4)
    return torch.nan_to_num(advantages, nan=0.0)


def test_rloo_matches_trl_rloo_trainer():
    """Same rewards, TRL 1.16 RLOOTrainer's leave-one-out formula vs ours, plain case
    (``normalize_advantages=False``, TRL's default; no KL-in-reward, all rewards scorable).

    TRL's optional ``normalize_advantages=True`` whitens over the whole generation batch
    with the Bessel-corrected std and eps 1e-4; our ``normalize_batch`` uses the population
    std and eps 1e-8, so the two differ by the factor sqrt((N-1)/N) (checked below, N = 8).
    """
    pytest.importorskip("trl")
    source = _trl_rloo_source()
    for line in (
        "baselines = (grouped_sum - grouped_rewards) / (scorable_counts - 1)",
        "advantages = rewards - baselines",
        "advantages = (advantages - torch.nanmean(advantages)) / (nanstd(advantages) + 1e-4)",
    ):
        assert line in source, f"TRL's RLOO advantage code changed: {line!r} not found"

    rewards_n = torch.tensor([0.3, 1.0, 0.0, 0.9, 2.0, -1.0, 0.5, 0.5])
    ours_n = torch.cat([rloo_advantages(r_g) for r_g in rewards_n.view(2, 4)])
    torch.testing.assert_close(ours_n, _trl_rloo_advantages(rewards_n, 4, False))

    trl_normalised_n = _trl_rloo_advantages(rewards_n, 4, True)
    ours_normalised_n = normalize_batch(ours_n)
    assert not torch.allclose(trl_normalised_n, ours_normalised_n, atol=1e-3)
    torch.testing.assert_close(
        trl_normalised_n, ours_normalised_n * (7 / 8) ** 0.5, atol=1e-3, rtol=1e-3
    )


# --- REINFORCE++ ---------------------------------------------------------------------------


def test_reinforce_pp_group_part_is_mean_centring():
    # [1, 1, 1, 0]: mean 0.75 -> [0.25, 0.25, 0.25, -0.75], no std division
    torch.testing.assert_close(
        ADVANTAGE_ESTIMATORS["reinforce_pp"](torch.tensor([1.0, 1.0, 1.0, 0.0])),
        torch.tensor([0.25, 0.25, 0.25, -0.75]),
    )
    assert torch.equal(reinforce_pp_advantages(torch.tensor([2.0])), torch.zeros(1))


def test_normalize_batch_hand_example_uses_population_std():
    # [1, 2, 3, 4]: mean 2.5, population var = (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25,
    # std = 1.1180340 -> [-1.5, -0.5, 0.5, 1.5] / 1.1180340 = [-1.341641, -0.447214, ...]
    # (Bessel's std would be 1.2909944, giving -1.161895 for the first entry)
    expected_n = torch.tensor([-1.341641, -0.447214, 0.447214, 1.341641])
    torch.testing.assert_close(
        normalize_batch(torch.tensor([1.0, 2.0, 3.0, 4.0])), expected_n, atol=1e-6, rtol=0
    )
    # shape is kept: statistics are over all elements
    torch.testing.assert_close(
        normalize_batch(torch.tensor([[1, 2], [3, 4]])), expected_n.view(2, 2), atol=1e-6, rtol=0
    )


def test_reinforce_pp_two_groups_global_std_differs_from_grpo():
    # group part: [1, 0, 0, 1] -> [0.5, -0.5, -0.5, 0.5]; [1, 1, 1, 0] -> [.25, .25, .25, -.75]
    # batch of 8: mean 0, population var = (4 * 0.25 + 3 * 0.0625 + 0.5625) / 8 = 0.21875,
    # std = 0.4677072: 0.5 -> 1.069045, 0.25 -> 0.534522, -0.75 -> -1.603567
    rewards_kg = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 0.0]])
    group_n = torch.cat([ADVANTAGE_ESTIMATORS["reinforce_pp"](r_g) for r_g in rewards_kg])
    a, b, c = 1.069045, 0.534522, -1.603567
    expected_n = torch.tensor([a, -a, -a, a, b, b, b, c])
    torch.testing.assert_close(normalize_batch(group_n), expected_n, atol=1e-6, rtol=0)
    # GRPO divides each group by its own std instead: group 2 would be [0.5, 0.5, 0.5, -1.5]
    grpo_n = torch.cat([ADVANTAGE_ESTIMATORS["grpo"](r_g) for r_g in rewards_kg])
    assert not torch.allclose(grpo_n, expected_n, atol=1e-2)


def test_normalize_batch_degenerate_and_statistics():
    assert torch.equal(normalize_batch(torch.tensor([0.7])), torch.zeros(1))
    assert torch.equal(normalize_batch(torch.full((6,), 0.1)), torch.zeros(6))
    assert torch.equal(normalize_batch(torch.zeros(3)), torch.zeros(3))
    gen = torch.Generator().manual_seed(3)
    out_n = normalize_batch(5 + 3 * torch.randn(64, generator=gen))
    torch.testing.assert_close(out_n.mean(), torch.tensor(0.0), atol=1e-6, rtol=0)
    torch.testing.assert_close(out_n.std(unbiased=False), torch.tensor(1.0))


def test_registry_names():
    assert set(ADVANTAGE_ESTIMATORS) == {"grpo", "dr_grpo", "rloo", "reinforce_pp", "raft"}
