"""What went wrong first in a chain_math completion: a taxonomy of long-horizon failures.

``step_labels`` says which lines are right; this module says *how* the first wrong one is
wrong, which is what separates a horizon failure (losing the place in the operation list,
stopping early) from an arithmetic one. Kinds, checked line by line against the problem:

- ``stopped_early``: every written line is right but fewer lines than operations;
- ``unreadable_line``: a line that is not ``a <op> b = c``;
- ``lost_value``: the line does not start from the running value;
- ``skipped_op`` / ``repeated_op`` / ``wrong_op``: the running value is right but the
  operation is the next one in the list / the previous one / another one;
- ``arithmetic``: the right operation on the right value, with a wrong result;
- ``extra_lines``: every operation right, then more calculation lines;
- ``final_line``: every line right, but no ``#### <value>`` line with the final value;
- ``none``: nothing wrong.

``step_hazard`` turns first errors into a hazard by position in the chain, per horizon: of the
completions still right before operation j, the share that go wrong at j.

The problem is read back from the prompt text (``Start with 7. Add 5. Multiply by 3.``), so
saved completions can be classified without the task stream that made them.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable, Mapping

from envs.chain_math import _SYMBOL as _OP_SYMBOL
from envs.chain_math import _apply, step_labels
from rl.types import Task, split_steps

KINDS = ("stopped_early", "unreadable_line", "lost_value", "skipped_op", "repeated_op", "wrong_op",
         "arithmetic", "extra_lines", "final_line", "none")

_START = re.compile(r"Start with (-?\d+)\.")
_OP = re.compile(r"(Add|Subtract|Multiply by) (-?\d+)\.")
_OP_NAME = {"Add": "+", "Subtract": "-", "Multiply by": "*"}
_LINE = re.compile(r"^\s*(-?\d+)\s*([-+*x×−])\s*(-?\d+)\s*=\s*(-?\d+)\s*$")
_SYMBOL = {"−": "-", "x": "*", "×": "*"}
_FINAL = re.compile(r"^\s*####\s*(-?\d+)")
_SYMBOL_OP = {symbol: op for op, symbol in _OP_SYMBOL.items()}  # "+" -> "add": chain_math's _apply


def parse_problem(prompt: str) -> tuple[int, list[tuple[str, int]]]:
    """``(start, [(symbol, operand), ...])`` read from a chain_math prompt; ValueError if it has none."""
    problem = prompt.split("\n", 1)[0]
    start = _START.search(problem)
    if start is None:
        raise ValueError(f"not a chain_math prompt (no 'Start with N.'): {problem[:80]!r}")
    ops = [(_OP_NAME[name], int(x)) for name, x in _OP.findall(problem[start.end():])]
    return int(start.group(1)), ops


def first_error(prompt: str, completion: str) -> tuple[str, int]:
    """``(kind, line)``: the first thing wrong in ``completion`` (a name from ``KINDS``) and the
    0-based calculation line where it happens (the number of operations for ``extra_lines``,
    ``final_line`` and ``none``)."""
    value, ops = parse_problem(prompt)
    lines = [s for s in completion.splitlines() if s.strip()]
    calc = [s for s in lines if not s.lstrip().startswith("####")]
    for j, (symbol, operand) in enumerate(ops):
        if j >= len(calc):
            return "stopped_early", j
        m = _LINE.match(calc[j])
        if m is None:
            return "unreadable_line", j
        left, right, result = int(m.group(1)), int(m.group(3)), int(m.group(4))
        sym = _SYMBOL.get(m.group(2), m.group(2))
        if left != value:
            return "lost_value", j
        if (sym, right) != (symbol, operand):
            if j + 1 < len(ops) and (sym, right) == ops[j + 1]:
                return "skipped_op", j
            if j > 0 and (sym, right) == ops[j - 1]:
                return "repeated_op", j
            return "wrong_op", j
        value = _apply(_SYMBOL_OP[symbol], value, operand)
        if result != value:
            return "arithmetic", j
    if len(calc) > len(ops):
        return "extra_lines", len(ops)
    finals = [m for m in map(_FINAL.match, lines) if m]
    if not finals or int(finals[-1].group(1)) != value:
        return "final_line", len(ops)
    return "none", len(ops)


def every_step_right(prompt: str, completion: str) -> bool:
    """Whether every step of ``completion`` gets chain_math's exact step label (``step_labels``,
    the labels ``horizon eval``'s all-steps curve and ``reward.outcome: all_steps`` use) and it
    ends in a ``#### <value>`` line: a line per operation with the right running value, then the
    right answer. A solved completion for which this is False reached the answer by luck. The
    labels judge the running value a line ends in, not its working: ``22 + 8 = 29`` where the
    operation is ``+ 7`` is a right step here and a ``wrong_op`` to ``first_error``."""
    value, ops = parse_problem(prompt)
    values = []
    for symbol, operand in ops:
        value = _apply(_SYMBOL_OP[symbol], value, operand)
        values.append(value)
    steps = split_steps(completion)
    task = Task(id="", messages=[], answer=str(value), meta={"values": values})
    return bool(steps) and steps[-1].startswith("####") and all(step_labels(task, steps))


def row_all_steps_right(row: Mapping) -> bool:
    """``every_step_right`` of a kept completion row (``horizon eval``'s ``completions/*.jsonl``):
    the eval's own stored ``all_steps_right`` where it kept one, else read off the text."""
    stored = row.get("all_steps_right")
    return bool(stored) if stored is not None else every_step_right(row["prompt"], row["completion"])


def step_hazard(rows: Iterable[Mapping], horizons: set[int] | None = None) -> dict[int, dict[int, dict]]:
    """``{horizon: {j: {"at_risk", "failed", "hazard"}}}`` for operation positions j = 1 .. horizon:
    of the completions at that horizon (solved or not) whose lines 1 .. j - 1 are right, how many
    have their first error at line j (``first_error``'s line; an error after the last operation,
    ``extra_lines`` or ``final_line``, is not a step's). Kept per horizon, not pooled: op 3 of an
    8-step problem can fail far more often than op 3 of a 4-step one."""
    at_risk: Counter[tuple[int, int]] = Counter()
    failed: Counter[tuple[int, int]] = Counter()
    for row in rows:
        h = int(row["horizon"])
        if horizons and h not in horizons:
            continue
        kind, line = first_error(row["prompt"], row["completion"])
        wrong_step = kind not in ("none", "extra_lines", "final_line")
        for j in range(1, line + (2 if wrong_step else 1)):  # without a wrong step, line = the op count
            at_risk[h, j] += 1
        if wrong_step:
            failed[h, line + 1] += 1
    out: dict[int, dict[int, dict]] = {}
    for (h, j), n in sorted(at_risk.items()):
        out.setdefault(h, {})[j] = {"at_risk": n, "failed": failed[h, j], "hazard": failed[h, j] / n}
    return out
