"""Process-supervision advantages (DeepSeekMath sec. 4.1.3) on hand-worked numbers."""

import pytest

from rl.algorithms.process import (first_error_advantages, mix_advantages, process_advantages,
                                   token_advantages_from_steps)


def test_two_episodes_three_steps_hand_worked():
    # step rewards A = [0.8, 0.2, 0.6], B = [0.4, 0.5, 0.5]
    # all six: mean = 3.0 / 6 = 0.5
    # deviations: A [0.3, -0.3, 0.1], B [-0.1, 0, 0]; squares sum to .09+.09+.01+.01 = 0.2
    # unbiased std = sqrt(0.2 / 5) = sqrt(0.04) = 0.2
    # normalised: A [1.5, -1.5, 0.5], B [-0.5, 0, 0]
    # to-go sums: A [1.5 - 1.5 + 0.5, -1.5 + 0.5, 0.5] = [0.5, -1.0, 0.5]; B [-0.5, 0, 0]
    a, b = process_advantages([[0.8, 0.2, 0.6], [0.4, 0.5, 0.5]], eps=0.0)
    assert a == pytest.approx([0.5, -1.0, 0.5])
    assert b == pytest.approx([-0.5, 0.0, 0.0], abs=1e-12)
    # eps is added to the std: 1.5 * 0.2 / (0.2 + 0.1) = 1.0 etc.
    a_eps, _ = process_advantages([[0.8, 0.2, 0.6], [0.4, 0.5, 0.5]], eps=0.1)
    assert a_eps == pytest.approx([x * 0.2 / 0.3 for x in [0.5, -1.0, 0.5]])


def test_variable_step_counts_and_degenerate_groups():
    # A = [1, 0], B = [1], C = []: values [1, 0, 1], mean 2/3,
    # unbiased var = ((1/3)^2 * 2 + (2/3)^2) / 2 = (2/9 + 4/9) / 2 = 1/3, std = 0.57735
    # normalised: 1 -> (1/3)/0.57735 = 0.57735, 0 -> -1.15470
    # to-go: A [0.57735 - 1.15470, -1.15470] = [-0.57735, -1.15470]; B [0.57735]
    a, b, c = process_advantages([[1.0, 0.0], [1.0], []], eps=0.0)
    assert a == pytest.approx([-0.5773503, -1.1547005])
    assert b == pytest.approx([0.5773503])
    assert c == []
    assert process_advantages([[0.7, 0.7], [0.7]]) == [[0.0, 0.0], [0.0]]  # all equal
    assert process_advantages([[0.3], []]) == [[0.0], []]  # one reward: no baseline


def test_token_mapping_spans_gaps_and_eos():
    # tokens: 0-2 prompt (mask 0) | 3 lead-in | 4-5 step0 | 6 blank "\n" | 7-9 step1 | 10 EOS
    mask = [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1]
    spans = [(4, 6), (7, 10)]
    out = token_advantages_from_steps(spans, [0.5, -1.0], length=11, loss_mask=mask)
    # prompt 0; lead-in takes step0's value; gap takes the next step's value; EOS gets 0
    assert out == [0.0, 0.0, 0.0, 0.5, 0.5, 0.5, -1.0, -1.0, -1.0, -1.0, 0.0]


def test_token_mapping_masks_env_tokens_and_rejects_bad_spans():
    # a span covering a masked (env) token still gives that token 0
    out = token_advantages_from_steps([(1, 4)], [2.0], length=4, loss_mask=[0, 1, 0, 1])
    assert out == [0.0, 2.0, 0.0, 2.0]
    assert token_advantages_from_steps([], [], length=3, loss_mask=[0, 1, 1]) == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError):
        token_advantages_from_steps([(2, 3), (0, 1)], [1.0, 1.0], length=3, loss_mask=[1, 1, 1])
    with pytest.raises(ValueError):
        token_advantages_from_steps([(0, 1)], [1.0, 2.0], length=3, loss_mask=[1, 1, 1])


def test_mix_outcome_and_process():
    # weight 0.25: 0.75 * 2.0 + 0.25 * [0.5, -1.0, 0.0] = [1.5 + 0.125, 1.5 - 0.25, 1.5]
    assert mix_advantages(2.0, [0.5, -1.0, 0.0], 0.25) == pytest.approx([1.625, 1.25, 1.5])
    assert mix_advantages(2.0, [0.5, -1.0], 0.0) == [2.0, 2.0]
    assert mix_advantages(2.0, [0.5, -1.0], 1.0) == [0.5, -1.0]
    with pytest.raises(ValueError):
        mix_advantages(1.0, [0.0], 1.5)


def test_first_error_credit_hand_worked():
    # exact labels of 4 episodes (3 steps + answer line):
    # A [1, 1, 1, 1]  B [1, 0, 0, 0]  C [1, 1, 0, 1]  D [0, 1, 1, 1]
    # step 0: peers A B C D, rewards 1 1 1 0, baseline 0.75 -> A B C +0.25, D -0.75
    # step 1: peers (step 0 passed) A B C, rewards 1 0 1, baseline 2/3 -> A C +1/3, B -2/3; D 0 (after its error)
    # step 2: peers A C (B failed step 1), rewards 1 0, baseline 0.5 -> A +0.5, C -0.5; B, D 0
    # step 3: peers A only (C failed step 2): a single peer, 0 for everyone
    a, b, c, d = first_error_advantages([[1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 0, 1], [0, 1, 1, 1]])
    assert a == pytest.approx([0.25, 1 / 3, 0.5, 0.0])
    assert b == pytest.approx([0.25, -2 / 3, 0.0, 0.0])
    assert c == pytest.approx([0.25, 1 / 3, -0.5, 0.0])
    assert d == pytest.approx([-0.75, 0.0, 0.0, 0.0])
    # DeepSeekMath's to-go sums blame B's right first step for its later slip; first-error credit does not
    assert process_advantages([[1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 0, 1], [0, 1, 1, 1]])[1][0] < 0 < b[0]


def test_first_error_credit_soft_scores_ragged_and_degenerate():
    # PRM probabilities, threshold 0.5: A [0.9, 0.4, 0.8], B [0.6], C []
    # step 0: peers A B (C has no step 0): baseline 0.75 -> A +0.15, B -0.15
    # step 1: peers A only -> 0; step 2: A failed step 1 (0.4 < 0.5) -> 0
    a, b, c = first_error_advantages([[0.9, 0.4, 0.8], [0.6], []])
    assert a == pytest.approx([0.15, 0.0, 0.0])
    assert b == pytest.approx([-0.15])
    assert c == []
    assert first_error_advantages([[1, 1], [1, 1]]) == [[0.0, 0.0], [0.0, 0.0]]  # all equal: no credit
    assert first_error_advantages([]) == []
