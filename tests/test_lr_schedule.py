"""The RL learning-rate schedule: warmup, then constant or a cosine over the budget spent."""

import math

import pytest
import torch

from rl.errors import ConfigError
from rl.trainer.config import OptimConfig
from rl.trainer.schedule import LRSchedule, budget_spent


def test_budget_spent_is_the_larger_of_the_step_and_seconds_fractions():
    assert budget_spent(0, 10, 0.0, None) == 0.0
    assert budget_spent(3, 10, 500.0, None) == 0.3  # no time budget: steps alone
    assert budget_spent(3, 10, 500.0, 1000.0) == 0.5  # the seconds run out first
    assert budget_spent(6, 10, 500.0, 1000.0) == 0.6
    assert budget_spent(4, 10, 1300.0, 1000.0) == 1.0  # a last step past the budget: capped


def test_constant_schedule_is_warmup_then_flat():
    schedule = LRSchedule(OptimConfig(warmup_steps=3))
    # (u + 1) / (warmup + 1): .25, .5, .75, then 1 whatever the budget spent
    assert [schedule.factor(u, 0.9) for u in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]


def test_cosine_schedule_by_hand():
    schedule = LRSchedule(OptimConfig(lr_scheduler="cosine"))
    # (1 + cos(pi * spent)) / 2 at spent 0, .25, .5, .75, 1
    expected = [1.0, 0.8535534, 0.5, 0.1464466, 0.0]
    assert [schedule.factor(10, s) for s in (0.0, 0.25, 0.5, 0.75, 1.0)] == pytest.approx(expected, abs=1e-7)
    floored = LRSchedule(OptimConfig(lr_scheduler="cosine", min_lr_ratio=0.2, warmup_steps=1))
    # .2 + .8 * .5 = .6 at half the budget; the first update also takes warmup's 1/2
    assert floored.factor(5, 0.5) == pytest.approx(0.6)
    assert floored.factor(0, 0.0) == pytest.approx(0.5)
    assert floored.factor(5, 1.0) == pytest.approx(0.2)


def test_apply_scales_each_group_from_its_own_base_rate():
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([{"params": [a]}, {"params": [b], "lr": 1.0}], lr=0.1)
    lr = LRSchedule(OptimConfig(lr_scheduler="cosine")).apply(optimizer, [0.1, 1.0], update=4, spent=0.5)
    assert lr == pytest.approx(0.05)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.05, 0.5])
    assert math.isclose(LRSchedule(OptimConfig()).apply(optimizer, [0.1, 1.0], 4, 0.5), 0.1)


@pytest.mark.parametrize("key, value", [("lr_scheduler", "linear"), ("min_lr_ratio", 1.5)])
def test_bad_schedule_settings_are_refused_by_name(key, value):
    with pytest.raises(ConfigError, match=f"optim.{key}"):
        OptimConfig(**{key: value})
