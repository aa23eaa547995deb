"""Final-answer verification for math-like tasks: equivalence and the outcome verifier.

Shared by every env whose reference answer is a number or a formula (chain_math,
question/answer datasets, ...). Reading what the model wrote (tags, boxes, Unicode, thousands
separators, units, percent) lives in ``rewards.answer_formats``; its public names are
re-exported here.

- ``extract_answer``: the final answer stated in a text (``<answer>`` tags first, then the
  last of ``\\boxed{...}``, ``#### x``, "the answer is x"); see ``rewards.answer_formats``.
- ``answers_equivalent``: exact rational comparison when both sides read as numbers, else
  ``math-verify`` (LaTeX, sets, intervals, ...), else a guarded sympy comparison.
- ``format_score``: the format term for ``#### x`` / ``\\boxed{...}`` on the last line;
  ``TagFormat``: the format term for ``<think>...</think><answer>...</answer>``.
- ``MathVerifier``: the verifier callable ``(task, episode) -> Outcome``.

Example::

    extract_answer("7 + 5 = 12\\n#### 12")           # "12"
    answers_equivalent("\\\\frac{1}{2}", "0.5")       # True
    answers_equivalent("50%", "0.5")                 # True (see PercentPolicy)
    MathVerifier()(task, episode)                    # Outcome(score=1.0, correct=True, ...)
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Literal

import math_verify
import sympy
from sympy.parsing.sympy_parser import (
    convert_xor,
    implicit_multiplication_application,
    parse_expr,
    standard_transformations,
)

from rewards.answer_formats import (
    NumericAnswer,
    TagFormat,
    extract_answer,
    format_score,
    normalize_unicode,
    parse_number,
)
from rl.errors import VerifierError
from rl.types import Episode, Outcome, Task

__all__ = ["MathVerifier", "NumericAnswer", "PercentPolicy", "TagFormat", "answers_equivalent",
           "extract_answer", "format_score", "normalize_unicode", "parse_number"]

_TIMEOUT_S = 5  # math-verify's own per-call timeout; usable only in the main thread

PercentPolicy = Literal["either", "value", "number"]
"""How ``p%`` on one side compares with a number without ``%`` on the other. (When both
sides carry ``%``, or neither does, the written numbers are compared: ``50%`` is ``50 %``,
not ``0.5%``.)

- ``"either"`` (default): ``p%`` equals ``p`` and ``p/100``; ``50%`` matches gold ``50`` (the
  question asked "what percent") and gold ``0.5`` (it asked for a fraction). The question is
  not known here, so both readings are accepted; ``50%`` never matches ``5`` or ``0.05``.
