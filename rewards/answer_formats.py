"""How models write final answers: extraction, Unicode clean-up, exact numbers, format rewards.

Pure string work, no sympy and no math-verify (``rewards.math`` compares what this module
reads). Every public function takes arbitrary model text and never raises on it.

- ``normalize_unicode(text)``: Unicode digits, minus signs, spaces, full-width forms,
  superscripts and vulgar fractions as ASCII.
- ``extract_answer(text)``: the final answer the text states (``<answer>`` tags, ``\\boxed{}``,
  ``#### x``, "the answer is x"), or None.
- ``parse_number(s)``: an extracted answer read as an exact number (thousands separators,
  scientific notation, fractions, mixed numbers, percent, currency and units), or None.
- ``format_score(text)``: 1.0 when the last line holds ``#### x`` or ``\\boxed{...}``.
- ``TagFormat``: the R1-style ``<think>...</think><answer>...</answer>`` format reward.

Example::

    extract_answer("<think>6*7</think><answer>$\\boxed{42}$</answer>")  # "42"
    parse_number("1 234 567 cm").number                               # Fraction(1234567, 1)
    parse_number("1.5 \\times 10^{3}").number                          # Fraction(1500, 1)
    parse_number("50%")                     # NumericAnswer(number=Fraction(50, 1), percent=True)
    TagFormat(mode="lenient")("<think>a</think>b <answer>4</answer>")  # 0.75
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Literal

# ---------------------------------------------------------------------------------------------
# Unicode


def normalize_unicode(text: str) -> str:
    """``text`` with the Unicode forms of numbers rewritten in ASCII; other text unchanged.

    - decimal digits of any script (full-width ``０-９``, Arabic-Indic ``٠-٩``, Devanagari, ...)
      become ``0-9``; the Arabic decimal and thousands separators become ``.`` and ``,``;
    - minus signs and dashes used as minus (``−`` U+2212, ``‒`` U+2012, ``–`` U+2013, ``‐``,
      ``‑``, ``﹣``, ``－``) become ``-`` (the em dash is left alone: it is punctuation);
    - no-break, thin, figure and ideographic spaces become a space; zero-width spaces go;
    - full-width ASCII forms (``＃``, ``／``, ``％``, ...) become their ASCII letters;
    - superscript runs become ``^{...}`` (``10⁻³`` -> ``10^{-3}``, ``cm²`` -> ``cm^{2}``);
    - vulgar fractions become ``a/b`` (``3½`` -> ``3 1/2``), the fraction slash and ``÷``
      become ``/``.
    """
    if text.isascii():
        return text
    out: list[str] = []
    superscript: list[str] = []
    for ch in text:
        sup = _SUPERSCRIPTS.get(ch)
        if sup is not None:
            superscript.append(sup)
            continue
        if superscript:
            out.append("^{" + "".join(superscript) + "}")
            superscript.clear()
        mapped = _map_char(ch)
        if ch in _VULGAR and out and out[-1][-1:].isdigit():
            mapped = " " + mapped
        out.append(mapped)
    if superscript:
        out.append("^{" + "".join(superscript) + "}")
    return "".join(out)


_MINUS = dict.fromkeys("\u2212\u2012\u2013\u2010\u2011\ufe63\uff0d", "-")
_SPACES = dict.fromkeys("\u00a0\u2007\u2008\u2009\u200a\u202f\u205f\u3000", " ")
_SUPERSCRIPTS = {"\u2070": "0", "\u00b9": "1", "\u00b2": "2", "\u00b3": "3", "\u2074": "4",
                 "\u2075": "5", "\u2076": "6", "\u2077": "7", "\u2078": "8", "\u2079": "9",
                 "\u207a": "+", "\u207b": "-"}
_VULGAR = {"½": "1/2", "⅓": "1/3", "⅔": "2/3", "¼": "1/4", "¾": "3/4", "⅕": "1/5",
           "⅖": "2/5", "⅗": "3/5", "⅘": "4/5", "⅙": "1/6", "⅚": "5/6", "⅛": "1/8",
           "⅜": "3/8", "⅝": "5/8", "⅞": "7/8"}
_OTHER = {"\u066b": ".", "\u066c": ",", "\u2044": "/", "\u00f7": "/", "\u200b": "", "\ufeff": ""}


@lru_cache(maxsize=4096)
def _map_char(ch: str) -> str:
    for table in (_MINUS, _SPACES, _VULGAR, _OTHER):
        if ch in table:
            return table[ch]
    if unicodedata.category(ch) == "Nd":
        return str(unicodedata.decimal(ch))
    if "\uff01" <= ch <= "\uff5e":  # full-width ASCII block
        return chr(ord(ch) - 0xFEE0)
    return ch


# ---------------------------------------------------------------------------------------------
# Extraction


def extract_answer(text: str, *, answer_tag: str | None = "answer") -> str | None:
    """The final answer stated in ``text``, or None when it states none. Never raises.

    The text is first passed through ``normalize_unicode``. Precedence:

    1. ``<answer>...</answer>`` (tag name ``answer_tag``; None disables this step): the last
       block with non-blank content wins, over every form outside the tags. An ``<answer>``
       that is never closed (a stop string cut ``</answer>`` off) runs to the end of the text.
       Inside the block, a form of step 2 is read if there is one (``<answer>\\boxed{5}</answer>``
       is ``5``), else the whole block is the answer.
    2. Otherwise the form that starts last in the text wins among:
       ``\\boxed{...}`` / ``\\fbox{...}`` (nested braces; an unclosed box is ignored),
       ``#### x`` (x runs to the end of the line), and "answer is x" / "answer: x" /
       "final answer: x" / "the answer to (b) is x" (case-insensitive; x runs to the end of
       the sentence or line, or is the next line when the marker ends its line). So
       ``\\boxed{1} ... the answer is 2`` gives ``2``, and ``the answer is \\boxed{3}`` gives
       ``3``. An "answer is" that judges rather than states (``this answer is correct``,
       ``the answer is not 5``) is no answer.

    Empty candidates (``\\boxed{}``, ``#### ``, ``<answer> </answer>``) are skipped, so an
    earlier non-empty one wins. Surrounding whitespace, markdown bold, a trailing full stop
    and a ``$...$`` around an "answer is" value are removed; nothing else (units,
    thousands separators) is: ``answers_equivalent`` / ``parse_number`` read those.
    """
    if not isinstance(text, str):
        return None
    text = normalize_unicode(text)
    if answer_tag:
        for block in reversed(_answer_blocks(text, answer_tag)):
            answer = _extract_marked(block) or _clean(block)
            if answer:
                return answer
    return _extract_marked(text)


def _answer_blocks(text: str, tag: str) -> list[str]:
    """The text after each ``<tag>`` up to the next ``</tag>`` (or the end), in order."""
    opener, closer = f"<{tag}>", f"</{tag}>"
    blocks: list[str] = []
    for m in re.finditer(re.escape(opener), text):
        end = text.find(closer, m.end())
        blocks.append(text[m.end():] if end < 0 else text[m.end():end])
    return blocks


def _extract_marked(text: str) -> str | None:
    candidates: list[tuple[int, str]] = []
    closing = _matching_braces(text)
    for m in _BOXED.finditer(text):
        end = closing.get(m.end() - 1)
        if end is not None:
            candidates.append((m.start(), text[m.end():end]))
    for m in _HASHES.finditer(text):
        candidates.append((m.start(), m.group(1)))
    for m in _ANSWER_IS.finditer(text):
        value = m.group(1)
        if not value.strip(" \t*"):  # "**Final answer:**\n\n42": the value is on the next line
            nxt = _NEXT_LINE.match(text, m.end())
            value = nxt.group(1) if nxt else ""
        value = _cut_sentence(value)
        if not _VERDICT.match(value):
            candidates.append((m.start(), value))
    for _, raw in sorted(candidates, key=lambda c: c[0], reverse=True):
        answer = _clean(raw)
        if answer:
            return answer
    return None


_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_HASHES = re.compile(r"#{4,}[ \t]*([^\n]*)")
_FILLER = r"(?:(?:therefore|thus|hence|so|simply|just|then|now|exactly|clearly|indeed)\b[ \t,]*)*"
_ANSWER_IS = re.compile(
    r"\banswer\b(?:\*\*)?(?:[^\S\n]+(?:to|for|of)\b[^\n.:]{0,40}?)?[ \t]*"
    r"(?:\bis\b[ \t]*:?|:)[ \t]*(?:\*\*)?[ \t]*" + _FILLER + r"([^\n]*)",
    re.IGNORECASE)
_NEXT_LINE = re.compile(r"[ \t]*\n(?:[ \t]*\n)?[ \t]*([^\n]*)")
_VERDICT = re.compile(
    r"\W*(?:correct|incorrect|right|wrong|not|no longer|that|consistent|inconsistent|"
    r"reasonable|plausible|valid|invalid|confirmed|verified|unclear|likely|unlikely|"
    r"probably|close|off|missing|unknown|as follows|below|above)\b", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.;!?](?=\s|$)|,\s+(?=(?:which|since|because|so|as|and|but|"
                           r"or|that|where|meaning|i\.e\.)\b)")


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
    prev = None
    while s != prev:
        prev = s
        s = s.strip()
        s = s.removeprefix("**").removesuffix("**")
        if s.endswith(".") and not s.endswith(".."):
            s = s[:-1]
    return s


# ---------------------------------------------------------------------------------------------
# Exact numbers
#
# Written by hand rather than left to math-verify because, for numbers, math-verify (0.9)
# compares floats with a tolerance (0.3333333 "equals" 1/3), reads `1\,234\,567` and
# `1 234 567` as 1+234+567, `1.5e3` as 1.5*e*3 and `3 1/2` as 2, knows no Unicode digits,
# and has no unit-word stripping outside \text{}. Formulas stay with math-verify.


@dataclass(frozen=True)
class NumericAnswer:
    """A number as written: ``number`` exactly, ``percent`` when it carried ``%``/"percent".

    ``value`` is the quantity it denotes (``number / 100`` for a percentage).
    """

    number: Fraction
    percent: bool = False

    @property
    def value(self) -> Fraction:
        return self.number / 100 if self.percent else self.number


def parse_number(s: str) -> NumericAnswer | None:
    """``s`` (an extracted answer) read as one exact number, or None when it is not one.

    Read: a sign (any Unicode minus), digits of any script, thousands separators used
    consistently with groups of three (``1,234,567``, ``1 234 567`` with any space or LaTeX
    ``\\,``, ``1_000``, ``1{,}000``; the first group has 1-3 digits and no leading zero, so
    ``1,2`` and ``0,123`` are not numbers), decimals (``1,234.5``; a decimal comma is not
    read), scientific notation (``1.5e3``, ``1.5×10^3``, ``1.5 \\times 10^{3}``,
    ``1.5\\cdot10^{-3}``, ``2*10**3``; exponents up to 400), fractions (``3/4``,
    ``\\frac{3}{4}``, ``\\dfrac``, ``\\tfrac``, ``\\frac34``), mixed numbers (``3 1/2``,
    ``3\\frac{1}{2}``, ``-3 1/2`` = -7/2; when ``1 100/200`` could also be 1100/200 it is not
    read), a trailing ``%`` / ``\\%`` / "percent" (``percent=True``), a currency sign before or
    after (``$12``, ``\\$12``, ``12€``), a leading ``x =``, and up to three trailing unit words
    (``12 cm``, ``12 dollars``, ``12\\text{ cm}^2``, ``9.8 m/s^2``, ``90^\\circ``). Unit words
    have two or more letters, or are one of m g s h L V W J; math names (pi, sqrt, e, i, ...)
    and connectives (and, or, plus, ...) are not units, so ``2 pi`` and ``5 x`` are not numbers.
    Wrappers are removed first: ``$...$``, ``\\(...\\)``, ``\\[...\\]``, a whole ``\\boxed{}``,
    markdown bold, ``\\text{}``/``\\mathrm{}``.
    """
    if not isinstance(s, str) or len(s) > _MAX_CHARS:
        return None
    s = _unwrap(normalize_unicode(s))
    s = _latex_to_plain(s)
    s = _ASSIGNMENT.sub("", s, count=1).strip()
    percent = False
    if m := _PERCENT.search(s):
        s, percent = s[: m.start()].rstrip(), True
    s = _strip_unit(s)
    sign = 1
    if s.startswith(("+", "-")):
        sign, s = (-1 if s[0] == "-" else 1), s[1:].lstrip()
    s = _CURRENCY_BEFORE.sub("", s, count=1)
    if s.startswith(("+", "-")) and sign == 1:
        sign, s = (-1 if s[0] == "-" else 1), s[1:].lstrip()
    s = _CURRENCY_AFTER.sub("", s, count=1)
    number = _read_unsigned(s)
    return None if number is None else NumericAnswer(sign * number, percent)


_MAX_CHARS = 1000
_MAX_EXPONENT = 400
_DECIMAL = (r"(?:(?:[1-9]\d{0,2}(?:,\d{3})+|[1-9]\d{0,2}(?: \d{3})+|[1-9]\d{0,2}(?:_\d{3})+|\d+)"
            r"(?:\.\d+)?|\.\d+)")


def _power_of_ten(k: str) -> str:
    """``10^3``, ``10^{-3}``, ``10^(3)``, ``10**3``; the exponent in a group named ``e{k}*``."""
    return (rf"10\s*(?:\^|\*\*)\s*(?:\{{\s*(?P<e{k}a>[+-]?\d+)\s*\}}|\(\s*(?P<e{k}b>[+-]?\d+)\s*\)"
            rf"|(?P<e{k}c>[+-]?\d+))")


_SCI = re.compile(rf"(?P<m>{_DECIMAL})(?:[eE](?P<e0>[+-]?\d+)|\s*[×x*·⋅]\s*{_power_of_ten(1)})?"
                  rf"|{_power_of_ten(2)}")
_FRACTION = re.compile(rf"(?P<a>{_DECIMAL})\s*/\s*(?P<b>{_DECIMAL})")
_MIXED = re.compile(r"(?P<w>\d+)\s+(?P<a>\d+)\s*/\s*(?P<b>\d+)")
_LATEX_FRAC = re.compile(rf"\\[dtc]?frac\s*(?:\{{\s*([+-]?{_DECIMAL})\s*\}}"
                         rf"\s*\{{\s*({_DECIMAL})\s*\}}|(\d)\s*(\d)(?!\d))")
_TEXT_CMD = re.compile(r"\\(?:text|textrm|textbf|textit|mathrm|mathbf|mathit|mbox|operatorname)"
                       r"\s*\{([^{}]*)\}")
_LATEX_SUBS = [(re.compile(p), r) for p, r in [
    (r"\{,\}", ","), (r"\\[,;: ]|~", " "), (r"\\!", ""), (r"\\(?:times|cdot)(?![A-Za-z])", "×"),
    (r"\^\s*\{?\s*\\circ\s*\}?|\\degree\b|°", " deg"), (r"\\\$", "$"), (r"\\%", "%"),
    (r"\\(?:displaystyle|left|right)\b", ""), (r"\\euro\b", "€"), (r"\\pounds\b", "£"),
]]
_ASSIGNMENT = re.compile(r"^[A-Za-z]\s*=(?!=)\s*")
_PERCENT = re.compile(r"\s*(?:%|\bper\s*cent\b|\bpercent(?:age)?\b|\bpct\b)\s*$", re.IGNORECASE)
_CURRENCY = r"[$€£¥₹₩₽]|US\$|USD\b|EUR\b"
_CURRENCY_BEFORE = re.compile(rf"^(?:{_CURRENCY})\s*")
_CURRENCY_AFTER = re.compile(rf"\s*(?:{_CURRENCY})$")
_UNIT_WORD = r"[^\W\d_]+(?:\s*\^\s*\{?-?\d\}?)?"
# Words are separated by a space or "/" so that a run of letters splits one way only (an
# empty separator would make matching cubic in its length).
_UNIT = re.compile(rf"(?<=[\d%$€£)}}])\s*(?P<u>{_UNIT_WORD}"
                   rf"(?:(?:\s*/\s*|\s+)(?:per\s+)?{_UNIT_WORD}){{0,2}})\.?$")
_SINGLE_LETTER_UNITS = set("mgshLVWJ")
_NOT_UNITS = {"pi", "sqrt", "sin", "cos", "tan", "log", "ln", "exp", "inf", "infty", "e", "i",
              "and", "or", "plus", "minus", "over", "divided", "not", "no", "to", "of", "x", "mod"}


def _unwrap(s: str) -> str:
    prev = None
    while s != prev:
        prev = s
        s = _clean(s)
        for opener, closer in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
            inner = s[len(opener):-len(closer)]
            if (len(s) >= len(opener) + len(closer) and s.startswith(opener)
                    and s.endswith(closer) and "$" not in inner):
                s = inner
                break
        m = _BOXED.match(s)
        if m and _matching_braces(s).get(m.end() - 1) == len(s) - 1:
            s = s[m.end():-1]
    return s.strip()


def _latex_to_plain(s: str) -> str:
    if "\\" not in s and "{" not in s and "°" not in s and "~" not in s:
        return s
    s = _TEXT_CMD.sub(lambda m: " " + m.group(1) + " ", s)
    for pattern, repl in _LATEX_SUBS:
        s = pattern.sub(repl, s)

    def frac(m: re.Match) -> str:
        a, b = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        lead = " " if m.start() > 0 and s[m.start() - 1].isdigit() else ""
        return f"{lead}{a}/{b}"

    return " ".join(_LATEX_FRAC.sub(frac, s).split())


def _strip_unit(s: str) -> str:
    m = _UNIT.search(s)
    if not m:
        return s
    words = re.findall(r"[^\W\d_]+", m.group("u"))
    if any(w.lower() in _NOT_UNITS for w in words):
        return s
    if len(words) == 1 and len(words[0]) == 1 and words[0] not in _SINGLE_LETTER_UNITS:
        return s
    return s[: m.start()].rstrip()


def _read_unsigned(s: str) -> Fraction | None:
    s = s.strip()
    if not s or not (s[0].isdigit() or s[0] == "."):
        return None
    mixed = _MIXED.fullmatch(s)
    if mixed:
        whole, a, b = (int(mixed.group(k)) for k in "wab")
        as_mixed = Fraction(whole) + Fraction(a, b) if 0 < a < b else None
        as_thousands = _FRACTION.fullmatch(s)
        if as_mixed is not None and as_thousands is None:
            return as_mixed
        if as_mixed is not None:
            return None  # "1 100/200": a mixed number or 1100/200; not read
    if m := _FRACTION.fullmatch(s):
        b = _decimal(m.group("b"))
        return None if b == 0 else _decimal(m.group("a")) / b
    if m := _SCI.fullmatch(s):
        exponent = next((v for k, v in m.groupdict().items() if k[0] == "e" and v), "0")
        if abs(int(exponent)) > _MAX_EXPONENT:
            return None
        return _decimal(m.group("m") or "1") * Fraction(10) ** int(exponent)
    return None


def _decimal(s: str) -> Fraction:
    return Fraction(s.replace(",", "").replace(" ", "").replace("_", ""))


# ---------------------------------------------------------------------------------------------
# Format rewards


def format_score(text: str) -> float:
    """1.0 when the last non-empty line holds a final answer as ``#### x`` (x non-empty) or a
    closed ``\\boxed{...}``, else 0.0. Text after the final answer line costs the point."""
    if not isinstance(text, str):
        return 0.0
    lines = [line for line in text.split("\n") if line.strip()]
    if not lines:
        return 0.0
    last = lines[-1]
    if any(m.group(1).strip() for m in _HASHES.finditer(last)):
        return 1.0
    closing = _matching_braces(last)
    return 1.0 if any(m.end() - 1 in closing for m in _BOXED.finditer(last)) else 0.0


@dataclass(frozen=True)
class TagFormat:
    """Format reward for ``<think>reasoning</think> <answer>answer</answer>`` (DeepSeek-R1).

    Callable ``(text) -> float`` in [0, 1], usable as an env's ``format_score``. Tags are
    matched case-sensitively.

    - ``mode="strict"``: 1.0 when the whole completion (outer whitespace aside) is exactly one
      think block then one answer block, both with non-blank content, only whitespace between
      them and no stray tag inside, else 0.0.
    - ``mode="lenient"``: partial credit, an equal share for each check passed: (1) one think
      block, opened before closed, non-blank; (2) one answer block, likewise; (3) the think
      block closes before the answer block opens; (4) nothing but whitespace outside the two
      blocks. Checks 3-4 need 1-2. A score of 1.0 in one mode is 1.0 in the other.
    - ``think_tag=None``: no think block; the completion is one answer block (checks 2, 4).
    - ``think_opened_in_prompt=True``: the chat template ends the prompt with ``<think>``
      (DeepSeek-R1, Qwen3), so the completion starts inside the think block.

    Example::

        TagFormat()("<think>2+2=4</think>\\n<answer>4</answer>")                  # 1.0
        TagFormat(mode="lenient")("<think>2+2=4</think> so <answer>4</answer>")  # 0.75
        TagFormat(think_opened_in_prompt=True)("2+2=4</think><answer>4</answer>")  # 1.0
    """

    mode: Literal["strict", "lenient"] = "strict"
    think_tag: str | None = "think"
    answer_tag: str = "answer"
    think_opened_in_prompt: bool = False

    def __post_init__(self) -> None:
        if self.mode not in ("strict", "lenient"):
            raise ValueError(f"TagFormat.mode must be 'strict' or 'lenient', got {self.mode!r}")
        for name, tag in (("think_tag", self.think_tag), ("answer_tag", self.answer_tag)):
            if tag is not None and not _TAG_NAME.fullmatch(tag):
                raise ValueError(f"TagFormat.{name} must be a tag name like 'answer', got {tag!r}")
        if self.think_tag is not None and self.think_tag == self.answer_tag:
            raise ValueError("TagFormat.think_tag and answer_tag must differ")
        if self.think_opened_in_prompt and self.think_tag is None:
            raise ValueError("TagFormat.think_opened_in_prompt needs a think_tag")

    def __call__(self, text: str) -> float:
        if not isinstance(text, str):
            return 0.0
        if self.think_opened_in_prompt:
            text = f"<{self.think_tag}>" + text
        answer = _block(text, self.answer_tag)
        if self.think_tag is None:
            checks = [answer is not None,
                      answer is not None and not text[: answer[0]].strip()
                      and not text[answer[1]:].strip()]
        else:
            think = _block(text, self.think_tag)
            ordered = think is not None and answer is not None and think[1] <= answer[0]
            checks = [think is not None, answer is not None, ordered,
                      ordered and not (text[: think[0]] + text[think[1]:answer[0]]
                                       + text[answer[1]:]).strip()]
        if self.mode == "strict":
            return 1.0 if all(checks) else 0.0
        return sum(checks) / len(checks)


_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


def _block(text: str, tag: str) -> tuple[int, int] | None:
    """(start of ``<tag>``, end of ``</tag>``) when the text holds the tag pair exactly once,
    opened before closed, with non-blank content; else None."""
    opener, closer = f"<{tag}>", f"</{tag}>"
    if text.count(opener) != 1 or text.count(closer) != 1:
        return None
    start, end = text.find(opener), text.find(closer)
    if end < start or not text[start + len(opener):end].strip():
        return None
    return start, end + len(closer)
