"""chain_math: state tracking over N arithmetic operations.

A task reads "Start with 7. Add 5. Multiply by 3. Subtract 4." The horizon N is the number
of operations (1 to 64). The source knows every intermediate value, so it gives

- an oracle step-by-step solution (a programmatic teacher), one line per operation::

      7 + 5 = 12
      12 * 3 = 36
      36 - 4 = 32
      #### 32

- exact per-step labels for any completion (``step_labels``): the ground truth against which
  PRMs and Monte Carlo labels are measured.

Task number ``i`` is generated from RNGs seeded by ``(seed, i)`` (its horizon) and
``(seed, i, horizon)`` (its numbers), so the stream depends only on the seed, the horizon
settings and the position.

``SPEC`` is what configs name (``env: {name: chain_math, max_horizon: 6}``): the options
below, the math verifier (``rewards.math``), one step per line, exact labels and the oracle.

Example::

    source = ChainMathSource(ChainMathConfig(min_horizon=3, max_horizon=3), seed=0)
    (task,) = source.sample(1)           # task.id == "chain_math/h3/s0-i0"
    text = oracle_solution(task)          # "... = <v1>\\n... = <v2>\\n... = <v3>\\n#### <v3>"
    step_labels(task, split_steps(text))  # [True, True, True, True]
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from envs.base import EnvSpec, PositionStream, SingleTurnEnv, is_int
from rewards.math import MathVerifier, format_score
from rl.errors import ConfigError, DataError
from rl.types import Task

SOURCE = "chain_math"
MIN_HORIZON = 1
MAX_HORIZON = 64
OPS = ("add", "subtract", "multiply")

_SYMBOL = {"add": "+", "subtract": "-", "multiply": "*"}
_PHRASE = {"add": "Add {}.", "subtract": "Subtract {}.", "multiply": "Multiply by {}."}

INSTRUCTIONS = (
    "Do the operations in order. Write one line per operation with the calculation and the "
    'new value, for example "2 + 3 = 5". After the last operation, write the final value on '
    'its own line as "#### <value>".'
)


@dataclass(frozen=True)
class ChainMathConfig:
    """Options of a chain_math task stream (the ``env`` config keys), validated on construction.

    The horizon of each task is drawn uniformly from ``[min_horizon, max_horizon]``. Ranges
    are inclusive ``(low, high)`` pairs of integers. ``max_abs_value`` keeps running values
    readable: an operation whose result would leave ``[-max_abs_value, max_abs_value]`` is
    replaced by another allowed one that stays inside (when none does, the first draw is
    kept); ``None`` turns the cap off.
    """

    min_horizon: int = 1
    max_horizon: int = 4
    start_range: tuple[int, int] = (1, 20)
    operand_range: tuple[int, int] = (1, 20)
    mul_range: tuple[int, int] = (2, 5)
    ops: tuple[str, ...] = OPS
    max_abs_value: int | None = 999

    def __post_init__(self) -> None:
        _check_horizon(self.min_horizon, self.max_horizon)
        for name, low_bound in (("start_range", None), ("operand_range", 0), ("mul_range", 1)):
            object.__setattr__(self, name, _check_range(name, getattr(self, name), low_bound))
        ops = self.ops
        if isinstance(ops, str) or not isinstance(ops, (list, tuple)) or not ops:
            raise ConfigError(f"config key 'env.ops': {ops!r}: give a non-empty list drawn from {OPS}")
        unknown = [op for op in ops if op not in OPS]
        if unknown:
            raise ConfigError(f"config key 'env.ops': unknown {unknown}: use names from {OPS}")
        object.__setattr__(self, "ops", tuple(ops))
        cap = self.max_abs_value
        if cap is not None and (not is_int(cap) or cap < 1):
            raise ConfigError(
                f"config key 'env.max_abs_value': {cap!r}: use a positive integer, or null for no cap"
            )


class ChainMathSource(PositionStream):
    """A seeded, deterministic stream of chain_math tasks (a ``TaskSource``)."""

    STATE_NAME = "chain_math"

    def __init__(self, config: ChainMathConfig | None = None, seed: int = 0):
        self.start_stream(seed)
        self.config = config or ChainMathConfig()
        self.min_horizon = self.config.min_horizon
        self.max_horizon = self.config.max_horizon

    def task_at(self, index: int) -> Task:
        """Task number ``index`` under the current horizon settings (the position is unchanged)."""
        cfg = self.config
        horizon = random.Random(f"{SOURCE}:{self.seed}:{index}").randint(
            self.min_horizon, self.max_horizon)
        # a second RNG keyed by the horizon too, so that tasks of different horizons at the
        # same position are unrelated rather than prefixes of one another
        rng = random.Random(f"{SOURCE}:{self.seed}:{index}:h{horizon}")
        start = rng.randint(*cfg.start_range)
        ops: list[list[Any]] = []
        values: list[int] = []
        value = start
        for _ in range(horizon):
            op, operand = _draw_op(rng, value, cfg)
            value = _apply(op, value, operand)
            ops.append([op, operand])
            values.append(value)
        problem = " ".join([f"Start with {start}."] + [_PHRASE[op].format(x) for op, x in ops])
        return Task(
            id=f"{SOURCE}/h{horizon}/s{self.seed}-i{index}",
            messages=[{"role": "user", "content": f"{problem}\n{INSTRUCTIONS}"}],
            answer=str(values[-1]),
            meta={"horizon": horizon, "start": start, "ops": ops, "values": values,
                  "source": SOURCE},
            source=SOURCE,
        )

    def set_horizon(self, low: int, high: int | None = None) -> None:
        high = low if high is None else high
        _check_horizon(low, high)
        self.min_horizon, self.max_horizon = low, high

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position, "min_horizon": self.min_horizon,
                "max_horizon": self.max_horizon, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        position = self.check_state(state, {"min_horizon", "max_horizon"})
        self.set_horizon(state["min_horizon"], state["max_horizon"])
        self.position = position

    def make_env(self, task: Task) -> SingleTurnEnv:
        return SingleTurnEnv(task)


def oracle_solution(task: Task) -> str:
    """The teacher's answer: one line per operation ending in the running value, then ``#### x``."""
    value = task.meta["start"]
    lines = []
    for (op, operand), new in zip(task.meta["ops"], task.meta["values"]):
        lines.append(f"{value} {_SYMBOL[op]} {operand} = {new}")
        value = new
    lines.append(f"#### {task.answer}")
    return "\n".join(lines)


