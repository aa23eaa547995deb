import pytest
import torch

from rl.algorithms.shaping import overlong_penalty

LENGTHS_N = torch.tensor([0, 80, 81, 90, 99, 100, 101, 150])


def test_overlong_penalty_hand_values():
    # max_len 100, buffer 20: ramp starts after 80
    #   L <= 80: 0;  81: (80 - 81) / 20 = -0.05;  90: -0.5;  99: -0.95;  100: -1;  > 100: -1
    expected_n = torch.tensor([0.0, 0.0, -0.05, -0.5, -0.95, -1.0, -1.0, -1.0])
    torch.testing.assert_close(overlong_penalty(LENGTHS_N, 100, 20), expected_n)
    torch.testing.assert_close(overlong_penalty(LENGTHS_N, 100, 20, penalty=0.5), expected_n / 2)
    # buffer 0 is a hard cut at max_len: 0 up to 100, -1 beyond
    torch.testing.assert_close(
        overlong_penalty(LENGTHS_N, 100, 0), torch.tensor([0.0] * 6 + [-1.0] * 2)
    )


def test_overlong_penalty_rejects_bad_buffer():
    with pytest.raises(ValueError, match="buffer"):
        overlong_penalty(LENGTHS_N, 10, 20)
    with pytest.raises(ValueError, match="buffer"):
        overlong_penalty(LENGTHS_N, 10, -1)


@pytest.mark.parametrize("max_len, buffer", [(100, 20), (100, 0), (100, 100), (64, 7)])
def test_overlong_penalty_matches_trl(max_len, buffer):
    """TRL 1.16 trl/rewards/other_rewards.py get_soft_overlong_punishment on the same lengths
    (it takes token lists and uses their len)."""
    pytest.importorskip("trl")
    from trl.rewards import get_soft_overlong_punishment

    lengths = list(range(0, 160, 3)) + [max_len - buffer, max_len, max_len + 1]
    trl_reward = get_soft_overlong_punishment(max_completion_len=max_len, soft_punish_cache=buffer)
    expected_n = torch.tensor(trl_reward([[1] * n for n in lengths]))
    torch.testing.assert_close(overlong_penalty(torch.tensor(lengths), max_len, buffer), expected_n)
