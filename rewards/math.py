"""Final-answer verification for math-like tasks: extraction, equivalence, format.

Shared by every env whose reference answer is a number or a formula (chain_math,
question/answer datasets, ...).

- ``extract_answer``: the last final answer in the text: ``\\boxed{...}``, ``#### x`` or
  "the answer is x" / "Answer: x".
- ``answers_equivalent``: exact rational comparison when both sides are plain numbers, else
  ``math-verify`` (LaTeX, sets, intervals, ...), else a guarded sympy comparison.
- ``format_score``: the separate format reward term (1.0 when the text ends in ``#### x`` or
  ``\\boxed{...}``).
- ``MathVerifier``: the verifier callable ``(task, episode) -> Outcome``.

Example::

    extract_answer("7 + 5 = 12\\n#### 12")           # "12"
    answers_equivalent("\\\\frac{1}{2}", "0.5")       # True
    MathVerifier()(task, episode)                    # Outcome(score=1.0, correct=True, ...)
"""

from __future__ import annotations

import re
import threading
from fractions import Fraction

import math_verify
import sympy
from sympy.parsing.sympy_parser import (
    convert_xor,
    implicit_multiplication_application,
    parse_expr,
    standard_transformations,
)

from rl.errors import VerifierError
from rl.types import Episode, Outcome, Task

_TIMEOUT_S = 5  # math-verify's own per-call timeout; usable only in the main thread


def extract_answer(text: str) -> str | None:
    """The last final answer in ``text``, or None when it states none. Never raises.

    Accepted forms, the one that starts last wins: ``\\boxed{...}`` / ``\\fbox{...}`` (nested
    braces; an unclosed box is ignored), ``#### x`` (x runs to the end of the line), and
    "answer is x" / "answer: x" (case-insensitive; x runs to the end of the line or of the
    sentence). Surrounding whitespace, markdown bold and a trailing full stop are removed.
    """
    candidates: list[tuple[int, str]] = []
    closing = _matching_braces(text)
    for m in _BOXED.finditer(text):
        end = closing.get(m.end() - 1)
        if end is not None:
            candidates.append((m.start(), text[m.end():end]))
    for m in _HASHES.finditer(text):
        candidates.append((m.start(), m.group(1)))
    for m in _ANSWER_IS.finditer(text):
        candidates.append((m.start(), _cut_sentence(m.group(1))))
    for _, raw in sorted(candidates, key=lambda c: c[0], reverse=True):
        answer = _clean(raw)
        if answer:
            return answer
    return None


def answers_equivalent(pred: str, gold: str) -> bool:
    """Whether the predicted answer equals the gold answer (both are extracted answers).

    1. Both plain numbers (integers, decimals, ``a/b``, thousands commas, unicode minus):
       exact rational equality, so ``0.33`` is not ``1/3``.
    2. Identical strings after whitespace normalisation: equal.
    3. ``math_verify.parse`` on each side, wrapped in ``$...$`` when it has no math
       delimiters (a bare ``2*w`` would parse as ``2``), then ``math_verify.verify``. Its
       signal-based timeouts are used only in the main thread.
    4. When math-verify yields no expression for a side: sympy, on strings made only of
       numbers, operators, one-letter symbols and a few function names, with huge powers
       refused; a string sympy cannot parse counts as not equal.
    """
    pred_num, gold_num = _as_number(pred), _as_number(gold)
    if pred_num is not None and gold_num is not None:
        return pred_num == gold_num
    if " ".join(pred.split()) == " ".join(gold.split()):
        return bool(pred.strip())
    timeout = _TIMEOUT_S if threading.current_thread() is threading.main_thread() else None
    gold_parsed = math_verify.parse(_as_latex(gold), parsing_timeout=timeout)
    pred_parsed = math_verify.parse(_as_latex(pred), parsing_timeout=timeout)
    if _has_expr(gold_parsed) and _has_expr(pred_parsed):
        return math_verify.verify(gold_parsed, pred_parsed, timeout_seconds=timeout)
    return _sympy_equal(pred, gold)


def format_score(text: str) -> float:
    """1.0 when the last non-empty line holds a final answer as ``#### x`` (x non-empty) or a
    closed ``\\boxed{...}``, else 0.0. Text after the final answer line costs the point."""
    lines = [line for line in text.split("\n") if line.strip()]
    if not lines:
        return 0.0
    last = lines[-1]
    if any(m.group(1).strip() for m in _HASHES.finditer(last)):
        return 1.0
    closing = _matching_braces(last)
    return 1.0 if any(m.end() - 1 in closing for m in _BOXED.finditer(last)) else 0.0


class MathVerifier:
    """Outcome verifier: the last final answer of the episode's last turn against ``task.answer``.

    Score 1.0 when equivalent, else 0.0 (also when no answer was found: ``extracted`` is
    None). Raises ``VerifierError`` on a task without a reference answer; other failures
    propagate for the caller to record on the episode.
    """

    def __call__(self, task: Task, episode: Episode) -> Outcome:
        gold = task.answer.strip()
        if not gold:
            raise VerifierError(f"task {task.id} has an empty answer: MathVerifier needs one")
        extracted = extract_answer(episode.final_text)
        correct = extracted is not None and answers_equivalent(extracted, gold)
        return Outcome(score=1.0 if correct else 0.0, correct=correct,
                       details={"extracted": extracted, "gold": gold})


_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_HASHES = re.compile(r"#{4,}[ \t]*([^\n]*)")
_ANSWER_IS = re.compile(r"\banswer\b[ \t]*(?:\bis\b[ \t]*:?|:)[ \t]*([^\n]*)", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.;!?](?=\s|$)")


def _matching_braces(text: str) -> dict[int, int]:
    """Index of each ``{`` that is closed -> index of its ``}`` (one linear pass)."""
    stack: list[int] = []
    pairs: dict[int, int] = {}
    for i, ch in enumerate(text):
        if ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            pairs[stack.pop()] = i
    return pairs


def _cut_sentence(s: str) -> str:
    s = s.strip()
    for opener, closer in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(opener):
            end = s.find(closer, len(opener))
            return s[len(opener):end] if end > 0 else s[len(opener):]
    m = _SENTENCE_END.search(s)
    return s[: m.start()] if m else s


def _clean(s: str) -> str:
    s = s.strip()
    while s.startswith("**") and s.endswith("**") and len(s) >= 4:
        s = s[2:-2].strip()
    return s.rstrip(".").strip()


_PLAIN_NUMBER = re.compile(r"[+-]?(?:(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?|\.[0-9]+)")
_MAX_DIGITS = 1000


def _as_number(s: str) -> Fraction | None:
    s = s.strip().replace("\u2212", "-")
    if s.startswith("$") and s.endswith("$"):
        s = s.strip("$").strip()
    if len(s) > _MAX_DIGITS:
        return None
    parts = s.split("/")
    if len(parts) > 2 or not all(_PLAIN_NUMBER.fullmatch(p.strip()) for p in parts):
        return None
    try:
        return Fraction(*(Fraction(p.strip().replace(",", "")) for p in parts))
    except (ValueError, ZeroDivisionError):
        return None


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