def step_labels(task: Task, step_texts: list[str]) -> list[bool]:
    """Exact, absolute correctness of each step of a completion (one label per step text).

    - A final-answer line (it starts with ``####``) is True iff the first number after
      ``####`` equals the task's answer and it comes after a line for every operation (position
      ``i >= horizon``): a right answer given before the chain is done skipped operations.
    - Otherwise line ``i`` (0-based position in ``step_texts``) with ``i < horizon`` is True
      iff the last number on it equals the exact running value after operation ``i``.
    - Lines past the horizon that are not final-answer lines, and lines with no number, are
      False.

    Labels are absolute, not relative to the previous line: after a first mistake, a line
    that applies the next operation correctly to the wrong value is still False (a knock-on
    error), and a line that gets back to the true value is True. Parsing never raises on
    arbitrary text; what cannot be read as a number is simply False.
    """
    values = _meta(task, "values")
    answer = _parse_number(task.answer)
    labels = []
    for i, text in enumerate(step_texts):
        text = text.strip()
        if text.startswith("####"):
            numbers = _numbers(text[4:])
            labels.append(i >= len(values) and bool(numbers) and numbers[0] == answer)
        elif i < len(values):
            numbers = _numbers(text)
            labels.append(bool(numbers) and numbers[-1] == values[i])
        else:
            labels.append(False)
    return labels


# A number not glued to a word or to a preceding decimal point. A minus sign (ASCII or
# U+2212) counts only when no digit or letter precedes it, so "36-4" reads 36 and 4.
_NUMBER = re.compile(
    r"(?<![A-Za-z0-9_.])(?:(?<![A-Za-z0-9_)])[-\u2212])?"
    r"(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?(?![A-Za-z0-9_])"
)
_MAX_DIGITS = 1000


def _numbers(text: str) -> list[Fraction]:
    found = (_parse_number(m.group()) for m in _NUMBER.finditer(text))
    return [x for x in found if x is not None]


def _parse_number(token: str) -> Fraction | None:
    token = token.strip().replace("\u2212", "-").replace(",", "")
    if len(token) > _MAX_DIGITS:
        return None
    try:
        return Fraction(token)
    except (ValueError, ZeroDivisionError):
        return None


def _meta(task: Task, key: str) -> Any:
    if key not in task.meta:
        raise DataError(f"task {task.id} has no meta[{key!r}]: step labels need a chain_math task")
    return task.meta[key]


def _draw_op(rng: random.Random, value: int, cfg: ChainMathConfig) -> tuple[str, int]:
    candidates = list(cfg.ops)
    rng.shuffle(candidates)
    first = None
    for op in candidates:
        operand = rng.randint(*(cfg.mul_range if op == "multiply" else cfg.operand_range))
        if first is None:
            first = (op, operand)
        if cfg.max_abs_value is None or abs(_apply(op, value, operand)) <= cfg.max_abs_value:
            return op, operand
    assert first is not None
    return first


def _apply(op: str, value: int, operand: int) -> int:
    if op == "add":
        return value + operand
    if op == "subtract":
        return value - operand
    return value * operand


def _check_horizon(low: Any, high: Any) -> None:
    for name, value in (("min_horizon", low), ("max_horizon", high)):
        if not is_int(value) or not MIN_HORIZON <= value <= MAX_HORIZON:
            raise ConfigError(
                f"config key 'env.{name}': {value!r} must be in {MIN_HORIZON}..{MAX_HORIZON} "
                "(chain_math's horizon: operations per task)"
            )
    if low > high:
        raise ConfigError(
            f"config key 'env.max_horizon': must be >= env.min_horizon ({low}), got {high}"
        )


def _check_range(name: str, value: Any, low_bound: int | None) -> tuple[int, int]:
    ok = (isinstance(value, (list, tuple)) and len(value) == 2 and all(map(is_int, value))
          and value[0] <= value[1])
    if not ok:
        raise ConfigError(
            f"config key 'env.{name}': {value!r}: use a pair of integers [low, high] with low <= high"
        )
    if low_bound is not None and value[0] < low_bound:
        raise ConfigError(f"config key 'env.{name}': {value!r}: values must be >= {low_bound}")
    return (value[0], value[1])


SPEC = EnvSpec(
    name=SOURCE,
    options=ChainMathConfig,
    make_source=ChainMathSource,
    verifier=MathVerifier(),
    format_score=format_score,
    step_labels=step_labels,
    oracle=oracle_solution,
)
