import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards.math import MathVerifier, answers_equivalent, extract_answer, format_score
from rl.errors import VerifierError
from rl.types import Completion, Episode, Task, Turn


def _score(text: str, gold: str):
    task = Task(id="t", messages=[{"role": "user", "content": "?"}], answer=gold)
    completion = Completion(token_ids=[], logprobs=[], text=text, finish_reason="stop")
    episode = Episode(task=task, group_id=0, turns=[Turn(context_ids=[], completion=completion)])
    return MathVerifier()(task, episode)


@pytest.mark.parametrize("text,expected", [
    ("7 + 5 = 12\n#### 72", "72"),
    ("#### 1,234.", "1,234"),
    ("so \\boxed{\\frac{1}{2}} done", "\\frac{1}{2}"),
    ("\\boxed{\\frac{a}{b^{2}}}", "\\frac{a}{b^{2}}"),
    ("The answer is 12.", "12"),
    ("The final answer is: **-3**", "-3"),
    ("Answer: $\\frac{1}{2}$.", "\\frac{1}{2}"),
    ("Answer: \\boxed{5}", "5"),
    ("#### 3\nwait, no.\n#### 4", "4"),
    ("\\boxed{1} and then the answer is 2", "2"),
    ("The answer is 2, or rather \\boxed{3}", "3"),
    ("\\boxed{5} then an unclosed \\boxed{6", "5"),
    ("no answer here", None),
    ("", None),
    ("#### \n", None),
    ("\\boxed{}", None),
    ("<think>\\boxed{3}</think><answer>4</answer>", "4"),
    ("<answer>4</answer> so the answer is 5", "4"),
    ("#### \uff11\uff12", "12"),
])
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize("pred,gold", [
    ("1/2", "0.5"),
    ("0.5", "1/2"),
    ("\\frac{1}{2}", "0.5"),
    ("\\boxed{\\frac{1}{2}}", "1/2"),
    ("\\dfrac{2}{4}", "\\frac{1}{2}"),
    ("72", "72"),
    ("72.0", "72"),
    ("-3", "-3"),
    ("\u22123", "-3"),
    ("1,234", "1234"),
    ("2w", "2*w"),
    ("x^2 + 2x + 1", "(x+1)^2"),
    ("\\sqrt{2}/2", "\\frac{1}{\\sqrt{2}}"),
    ("1 234 567", "1234567"),
    ("1.5e3", "1500"),
    ("12 cm", "12"),
    ("50%", "0.5"),
])
def test_equivalent(pred, gold):
    assert answers_equivalent(pred, gold)


@pytest.mark.parametrize("pred,gold", [
    ("71", "72"),
    ("3", "-3"),
    ("0.33", "1/3"),
    ("2**w", "2*w"),
    ("1/0", "0"),
    ("", "0"),
    ("hello", "5"),
    ("1,234", "1.234"),
    ("1,2", "1.2"),
    ("\\frac{1}{3}", "0.3333333"),
])
def test_not_equivalent(pred, gold):
    assert not answers_equivalent(pred, gold)


def test_equivalent_off_the_main_thread():
    results = []
    thread = threading.Thread(target=lambda: results.append(
        answers_equivalent("\\frac{2}{4}", "\\frac{1}{2}")))
    thread.start()
    thread.join()
    assert results == [True]


def test_verifier_hash_answers():
    right = _score("6 * 12 = 72\n#### 72", "72")
    assert (right.score, right.correct, right.details) == (1.0, True,
                                                           {"extracted": "72", "gold": "72"})
    wrong = _score("6 * 12 = 71\n#### 71", "72")
    assert (wrong.score, wrong.correct, wrong.details["extracted"]) == (0.0, False, "71")
    assert right.error is None and wrong.error is None


def test_verifier_forms():
    assert _score("The answer is 12.", "12").correct
    assert _score("so x = -4, the answer is -4", "-4").correct
    assert _score("\\boxed{\\frac{1}{2}}", "0.5").correct
    assert not _score("#### 4", "-4").correct
    assert _score("#### 5\nActually the answer is 6.", "6").correct  # the last answer wins
    assert not _score("#### 5\nActually the answer is 6.", "5").correct


def test_verifier_no_answer():
    outcome = _score("I think it is twelve", "12")
    assert (outcome.score, outcome.correct, outcome.details["extracted"]) == (0.0, False, None)


def test_verifier_raises_on_task_without_answer():
    with pytest.raises(VerifierError, match="empty answer"):
        _score("#### 1", "")


@pytest.mark.parametrize("text,expected", [
    ("12 * 3 = 36\n#### 36", 1.0),
    ("#### 36\n\n", 1.0),
    ("So the result is $\\boxed{36}$.", 1.0),
    ("The answer is 36.", 0.0),
    ("#### 36\nLet me check that again.", 0.0),
    ("#### ", 0.0),
    ("\\boxed{36", 0.0),
    ("", 0.0),
])
def test_format_score(text, expected):
    assert format_score(text) == expected


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_extract_answer_and_format_never_raise(text):
    answer = extract_answer(text)
    assert answer is None or (isinstance(answer, str) and answer)
    assert format_score(text) in (0.0, 1.0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["\\boxed{", "{", "}", "####", "answer is", "Answer:", "$",
                                 "**", "1", "-2", "\n", " ", ".", "\\frac{1}{2}"]), max_size=30))
def test_extract_answer_never_raises_on_marker_soup(pieces):
    text = "".join(pieces)
    answer = extract_answer(text)
    assert answer is None or answer.strip() == answer
