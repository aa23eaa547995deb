"""Answer formats: what current models write is read right.

Covers rewards.answer_formats (extraction, Unicode, exact numbers, TagFormat) and its use by
rewards.math (answers_equivalent, MathVerifier).
"""

import threading
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from rewards.answer_formats import (
    NumericAnswer,
    TagFormat,
    extract_answer,
    normalize_unicode,
    parse_number,
)
from rewards.math import MathVerifier, answers_equivalent
from rl.types import Completion, Episode, Task, Turn

FAST = settings(max_examples=200, deadline=None)


def _verdict(text: str, gold: str, **verifier_options) -> bool:
    task = Task(id="t", messages=[{"role": "user", "content": "?"}], answer=gold)
    completion = Completion(token_ids=[], logprobs=[], text=text, finish_reason="stop")
    episode = Episode(task=task, group_id=0, turns=[Turn(context_ids=[], completion=completion)])
    return MathVerifier(**verifier_options)(task, episode).correct


# ---------------------------------------------------------------------------------------------
# Worked cases: completion text, gold answer, verdict.

@pytest.mark.parametrize("text,gold,correct", [
    # R1 tags: the last non-empty <answer> block wins over every form outside the tags.
    ("<think>Is it \\boxed{3}?</think>\n<answer>5</answer>", "5", True),
    ("<think>Is it \\boxed{3}?</think>\n<answer>5</answer>", "3", False),
    ("<think>..</think><answer>5</answer>\nSo the answer is 6.", "5", True),
    ("<think>..</think><answer>5</answer>\nSo the answer is 6.", "6", False),
    ("<answer>4</answer> wait <answer>7</answer>", "7", True),
    ("<answer>4</answer> wait <answer>7</answer>", "4", False),
    ("<answer>9</answer><answer>  </answer>", "9", True),
    ("<answer>The answer is \\boxed{\\dfrac{3}{4}}</answer>", "0.75", True),
    ("<think>6*7</think><answer>42", "42", True),  # a stop string cut </answer> off
    ("I will use <answer> tags.</think><answer>42</answer>", "42", True),
    # Outside tags the form that starts last wins; an empty box is skipped.
    ("\\boxed{1} and then the answer is 2", "2", True),
    ("\\boxed{1} and then the answer is 2", "1", False),
    ("The answer is 2, or rather \\boxed{3}", "3", True),
    ("\\boxed{}", "0", False),
    ("\\boxed{5} and later \\boxed{}", "5", True),
    ("\\boxed{\\frac{1}{\\sqrt{2}}}", "\\frac{\\sqrt{2}}{2}", True),
    ("\\boxed{5}\n\nThe answer is correct because 5 = 5.", "5", True),  # a verdict, no answer
    ("**Final Answer:**\n\n\\[ 42 \\]", "42", True),
    ("The answer to part (b) is 7.", "7", True),
    ("I think it is twelve", "12", False),
    # Thousands separators vs decimals vs lists.
    ("#### 1,234", "1234", True),
    ("#### 1,234", "1.234", False),
    ("#### 1.234", "1234", False),
    ("#### 1,2", "1.2", False),
    ("#### 1,2", "12", False),
    ("The answer is 1 234 567 dollars.", "1234567", True),
    ("\\boxed{1\\,234\\,567}", "1234567", True),
    ("\\boxed{1{,}234{,}567}", "1,234,567", True),
    ("#### 1_000", "1000", True),
    ("#### 1_00", "100", False),
    # Unicode minus signs and digits.
    ("Final answer: \u22127", "-7", True),
    ("Final answer: \u20127", "-7", True),
    ("Final answer: \u20137", "-7", True),
    ("Final answer: 7", "\u22127", False),
    ("#### \uff0d\uff17", "-7", True),
    ("#### \u0664\u0662", "42", True),
    ("#### \uff14\uff12", "24", False),
    # Scientific notation.
    ("\\boxed{1.5 \\times 10^{3}}", "1500", True),
    ("The answer is 1.5e3.", "1500", True),
    ("The answer is 1.5\u00d710\u00b3.", "1500", True),
    ("#### 1.5\u00d710^3", "150", False),
    ("\\boxed{2.5 \\cdot 10^{-2}}", "1/40", True),
    # Fractions, mixed numbers, exactness.
    ("The answer is 2/4.", "1/2", True),
    ("\\boxed{\\tfrac{6}{8}}", "0.75", True),
    ("\\boxed{3\\frac{1}{2}}", "7/2", True),
    ("The answer is 3 1/2 cups.", "3.5", True),
    ("\\boxed{\\frac{1}{3}}", "0.333", False),
    ("\\boxed{\\frac{1}{3}}", "0.3333333", False),
    # Percentages (PercentPolicy "either": p% is p or p/100).
    ("The answer is 50%.", "50", True),
    ("The answer is 50%.", "0.5", True),
    ("The answer is 50%.", "5", False),
    ("The answer is 0.5", "50%", True),
    ("\\boxed{50\\%}", "50", True),
    ("#### 10 percent", "0.1", True),
    ("#### 10%", "1", False),
    ("#### 10%", "100", False),
    ("#### 0.1%", "10%", False),
    # Units and currency are dropped for numbers, but pi and variables are not units.
    ("\\boxed{12\\text{ cm}}", "12", True),
    ("\\boxed{12\\text{ cm}^2}", "12", True),
    ("The answer is $12.", "12", True),
    ("The answer is \\$12.50.", "12.5", True),
    ("#### 12 apples", "12", True),
    ("#### 12 apples", "13", False),
    ("\\boxed{90^\\circ}", "90", True),
    ("\\boxed{2\\pi}", "2", False),
    ("#### 2 pi", "2", False),
    ("\\boxed{5x}", "5", False),
])
def test_worked_cases(text, gold, correct):
    assert _verdict(text, gold) is correct


