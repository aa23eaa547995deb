"""Statistics of a horizon curve: pass@k, Wilson intervals, ``h50`` with its interval, and the
paired comparison of two models scored on the same tasks (McNemar, Newcombe's paired interval).

Pure functions on counts; ``rl.evaluate`` feeds them per-horizon results.

Example::

    pass_at_k(n=10, c=3, k=1)            # 0.3
    wilson_interval(45, 50)              # (0.786, 0.957)
    clustered_counts([2, 2, 0, 0], 2)    # (1.5, 3.0): two seeds that always agree count ~once
    h50({1: 0.9, 2: 0.7, 4: 0.3})        # 2.83 (crossing between h=2 and h=4, linear in log2 h)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

Z95 = 1.959963984540054  # two-sided 95 % normal quantile


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one task from ``n`` samples of which ``c`` are correct (Chen et al. 2021):
    ``1 - C(n-c, k) / C(n, k)``, computed as a product to stay exact for large n."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def wilson_interval(successes: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval ``(low, high)`` of a binomial proportion ``successes / n``.

    ``successes`` may be fractional (a mean of per-task pass@k estimates times n): the interval is
    then the Wilson interval of that proportion with n trials, an approximation (pass@k of a task
    is not a Bernoulli draw) that is exact for pass@1. ``n`` may be fractional too: an effective
    sample size (``clustered_counts``). ``n == 0`` gives ``(0, 1)``.
    """
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if successes <= 0 else max(0.0, center - half)  # exact ends: float rounding aside
    high = 1.0 if successes >= n else min(1.0, center + half)
    return low, high