- ``"value"``: ``p%`` is the number ``p/100`` only (``50%`` = ``0.5`` = ``1/2``, not ``50``).
- ``"number"``: the sign is ignored (``50%`` = ``50`` only).
"""
_PERCENT_POLICIES = ("either", "value", "number")


def answers_equivalent(pred: str, gold: str, *, percent: PercentPolicy = "either") -> bool:
    """Whether the predicted answer equals the gold answer (both are extracted answers).

    Both sides are first passed through ``normalize_unicode``. Never raises on model text.

    1. Both read as numbers by ``parse_number`` (thousands separators, ``1.5e3``,
       ``\\frac{3}{4}``, mixed numbers, units, currency, ...): exact rational equality, so
       ``0.33`` is not ``1/3``, ``1,234`` is ``1234`` and not ``1.234``; a percentage on one
       side only is compared by ``percent`` (``PercentPolicy``).
    2. Identical strings after whitespace normalisation: equal.
    3. ``math_verify.parse`` on each side, wrapped in ``$...$`` when it has no math
       delimiters (a bare ``2*w`` would parse as ``2``), then ``math_verify.verify``; a side
       that reads as a number (no ``%``) is given to it as an exact ``\\frac{p}{q}``. Its
       signal-based timeouts are used only in the main thread, so a side whose value could
       explode (``99999!``, ``\\binom{10^8}{..}``, ``10^{10^{10}}``, a 4-digit exponent) skips
       math-verify and goes to step 4.
    4. When math-verify yields no expression for a side: sympy, on strings made only of
       numbers, operators, one-letter symbols and a few function names, with huge powers
       refused; a string sympy cannot parse counts as not equal.
    """
    if percent not in _PERCENT_POLICIES:
        raise ValueError(f"percent must be one of {_PERCENT_POLICIES}, got {percent!r}")
    if not isinstance(pred, str) or not isinstance(gold, str):
        return False
    pred, gold = normalize_unicode(pred), normalize_unicode(gold)
    pred_num, gold_num = parse_number(pred), parse_number(gold)
    if pred_num is not None and gold_num is not None:
        return _numbers_match(pred_num, gold_num, percent)
    if " ".join(pred.split()) == " ".join(gold.split()):
        return bool(pred.strip())
    pred, gold = _exact_latex(pred, pred_num), _exact_latex(gold, gold_num)
    if _EXPLOSIVE.search(pred) or _EXPLOSIVE.search(gold):
        return _sympy_equal(pred, gold)
    timeout = _TIMEOUT_S if threading.current_thread() is threading.main_thread() else None
    gold_parsed = math_verify.parse(_as_latex(gold), parsing_timeout=timeout)
    pred_parsed = math_verify.parse(_as_latex(pred), parsing_timeout=timeout)
    if _has_expr(gold_parsed) and _has_expr(pred_parsed):
        return math_verify.verify(gold_parsed, pred_parsed, timeout_seconds=timeout)
    return _sympy_equal(pred, gold)


@dataclass(frozen=True)
class MathVerifier:
    """Outcome verifier: the final answer of the episode's last turn against ``task.answer``.

    Score 1.0 when equivalent, else 0.0 (also when no answer was found: ``extracted`` is
    None). ``answer_tag`` is the tag ``extract_answer`` reads first (None: no tags);
    ``percent`` is the ``PercentPolicy``. Raises ``VerifierError`` on a task without a
    reference answer; other failures propagate for the caller to record on the episode.
    """

    answer_tag: str | None = "answer"
    percent: PercentPolicy = "either"

    def __post_init__(self) -> None:
        if self.percent not in _PERCENT_POLICIES:
            raise ValueError(f"MathVerifier.percent must be one of {_PERCENT_POLICIES}, "
                             f"got {self.percent!r}")

    def __call__(self, task: Task, episode: Episode) -> Outcome:
        gold = task.answer.strip()
        if not gold:
            raise VerifierError(f"task {task.id} has an empty answer: MathVerifier needs one")
        extracted = extract_answer(episode.final_text, answer_tag=self.answer_tag)
        correct = extracted is not None and answers_equivalent(extracted, gold,
                                                               percent=self.percent)
        return Outcome(score=1.0 if correct else 0.0, correct=correct,
                       details={"extracted": extracted, "gold": gold})


_EXPLOSIVE = re.compile(r"\d{5,}\s*!|\\binom\s*\{?\s*\d{5,}|\^\s*\{[^{}]*\^|\^\s*\([^()]*\^"
                        r"|\^\s*\d+\s*\^|(?:\^|\*\*)\s*[{(]?\s*[+-]?\d{4,}")


def _numbers_match(a: NumericAnswer, b: NumericAnswer, percent: PercentPolicy) -> bool:
    if a.percent == b.percent:
        return a.number == b.number
    p, x = (a, b) if a.percent else (b, a)
    readings = {"either": (p.number, p.value), "value": (p.value,), "number": (p.number,)}
    return x.number in readings[percent]


def _exact_latex(s: str, num: NumericAnswer | None) -> str:
    if num is None or num.percent:
        return s
    v = num.number
    if v.denominator == 1:
        return str(v.numerator)
    sign = "-" if v < 0 else ""
    return f"{sign}\\frac{{{abs(v.numerator)}}}{{{v.denominator}}}"


def _as_latex(s: str) -> str:
    if any(mark in s for mark in ("$", "\\boxed", "\\(", "\\[")):
        return s
    return f"${s}$"


def _has_expr(parsed: list) -> bool:
    return any(isinstance(p, (sympy.Basic, sympy.MatrixBase)) for p in parsed)


_SAFE_TOKENS = re.compile(r"(?:\s+|[0-9]+(?:\.[0-9]+)?|\.[0-9]+|[A-Za-z]+|[-+*/^()])*")
_NAMES = re.compile(r"[A-Za-z]+")
_FUNCTIONS = {"sqrt", "pi", "exp", "log", "sin", "cos", "tan"}
_MAX_EXPR_CHARS = 200
_MAX_EXPONENT = 1000
_TRANSFORMS = standard_transformations + (implicit_multiplication_application, convert_xor)


def _sympy_equal(pred: str, gold: str) -> bool:
    a, b = _safe_sympy(pred), _safe_sympy(gold)
    if a is None or b is None:
        return False
    try:
        return bool(sympy.simplify(a - b) == 0)
    except (TypeError, ValueError, AttributeError, NotImplementedError):
        return False


def _safe_sympy(s: str) -> sympy.Expr | None:
    """``s`` as a sympy expression, or None when it is not a small, safe formula.

    ``parse_expr`` evaluates Python, so only numbers, operators, one-letter names and a few
    function names get through; powers with huge or nested exponents are refused.
    """
    s = s.strip().strip("$").strip()
    if not s or len(s) > _MAX_EXPR_CHARS or not _SAFE_TOKENS.fullmatch(s):
        return None
    if any(len(n) > 1 and n not in _FUNCTIONS for n in _NAMES.findall(s)):
        return None
    try:
        expr = parse_expr(s, transformations=_TRANSFORMS, evaluate=False)
        # Children come before parents, so an exponent's own powers are checked before it
        # is evaluated: 9^(9^9) is refused without computing 9^9^9.
        for node in sympy.postorder_traversal(expr):
            if isinstance(node, sympy.Pow) and node.exp.is_number:
                if abs(node.exp.doit()) > _MAX_EXPONENT:
                    return None
        return expr.doit()
    except Exception:  # sympy raises many types on malformed input: not a formula
        return None
