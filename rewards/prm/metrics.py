"""PRM step scores measured against exact step labels, and two baseline scorers.

``scores`` are P(step correct) in [0, 1]; ``labels`` are exact booleans (an env spec's
``step_labels``, e.g. chain_math's). Per-solution functions take one list per solution.

- ``step_auc``: ROC AUC over steps (Mann-Whitney U with average ranks for ties).
- ``auc_up_to_first_error``: the same on the steps up to and including each solution's first
  wrong step: after it, labels are knock-on errors that a position rule already predicts
  (ProcessBench, Zheng et al. 2024, asks the same "where is the first error" question).
- ``first_error_accuracy`` / ``false_alarm_rate``: the PRM's first step below a threshold
  against the true first error, on flawed / on fully correct solutions.
- ``calibration_bins`` / ``calibration_plot``: reliability diagram.
- Baselines: ``position_baseline`` (later steps are more often wrong) and
  ``arithmetic_check_baseline`` (does the line's own ``a op b = c`` hold).

Empty inputs and one-class inputs give NaN rather than raising: an eval over a small held-out
set can legitimately have no flawed solution.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from pathlib import Path
from typing import Any

NAN = float("nan")


def first_error(labels: list[bool]) -> int | None:
    """Index of the first False label, or None when every step is correct."""
    return next((i for i, ok in enumerate(labels) if not ok), None)


def step_auc(scores: list[float], labels: list[bool]) -> float:
    """ROC AUC of ``scores`` for ``labels`` (True = correct step = positive class).

    ``AUC = (sum of positives' ranks - P (P + 1) / 2) / (P N)`` with ranks 1..n by ascending
    score, tied scores sharing their average rank (so a tied positive/negative pair counts
    1/2). Returns NaN when either class is absent.
    """
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} scores but {len(labels)} labels")
    n_pos = sum(1 for y in labels if y)
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return NAN
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for t in range(i, j + 1):
            ranks[order[t]] = (i + j) / 2 + 1  # average of ranks i+1 .. j+1
        i = j + 1
    rank_sum = sum(r for r, y in zip(ranks, labels) if y)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _check_pairs(scores_per_solution, labels_per_solution) -> None:
    if len(scores_per_solution) != len(labels_per_solution):
        raise ValueError(f"{len(scores_per_solution)} score lists but {len(labels_per_solution)} label lists")
    for i, (s, y) in enumerate(zip(scores_per_solution, labels_per_solution)):
        if len(s) != len(y):
            raise ValueError(f"solution {i}: {len(s)} scores but {len(y)} labels")


def truncate_at_first_error(scores: list[float], labels: list[bool]) -> tuple[list[float], list[bool]]:
    """The steps up to and including the first wrong one (all steps when none is wrong)."""
    fe = first_error(list(labels))
    end = len(labels) if fe is None else fe + 1
    return list(scores[:end]), list(labels[:end])


def auc_up_to_first_error(scores_per_solution: list[list[float]], labels_per_solution: list[list[bool]]) -> float:
    """``step_auc`` over the pooled steps of every solution, each cut after its first error."""
    _check_pairs(scores_per_solution, labels_per_solution)
    scores, labels = [], []
    for s, y in zip(scores_per_solution, labels_per_solution):
        s_cut, y_cut = truncate_at_first_error(s, y)
        scores += s_cut
        labels += y_cut
    return step_auc(scores, labels)


def predicted_first_error(scores: list[float], threshold: float = 0.5) -> int | None:
    """Index of the first step scored below ``threshold``, or None."""
    return next((i for i, s in enumerate(scores) if s < threshold), None)


def first_error_accuracy(scores_per_solution: list[list[float]], labels_per_solution: list[list[bool]],
                         threshold: float = 0.5) -> float:
    """Fraction of flawed solutions whose first step scored below ``threshold`` is the true first error.

    Fully correct solutions are left out; a flawed solution with no step below the threshold
    counts as a miss. NaN when no solution is flawed.
    """
    _check_pairs(scores_per_solution, labels_per_solution)
    hits = [predicted_first_error(s, threshold) == first_error(list(y))
            for s, y in zip(scores_per_solution, labels_per_solution) if first_error(list(y)) is not None]
    return sum(hits) / len(hits) if hits else NAN


def false_alarm_rate(scores_per_solution: list[list[float]], labels_per_solution: list[list[bool]],
                     threshold: float = 0.5) -> float:
    """Fraction of fully correct solutions with any step scored below ``threshold`` (NaN if none)."""
    _check_pairs(scores_per_solution, labels_per_solution)
    alarms = [predicted_first_error(s, threshold) is not None
              for s, y in zip(scores_per_solution, labels_per_solution) if all(y)]
    return sum(alarms) / len(alarms) if alarms else NAN


def calibration_bins(scores: list[float], labels: list[bool], n_bins: int = 10) -> list[dict[str, float]]:
    """Equal-width score bins on [0, 1] (a score of 1.0 goes in the last bin).

    Returns one dict per non-empty bin: ``lo``, ``hi``, ``count``, ``mean_score`` and
    ``frac_correct`` (the fraction of its steps labelled correct).
    """
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} scores but {len(labels)} labels")
    members: list[list[int]] = [[] for _ in range(n_bins)]
    for i, s in enumerate(scores):
        members[min(int(s * n_bins), n_bins - 1)].append(i)
    bins = []
    for b, idx in enumerate(members):
        if idx:
            bins.append({"lo": b / n_bins, "hi": (b + 1) / n_bins, "count": len(idx),
                         "mean_score": sum(scores[i] for i in idx) / len(idx),
                         "frac_correct": sum(1 for i in idx if labels[i]) / len(idx)})
    return bins


def expected_calibration_error(scores: list[float], labels: list[bool], n_bins: int = 10) -> float:
    """``sum_b count_b / n * |frac_correct_b - mean_score_b|`` (NaN on empty input)."""
    bins = calibration_bins(scores, labels, n_bins)
    total = sum(b["count"] for b in bins)
    if not total:
        return NAN
    return sum(b["count"] / total * abs(b["frac_correct"] - b["mean_score"]) for b in bins)


def calibration_plot(scores: list[float], labels: list[bool], path: str | Path, n_bins: int = 10,
                     title: str = "PRM calibration") -> list[dict[str, float]]:
    """Write a reliability diagram PNG (fraction correct against mean score per bin, with the
    diagonal and the bin counts) to ``path``. Returns ``calibration_bins``."""
    from matplotlib.figure import Figure  # Agg canvas, no pyplot global state

    bins = calibration_bins(scores, labels, n_bins)
    fig = Figure(figsize=(5, 6))
    top, bottom = fig.subplots(2, 1, gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect")
    top.plot([b["mean_score"] for b in bins], [b["frac_correct"] for b in bins], marker="o", label="PRM")
    top.set_ylabel("fraction of steps correct")
    top.set_title(f"{title} (ECE {expected_calibration_error(scores, labels, n_bins):.3f})")
    top.legend(loc="upper left")
    top.grid(alpha=0.3)
    bottom.bar([(b["lo"] + b["hi"]) / 2 for b in bins], [b["count"] for b in bins], width=1 / n_bins * 0.9)
    bottom.set_xlabel("PRM score")
    bottom.set_ylabel("steps")
    bottom.set_xlim(0, 1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return bins


def position_baseline(n_steps: int) -> list[float]:
    """Scores ``1 - i / n`` for steps i = 0..n-1: the later the step, the likelier it is wrong."""
    return [1.0 - i / n_steps for i in range(n_steps)]


# "a op b = c" on a whole line; op is + - * x × / ; numbers may be negative or decimal
_NUM = r"[-\u2212]?\d+(?:\.\d+)?"
_EQUATION = re.compile(rf"^\s*({_NUM})\s*([-+*/x×\u2212])\s*({_NUM})\s*=\s*({_NUM})\s*$")


def _frac(s: str) -> Fraction:
    return Fraction(s.replace("\u2212", "-"))


def arithmetic_check(text: str) -> bool | None:
    """Whether the line ``a op b = c`` is arithmetically right; None when it is not such a line."""
    m = _EQUATION.match(text)
    if m is None:
        return None
    a, op, b, c = _frac(m.group(1)), m.group(2), _frac(m.group(3)), _frac(m.group(4))
    if op == "+":
        value = a + b
    elif op in "-\u2212":
        value = a - b
    elif op in "*x×":
        value = a * b
    else:
        if b == 0:
            return False
        value = a / b
    return value == c


def arithmetic_check_baseline(step_texts: list[str]) -> list[float]:
    """1.0 where a line's own ``a op b = c`` holds, 0.0 where it does not, 0.5 where the line
    is not of that form (e.g. ``#### 32``). It sees each line alone, so it misses knock-on
    errors (right arithmetic on a wrong running value) and operand misreads."""
    out = []
    for text in step_texts:
        verdict = arithmetic_check(text)
        out.append(0.5 if verdict is None else float(verdict))
    return out


def evaluate_scores(scores_per_solution: list[list[float]], labels_per_solution: list[list[bool]],
                    threshold: float = 0.5) -> dict[str, Any]:
    """All the scalar metrics at once: ``auc``, ``auc_first_error``, ``first_error_acc``,
    ``false_alarm``, ``ece``, ``steps``, ``solutions`` (NaN where undefined)."""
    flat_s = [x for s in scores_per_solution for x in s]
    flat_y = [y for ys in labels_per_solution for y in ys]
    return {
        "auc": step_auc(flat_s, flat_y),
        "auc_first_error": auc_up_to_first_error(scores_per_solution, labels_per_solution),
        "first_error_acc": first_error_accuracy(scores_per_solution, labels_per_solution, threshold),
        "false_alarm": false_alarm_rate(scores_per_solution, labels_per_solution, threshold),
        "ece": expected_calibration_error(flat_s, flat_y) if flat_s else math.nan,
        "steps": len(flat_s),
        "solutions": len(scores_per_solution),
    }