def clustered_counts(successes_per_task: Iterable[int], trials_per_task: int) -> tuple[float, float]:
    """``(successes, n)`` to feed ``wilson_interval`` / ``h50_summary`` when each of T tasks was tried
    ``trials_per_task`` times (m; the same held-out task scored once per seed) and its trials are not
    independent: n shrunk to the effective sample size ``n / deff`` (Kish's design effect, ``deff`` =
    the between-task variance of the pooled rate over its binomial variance, floored at 1 so the
    interval never narrows), successes shrunk with it so the rate is unchanged. This is Korn and
    Graubard's (1998) effective-sample-size interval with Wilson in place of Clopper-Pearson and
    without their t-quantile correction (negligible at T ~ 100).

    The between-task variance is that of a mean of T task means, ``sum((y_t/m - p)^2) / (T (T-1))``.
    With every task at 0 or m successes (seeds that always agree) n_eff is T - 1; with seeds that
    disagree as often as chance it stays T x m. A rate of 0 or 1 carries no variance to compare, so
    it counts each task once (n = T, the widest reading); one task returns the raw counts.
    """
    ys, m = list(successes_per_task), trials_per_task
    if not (isinstance(m, int) and m >= 1) or any(not (isinstance(y, int) and 0 <= y <= m) for y in ys):
        raise ValueError(f"clustered_counts needs an integer trials_per_task >= 1 and integer 0 <= successes <= it, "
                         f"got m={m}, {ys[:5]}")
    tasks = len(ys)
    n, wins = tasks * m, sum(ys)
    if tasks < 2:
        return float(wins), float(n)
    if wins in (0, n):
        return float(wins // m), float(tasks)
    p = wins / n
    between = sum((y / m - p) ** 2 for y in ys) / (tasks * (tasks - 1))
    deff = max(1.0, between / (p * (1 - p) / n))
    return wins / deff, n / deff


def h50(curve: Mapping[int, float], level: float = 0.5) -> float | None:
    """Where ``curve`` (horizon -> success rate) first falls below ``level``, walking up from the
    shortest horizon; linear interpolation in log2(horizon) between the last horizon at or above
    ``level`` and the first below it.

    Returns None when the shortest horizon is already below ``level``, and the longest horizon
    measured when none falls below (a lower bound: the curve was not measured further; see
    ``h50_summary``'s ``censored``).
    """
    hs = sorted(int(h) for h in curve)
    rate = {int(h): float(v) for h, v in curve.items()}
    if not hs or rate[hs[0]] < level:
        return None
    for lo, hi in zip(hs, hs[1:]):
        if rate[hi] < level:
            frac = (rate[lo] - level) / (rate[lo] - rate[hi])
            return 2 ** (math.log2(lo) + frac * (math.log2(hi) - math.log2(lo)))
    return float(hs[-1])


def h50_summary(counts: Mapping[int, tuple[float, float]], level: float = 0.5) -> dict:
    """``h50`` of the rates ``successes / n`` per horizon, with an interval read off the curves of
    the per-horizon Wilson bounds: the lower-bound curve crosses first (``low``), the upper-bound
    curve last (``high``).

    Returns ``{"h50", "low", "high", "censored"}``; ``censored`` is true when the upper-bound curve
    never falls below ``level`` (so ``high`` is only the longest horizon measured).
    """
    rates = {h: s / n for h, (s, n) in counts.items()}
    bounds = {h: wilson_interval(s, n) for h, (s, n) in counts.items()}
    upper = {h: b[1] for h, b in bounds.items()}
    return {"h50": _round(h50(rates, level)), "low": _round(h50({h: b[0] for h, b in bounds.items()}, level)),
            "high": _round(h50(upper, level)), "censored": bool(upper) and min(upper.values()) >= level}


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def mcnemar_exact_p(gained: int, lost: int) -> float:
    """Two-sided exact McNemar p-value of a paired comparison: of the ``gained + lost`` tasks on
    which two models disagree, is the split consistent with a fair coin? ``2 x P(X <= min)`` for
    ``X ~ Binomial(gained + lost, 1/2)``, capped at 1; 1.0 when no task is discordant.

    Written out (one binomial tail) rather than taken from scipy, which nothing else here needs.
    """
    if gained < 0 or lost < 0:
        raise ValueError(f"mcnemar_exact_p needs counts >= 0, got gained={gained} lost={lost}")
    n = gained + lost
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(gained, lost) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def paired_difference_ci(both: int, only_a: int, only_b: int, neither: int,
                         z: float = Z95) -> tuple[float, float]:
    """95 % interval of ``p_a - p_b`` when models a and b were scored on the SAME tasks: Newcombe's
    (1998, Stat Med 17:2635) method 10, the two marginal Wilson intervals combined with the phi
    correlation of the paired outcomes, continuity-corrected as in the paper (phi = 0 when a
    margin is empty).

    Paired outcomes make this interval much narrower than comparing two independent Wilson
    intervals: the tasks both models solve or both fail carry no noise about the difference. With
    no discordant task and an empty margin (neither model solves any task, or both solve all),
    phi is 0 and the interval is one Wilson half-width either side of 0, as in the method.
    Written out because no installed library implements the paired version.
    """
    n = both + only_a + only_b + neither
    if min(both, only_a, only_b, neither) < 0 or n == 0:
        raise ValueError(f"paired_difference_ci needs counts >= 0 and at least one task, got "
                         f"{(both, only_a, only_b, neither)}")
    pa, pb = (both + only_a) / n, (both + only_b) / n
    (la, ua), (lb, ub) = wilson_interval(both + only_a, n, z), wilson_interval(both + only_b, n, z)
    margins = (both + only_a) * (neither + only_b) * (both + only_b) * (neither + only_a)
    cross = both * neither - only_a * only_b
    # Newcombe's continuity correction of phi: a positive cross term is shrunk by n / 2
    cross = max(0.0, cross - n / 2) if cross >= 0 else cross
    phi = cross / math.sqrt(margins) if margins else 0.0
    d = pa - pb
    low = d - math.sqrt(max(0.0, (pa - la) ** 2 - 2 * phi * (pa - la) * (ub - pb) + (ub - pb) ** 2))
    high = d + math.sqrt(max(0.0, (ua - pa) ** 2 - 2 * phi * (ua - pa) * (pb - lb) + (pb - lb) ** 2))
    return max(-1.0, low), min(1.0, high)


def paired_comparison(rows: Iterable[Mapping], *, baseline: Iterable[Mapping]) -> dict[int, dict]:
    """A model against a ``baseline``, task by task, per horizon, from their greedy completions (the
    ``eval/completions/*.jsonl`` rows: ``horizon``, ``task_id``, ``solved``).

    Returns ``{horizon: {"n", "gained", "lost", "diff", "diff_ci", "p"}}``: ``gained`` counts tasks
    the model solves and the baseline does not, ``diff`` is ``p_model - p_baseline``, ``diff_ci``
    Newcombe's paired interval and ``p`` the exact McNemar p-value. ``baseline`` is keyword-only, so
    which side is which is named at the call. Raises ValueError when the two did not score the
    same tasks.
    """
    def solved_by_task(rows: Iterable[Mapping]) -> dict[tuple[int, str], bool]:
        out: dict[tuple[int, str], bool] = {}
        for r in rows:
            key = (int(r["horizon"]), str(r["task_id"]))
            if key in out:
                raise ValueError(f"task {key[1]!r} at horizon {key[0]} appears twice in one model's completions: "
                                 "a paired comparison needs one greedy result per task")
            out[key] = bool(r["solved"])
        return out

    a, b = solved_by_task(rows), solved_by_task(baseline)
    if a.keys() != b.keys():
        only = sorted(a.keys() ^ b.keys())[:3]
        raise ValueError(f"a paired comparison needs both models scored on the same held-out tasks; "
                         f"{len(a.keys() ^ b.keys())} differ (e.g. {only}): score both with the same "
                         "eval.horizons, eval.tasks_per_horizon and env")
    out = {}
    for h in sorted({h for h, _ in a}):
        keys = [k for k in a if k[0] == h]
        cells = {(x, y): sum(a[k] is x and b[k] is y for k in keys) for x in (True, False) for y in (True, False)}
        both, only_a, only_b, neither = cells[True, True], cells[True, False], cells[False, True], cells[False, False]
        lo, hi = paired_difference_ci(both, only_a, only_b, neither)
        out[h] = {"n": len(keys), "gained": only_a, "lost": only_b, "diff": (only_a - only_b) / len(keys),
                  "diff_ci": [round(lo, 4), round(hi, 4)], "p": float(f"{mcnemar_exact_p(only_a, only_b):.4g}")}
    return out
