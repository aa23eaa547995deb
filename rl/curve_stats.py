"""Statistics of a horizon curve: pass@k, Wilson intervals, and ``h50`` with its interval.

Pure functions on counts; ``rl.evaluate`` feeds them per-horizon results.

Example::

    pass_at_k(n=10, c=3, k=1)            # 0.3
    wilson_interval(45, 50)              # (0.786, 0.957)
    h50({1: 0.9, 2: 0.7, 4: 0.3})        # 2.83 (crossing between h=2 and h=4, linear in log2 h)
"""

from __future__ import annotations

import math
from collections.abc import Mapping

Z95 = 1.959963984540054  # two-sided 95 % normal quantile


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one task from ``n`` samples of which ``c`` are correct (Chen et al. 2021):
    ``1 - C(n-c, k) / C(n, k)``, computed as a product to stay exact for large n."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval ``(low, high)`` of a binomial proportion ``successes / n``.

    ``successes`` may be fractional (a mean of per-task pass@k estimates times n): the interval is
    then the Wilson interval of that proportion with n trials, an approximation (pass@k of a task
    is not a Bernoulli draw) that is exact for pass@1. ``n == 0`` gives ``(0, 1)``.
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


def h50_summary(counts: Mapping[int, tuple[float, int]], level: float = 0.5) -> dict:
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
