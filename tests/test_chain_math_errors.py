"""The first-error taxonomy of chain_math completions, on hand-written completions."""

import json
import sys
from pathlib import Path

import pytest

from envs.chain_math import ChainMathConfig, ChainMathSource, oracle_solution
from envs.chain_math_errors import every_step_right, first_error, parse_problem, step_hazard

PROMPT = "Start with 22. Add 7. Add 5. Subtract 2.\nDo the operations in order."  # 29, 34, 32
RIGHT = "22 + 7 = 29\n29 + 5 = 34\n34 - 2 = 32\n#### 32"


@pytest.mark.parametrize("completion, expected", [
    (RIGHT, ("none", 3)),
    ("22 + 7 = 29\n29 + 5 = 34\n#### 34", ("stopped_early", 2)),
    ("22 + 7 = 29\n29 - 2 = 27\n#### 27", ("skipped_op", 1)),
    ("22 + 7 = 29\n29 + 7 = 36\n36 - 2 = 34\n#### 34", ("repeated_op", 1)),
    ("22 + 7 = 29\n29 + 3 = 32\n#### 32", ("wrong_op", 1)),
    ("22 + 7 = 31\n31 + 5 = 36\n36 - 2 = 34\n#### 34", ("arithmetic", 0)),
    ("22 + 7 = 29\n30 + 5 = 35\n35 - 2 = 33\n#### 33", ("lost_value", 1)),
    ("The answer is 32.", ("unreadable_line", 0)),
    (RIGHT.replace("#### 32", "32 + 1 = 33\n#### 33"), ("extra_lines", 3)),
    (RIGHT.replace("#### 32", "#### 31"), ("final_line", 3)),
    (RIGHT.replace("\n#### 32", ""), ("final_line", 3)),
])
def test_first_error_names_the_first_thing_wrong(completion, expected):
    assert first_error(PROMPT, completion) == expected


def test_parse_problem_reads_the_env_prompt_and_the_oracle_is_error_free():
    source = ChainMathSource(ChainMathConfig(min_horizon=5, max_horizon=5, ops=("add", "subtract", "multiply")),
                             seed=3)
    for task in source.sample(20):
        start, ops = parse_problem(task.messages[-1]["content"])
        assert start == task.meta["start"] and len(ops) == 5
        assert first_error(task.messages[-1]["content"], oracle_solution(task)) == ("none", 5)
    with pytest.raises(ValueError, match="not a chain_math prompt"):
        parse_problem("What is 2 + 2?")


def test_every_step_right_tells_a_right_chain_from_a_lucky_answer():
    assert every_step_right(PROMPT, RIGHT)
    # two slips that cancel (29 + 5 = 35, then 35 - 2 = 32): the final answer is right, the chain is not
    assert not every_step_right(PROMPT, "22 + 7 = 29\n29 + 5 = 35\n35 - 3 = 32\n#### 32")
    assert not every_step_right(PROMPT, RIGHT.replace("\n#### 32", ""))  # no final answer line
    assert not every_step_right(PROMPT, "22 + 7 = 29\n#### 32")  # the right answer, two operations skipped
    assert not every_step_right(PROMPT, RIGHT.replace("#### 32", "#### 31"))


def test_step_hazard_counts_first_errors_among_completions_still_right():
    rows = [{"horizon": 3, "prompt": PROMPT, "completion": c} for c in (
        RIGHT,                                             # right throughout: at risk at 1, 2, 3
        "22 + 7 = 31\n31 + 5 = 36\n36 - 2 = 34\n#### 34",  # arithmetic at line 1
        "22 + 7 = 29\n29 + 5 = 34\n#### 34",               # stopped before line 3
        RIGHT.replace("#### 32", "#### 31"),               # a wrong final line is no step's error
    )]
    assert step_hazard(rows) == {3: {1: {"at_risk": 4, "failed": 1, "hazard": 0.25},
                                     2: {"at_risk": 3, "failed": 0, "hazard": 0.0},
                                     3: {"at_risk": 3, "failed": 1, "hazard": 1 / 3}}}
    # each horizon its own row: a 1-step problem wrong at op 1 leaves the 3-step row unchanged
    one = {"horizon": 1, "prompt": "Start with 22. Add 7.\nDo the operations in order.", "completion": "22 + 7 = 30"}
    assert step_hazard([*rows, one])[1] == {1: {"at_risk": 1, "failed": 1, "hazard": 1.0}}
    assert step_hazard([*rows, one])[3] == step_hazard(rows)[3] and step_hazard(rows, horizons={5}) == {}


def test_errors_script_tallies_unsolved_completions_by_horizon(tmp_path, capsys):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))
    import chain_math_errors

    rows = [{"horizon": 3, "prompt": PROMPT, "completion": c, "answer": "32", "solved": c == RIGHT}
            for c in (RIGHT, "22 + 7 = 29\n29 - 2 = 27\n#### 27", "22 + 7 = 29\n29 + 5 = 34\n#### 34",
                      "22 + 7 = 29\n29 - 2 = 27\n#### 27")]
    (tmp_path / "completions").mkdir()
    (tmp_path / "completions" / "RL.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "tally.json"
    assert chain_math_errors.main([str(tmp_path), "--json", str(out)]) == 0
    result = json.loads(out.read_text())[f"{tmp_path}/RL"]
    assert result["first_errors"] == {"3": {"n": 4, "failed": 3, "kinds": {"skipped_op": 2, "stopped_early": 1},
                                            "lucky": 0}}
    # op 1 right in all 4; op 2: the 2 skipped ops fail; op 3: the right one and the one that stops
    # before it are at risk, and stopping is its failure
    assert result["hazard"] == {"3": {"1": {"at_risk": 4, "failed": 0, "hazard": 0.0},
                                      "2": {"at_risk": 4, "failed": 2, "hazard": 0.5},
                                      "3": {"at_risk": 2, "failed": 1, "hazard": 0.5}}}
    printed = capsys.readouterr().out
    assert "h=3: 3/4 failed  (skipped_op 67%, stopped_early 33%); of 1 solved, 0 through a wrong step" in printed
    assert "h=3: 1: 0.00 (4), 2: 0.50 (4), 3: 0.50 (2)" in printed
    lucky = {"horizon": 3, "prompt": PROMPT, "completion": "22 + 7 = 29\n29 + 5 = 35\n35 - 3 = 32\n#### 32",
             "solved": True}
    assert chain_math_errors.tally(rows + [lucky])[3]["lucky"] == 1
    with pytest.raises(SystemExit, match="no completions found"):
        chain_math_errors.main([str(tmp_path / "empty")])