def test_explosive_values_are_refused_quickly_off_the_main_thread():
    # math-verify has no timeout off the main thread: these would run for minutes there.
    results = []
    pairs = [("99999999!", "5"), ("10^{10^{10}}", "5"), ("\\binom{99999999}{49999999}", "1"),
             ("2^{99999}", "0")]
    thread = threading.Thread(target=lambda: results.extend(answers_equivalent(a, b)
                                                            for a, b in pairs),
                              daemon=True)  # a regression fails the test, not the session
    thread.start()
    thread.join(timeout=20)
    assert not thread.is_alive() and results == [False] * len(pairs)
    assert answers_equivalent("10^{10^{10}}", "10^{10^{10}}")  # identical strings still match


def test_percent_policies():
    assert _verdict("#### 50%", "50", percent="number")
    assert not _verdict("#### 50%", "0.5", percent="number")
    assert _verdict("#### 50%", "0.5", percent="value")
    assert not _verdict("#### 50%", "50", percent="value")
    assert _verdict("#### 50%", "50 %", percent="value")  # both with %: numbers compared
    with pytest.raises(ValueError, match="percent"):
        MathVerifier(percent="maybe")
    with pytest.raises(ValueError, match="percent"):
        answers_equivalent("1", "1", percent="maybe")


def test_answer_tag_option():
    text = "<answer>5</answer> The answer is 6."
    assert extract_answer(text) == "5"
    assert extract_answer(text, answer_tag=None) == "6"
    assert extract_answer("<final>8</final> #### 9", answer_tag="final") == "8"
    assert _verdict(text, "6", answer_tag=None)


