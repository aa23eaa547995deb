"""PRM evaluation metrics and baselines on hand-worked examples."""

import math

import pytest

from rewards.prm.metrics import (
    arithmetic_check_baseline,
    auc_up_to_first_error,
    calibration_bins,
    calibration_plot,
    evaluate_scores,
    expected_calibration_error,
    false_alarm_rate,
    first_error_accuracy,
    position_baseline,
    step_auc,
)


def test_step_auc_hand_examples():
    assert step_auc([0.9, 0.8, 0.3, 0.1], [True, True, False, False]) == 1.0
    assert step_auc([0.1, 0.3, 0.8, 0.9], [True, True, False, False]) == 0.0
    # one tied positive/negative pair counts 1/2
    assert step_auc([0.5, 0.5], [True, False]) == 0.5
    # pairs (pos, neg): (.9,.5)=1 (.9,.1)=1 (.5,.5)=1/2 (.5,.1)=1 -> 3.5 / 4
    assert step_auc([0.9, 0.5, 0.5, 0.1], [True, True, False, False]) == 0.875
    # pairs: (.6,.7)=0 (.6,.2)=1 (.4,.7)=0 (.4,.2)=1 -> 2 / 4
    assert step_auc([0.6, 0.7, 0.4, 0.2], [True, False, True, False]) == 0.5
    assert math.isnan(step_auc([0.3, 0.4], [True, True]))
    with pytest.raises(ValueError):
        step_auc([0.3], [True, False])


def test_auc_up_to_first_error_drops_knock_on_steps():
    scores = [[0.9, 0.2, 0.8], [0.7, 0.6]]
    labels = [[True, False, False], [True, True]]
    # all steps pooled: positives .9 .7 .6, negatives .2 .8
    # pairs: .9 beats both (2), .7 beats .2 (1), .6 beats .2 (1) -> 4 / 6
    assert step_auc([0.9, 0.2, 0.8, 0.7, 0.6], [True, False, False, True, True]) == pytest.approx(4 / 6)
    # cut after the first error: solution 0 keeps [.9, .2]; negatives only .2 -> 3 / 3
    assert auc_up_to_first_error(scores, labels) == 1.0


def test_first_error_accuracy_and_false_alarms():
    scores = [
        [0.9, 0.3, 0.2],   # true first error 1, predicted 1 -> hit
        [0.4, 0.8, 0.1],   # true first error 2, predicted 0 -> miss
        [0.9, 0.9, 0.9],   # true first error 1, never below 0.5 -> miss
        [0.9, 0.6, 0.7],   # fully correct, no alarm
        [0.9, 0.45, 0.8],  # fully correct, alarm at step 1
    ]
    labels = [
        [True, False, False],
        [True, True, False],
        [True, False, True],
        [True, True, True],
        [True, True, True],
    ]
    assert first_error_accuracy(scores, labels) == pytest.approx(1 / 3)
    assert false_alarm_rate(scores, labels) == 0.5
    # threshold 0.25: solution 0 -> step 2 (0.2; miss), solution 1 -> step 2 (0.1; hit), 2 still missed;
    # solution 4's 0.45 is no longer an alarm
    assert first_error_accuracy(scores, labels, threshold=0.25) == pytest.approx(1 / 3)
    assert false_alarm_rate(scores, labels, threshold=0.25) == 0.0
    assert math.isnan(first_error_accuracy([[0.9]], [[True]]))
    assert math.isnan(false_alarm_rate([[0.1]], [[False]]))
    out = evaluate_scores(scores, labels)
    assert out["solutions"] == 5 and out["steps"] == 15
    assert out["first_error_acc"] == pytest.approx(1 / 3) and out["false_alarm"] == 0.5


def test_baselines():
    assert position_baseline(4) == [1.0, 0.75, 0.5, 0.25]
    assert position_baseline(0) == []
    lines = ["7 + 5 = 12", "12 * 3 = 35", "35 - 4 = 31", "-3 * -2 = 6", "10 / 4 = 2.5",
             "#### 31", "then add 4", "5 x 2 = 10", "1 / 0 = 0"]
    assert arithmetic_check_baseline(lines) == [1.0, 0.0, 1.0, 1.0, 1.0, 0.5, 0.5, 1.0, 0.0]


def test_calibration_bins_ece_and_png(tmp_path):
    scores = [0.05, 0.15, 0.12, 0.95, 1.0]
    labels = [False, True, False, True, True]
    bins = calibration_bins(scores, labels, n_bins=10)
    assert [(b["lo"], b["count"]) for b in bins] == [(0.0, 1), (0.1, 2), (0.9, 2)]
    assert bins[1]["frac_correct"] == 0.5 and bins[1]["mean_score"] == pytest.approx(0.135)
    # ECE = 1/5 * |0 - .05| + 2/5 * |.5 - .135| + 2/5 * |1 - .975| = .01 + .146 + .01
    assert expected_calibration_error(scores, labels) == pytest.approx(0.166)
    path = tmp_path / "plots" / "calibration.png"
    assert calibration_plot(scores, labels, path) == bins
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000