@pytest.mark.parametrize("text,expected", [
    ("<think>hmm \\boxed{3}</think><answer>5</answer>", "5"),
    ("<answer>1</answer><answer>2</answer>", "2"),
    ("<answer> The answer is: **-3** </answer>", "-3"),
    ("**The answer is 5.**", "5"),
    ("The answer is therefore 12 cm.", "12 cm"),
    ("The answer is 1,234,567, which is large.", "1,234,567"),
    ("The answer is 1, 2, 3.", "1, 2, 3"),
    ("the answer is not 4", None),
    ("\\boxed{5}\nThis answer is correct.", "5"),
    ("\uff34\uff28\uff25 answer is \u22125", "-5"),  # normalised: ASCII digits and minus
    ("#### \u0661\u0662", "12"),
    ("Final Answer: $x^2$", "x^2"),
])
def test_extract_answer_precedence(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize("text,expected", [
    ("1 234 567", Fraction(1234567)),
    ("1\u202f234", Fraction(1234)),
    ("1,234.5", Fraction(2469, 2)),
    ("1.5e-3", Fraction(3, 2000)),
    ("10^{3}", Fraction(1000)),
    ("2*10**3", Fraction(2000)),
    ("\\dfrac34", Fraction(3, 4)),
    ("-3 1/2", Fraction(-7, 2)),
    ("3\u00bd", Fraction(7, 2)),
    ("-$5", Fraction(-5)),
    ("x = 5", Fraction(5)),
    ("9.8 m/s^2", Fraction(49, 5)),
    ("\u0661\u066c\u0662\u0663\u0664\u066b\u0665", Fraction(2469, 2)),
    ("1,2", None),
    ("0,123", None),
    ("1,23,456", None),
    ("1 100/200", None),  # mixed 1 1/2 or 1100/200: not read
    ("5 x", None),
    ("7 n", None),  # one-letter units are a short list: n is a variable
    ("12 m", Fraction(12)),
    ("1e999", None),
    ("3/0", None),
    ("", None),
])
def test_parse_number(text, expected):
    got = parse_number(text)
    assert (got.number if got else None) == expected


def test_parse_number_percent():
    assert parse_number("50\\%") == NumericAnswer(Fraction(50), percent=True)
    assert parse_number("50 percent").value == Fraction(1, 2)
    assert parse_number("50").value == Fraction(50)


def test_normalize_unicode():
    written = "\u2212\uff11\u0662\u0966 \u00d7 10\u207b\u00b3"
    assert normalize_unicode(written) == "-120 \u00d7 10^{-3}"
    assert normalize_unicode("ascii stays") == "ascii stays"
    assert normalize_unicode("a \u2014 b") == "a \u2014 b"  # the em dash is punctuation


# ---------------------------------------------------------------------------------------------
# Properties: any integer in any formatting is recovered; a different one never matches.

_DIGIT_ZEROS = [0x30, 0xFF10, 0x660, 0x6F0, 0x966, 0x9E6, 0xE50]
_SEPARATORS = ["", ",", " ", "\u2009", "\u202f", "_", "{,}", "\\,"]
_MINUS = ["-", "\u2212", "\u2012", "\u2013", "\uff0d"]
_UNITS = ["", " cm", " dollars", "\\text{ cm}", " km/h", " m", "\\ \\mathrm{kg}"]
_CURRENCY = ["", "$", "\\$"]
_WRAPPERS = [
    "\\boxed{{{}}}",
    "#### {}",
    "The answer is {}.",
    "Final answer: {}",
    "**Answer:** {}",
    "<think>We add 3 + 4 = 7 and check.</think>\n<answer>{}</answer>",
    "So the result is $\\boxed{{{}}}$.",
    "Step 1: 12 * 3 = 36\n\\boxed{{{}}}",
]


def _digits(n: int, sep: str, zero: int) -> str:
    s = str(abs(n))
    if sep and len(s) > 3:
        head = len(s) % 3 or 3
        s = sep.join([s[:head]] + [s[i:i + 3] for i in range(head, len(s), 3)])
    return "".join(chr(zero + int(c)) if c.isdigit() else c for c in s)


@st.composite
def formatted_int(draw, n):
    """``n`` written the way a model might: separators, script, minus, currency, units, wrapper."""
    body = _digits(n, draw(st.sampled_from(_SEPARATORS)), draw(st.sampled_from(_DIGIT_ZEROS)))
    sign = draw(st.sampled_from(_MINUS)) if n < 0 else ""
    text = sign + draw(st.sampled_from(_CURRENCY)) + body + draw(st.sampled_from(_UNITS))
    return draw(st.sampled_from(_WRAPPERS)).format(text)


@st.composite
def exact_rewrite(draw, n):
    """``n`` in scientific notation or as a fraction, exactly."""
    k = draw(st.integers(0, len(str(abs(n))) - 1))
    mantissa = format(Decimal(n).scaleb(-k), "f")
    q = draw(st.integers(1, 9))
    form = draw(st.sampled_from([
        f"{mantissa}e{k}", f"{mantissa}E+{k}", f"{mantissa}\u00d710^{k}",
        f"{mantissa} \\times 10^{{{k}}}", f"{mantissa}\\cdot 10^{{{k}}}",
        f"{n * q}/{q}", f"\\frac{{{n * q}}}{{{q}}}",
    ]))
    return draw(st.sampled_from(_WRAPPERS)).format(form)


_INTS = st.integers(-10**9, 10**9)


@FAST
@given(st.data(), _INTS)
def test_any_formatting_recovers_the_integer(data, n):
    text = data.draw(formatted_int(n))
    extracted = extract_answer(text)
    assert extracted is not None, text
    assert parse_number(extracted) is not None and parse_number(extracted).value == n, text
    assert answers_equivalent(extracted, str(n)), text


@FAST
@given(st.data(), _INTS, st.integers(-10**6, 10**6).filter(bool))
def test_a_different_integer_never_matches(data, n, delta):
    text = data.draw(formatted_int(n + delta))
    extracted = extract_answer(text)
    assert extracted is not None and not answers_equivalent(extracted, str(n)), text


@FAST
@given(st.data(), _INTS.filter(bool))
def test_exact_scientific_and_fraction_forms(data, n):
    text = data.draw(exact_rewrite(n))
    extracted = extract_answer(text)
    assert answers_equivalent(extracted, str(n)), text
    assert not answers_equivalent(extracted, str(n + 1)), text


@FAST
@given(st.integers(-10**6, 10**6), st.integers(0, 6), st.integers(0, 6))
def test_fraction_equals_its_terminating_decimal(p, a, b):
    q = 2**a * 5**b
    decimal = format(Decimal(p) / Decimal(q), "f")
    assert answers_equivalent(decimal, f"{p}/{q}")
    assert answers_equivalent(f"\\frac{{{p}}}{{{q}}}", decimal)
    assert not answers_equivalent(decimal, f"{p + 1}/{q}")


@FAST
@given(st.integers(-10**6, 10**6), st.sampled_from([3, 6, 7, 9, 12]), st.integers(1, 12))
def test_fraction_never_equals_a_truncated_decimal(p, q, places):
    d = Fraction(p, q).denominator
    while d % 2 == 0 or d % 5 == 0:
        d //= 2 if d % 2 == 0 else 5
    assume(d > 1)  # p/q has no terminating decimal
    truncated = format(round(Decimal(p) / Decimal(q), places), "f")
    assert not answers_equivalent(truncated, f"\\frac{{{p}}}{{{q}}}")


@FAST
@given(st.integers(0, 10**6), st.integers(0, 3))
def test_percent_either_policy(n, places):
    p = Fraction(n, 10**places)
    written = format(Decimal(n).scaleb(-places), "f")
    as_number = format(Decimal(n).scaleb(-places), "f")
    as_value = format(Decimal(n).scaleb(-places - 2), "f")
    assert answers_equivalent(f"{written}%", as_number)
    assert answers_equivalent(f"{written}%", as_value)
    assert answers_equivalent(as_value, f"{written}\\%")
    assert not answers_equivalent(f"{written}%", str(p * 10 + 1))
    assert answers_equivalent(f"{written}%", as_number, percent="number")
    assert answers_equivalent(f"{written}%", as_value, percent="value")
    if p != 0:
        assert not answers_equivalent(f"{written}%", as_value, percent="number")
        assert not answers_equivalent(f"{written}%", as_number, percent="value")


# ---------------------------------------------------------------------------------------------
# Format reward


@pytest.mark.parametrize("text,strict,lenient", [
    ("<think>2+2=4</think>\n<answer>4</answer>", 1.0, 1.0),
    ("  <think>2+2=4</think><answer>4</answer>\n", 1.0, 1.0),
    ("<think>2+2=4</think> so <answer>4</answer>", 0.0, 0.75),  # text between the blocks
    ("<think>2+2=4</think><answer>4</answer> done", 0.0, 0.75),  # text after </answer>
    ("<answer>4</answer><think>2+2=4</think>", 0.0, 0.5),  # wrong order
    ("<think></think><answer>4</answer>", 0.0, 0.25),  # empty think
    ("<think>2+2=4</think><answer> </answer>", 0.0, 0.25),  # empty answer
    ("<think>a</think><think>b</think><answer>4</answer>", 0.0, 0.25),  # two think blocks
    ("<think>2+2=4<answer>4</answer></think>", 0.0, 0.5),  # answer inside think
    ("The answer is 4.", 0.0, 0.0),
    ("", 0.0, 0.0),
])
def test_tag_format(text, strict, lenient):
    assert TagFormat()(text) == strict
    assert TagFormat(mode="lenient")(text) == lenient


def test_tag_format_options():
    opened = TagFormat(think_opened_in_prompt=True)
    assert opened("2+2=4</think>\n<answer>4</answer>") == 1.0
    assert opened("<think>2+2=4</think>\n<answer>4</answer>") == 0.0  # <think> twice
    answer_only = TagFormat(think_tag=None)
    assert answer_only("<answer>4</answer>") == 1.0
    assert answer_only("4 <answer>4</answer>") == 0.0
    assert TagFormat(mode="lenient", think_tag=None)("4 <answer>4</answer>") == 0.5
    renamed = TagFormat(think_tag="reasoning", answer_tag="final")
    assert renamed("<reasoning>r</reasoning><final>4</final>") == 1.0
    assert renamed("<think>r</think><answer>4</answer>") == 0.0
    for bad in ({"mode": "loose"}, {"answer_tag": "<answer>"},
                {"think_tag": "a", "answer_tag": "a"},
                {"think_tag": None, "think_opened_in_prompt": True}):
        with pytest.raises(ValueError):
            TagFormat(**bad)


_TAG_FREE = st.text(st.characters(blacklist_characters="<>"), min_size=1)


@FAST
@given(_TAG_FREE.filter(str.strip), _TAG_FREE.filter(lambda s: any(c.isalnum() for c in s)),
       st.sampled_from(["", "\n", " \n\n"]))
def test_tag_format_canonical_completion_scores_one(think, answer, gap):
    text = f"<think>{think}</think>{gap}<answer>{answer}</answer>"
    assert TagFormat()(text) == 1.0
    assert extract_answer(text) is not None


_SOUP = st.lists(st.sampled_from([
    "<think>", "</think>", "<answer>", "</answer>", "\\boxed{", "{", "}", "#### ",
    "the answer is ", "Final answer:", "$", "**", "1,234", "\u2212", "\uff15", "50%", " cm",
    "1.5e3", "\\frac{1}{2}", "x", "\n", " ", ".",
]), max_size=25).map("".join)


@FAST
@given(st.one_of(st.text(), _SOUP))
def test_never_raises_on_model_text(text):
    answer = extract_answer(text)
    assert answer is None or (answer and answer == answer.strip())
    parse_number(text)
    strict, lenient = TagFormat()(text), TagFormat(mode="lenient")(text)
    assert 0.0 <= strict <= lenient <= 1.0
    assert (strict == 1.0) == (lenient == 1.0)


@settings(max_examples=60, deadline=None)
@given(_SOUP, _SOUP)
def test_answers_equivalent_never_raises(a, b):
    assert answers_equivalent(a, b) in (True, False)
