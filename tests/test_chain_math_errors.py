"""The first-error taxonomy of chain_math completions, on hand-written completions."""

import json
import sys
from pathlib import Path

import pytest

from envs.chain_math import ChainMathConfig, ChainMathSource, oracle_solution
from envs.chain_math_errors import first_error, parse_problem

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
    tally = json.loads(out.read_text())[f"{tmp_path.name}/RL"]
    assert tally == {"3": {"n": 4, "failed": 3, "kinds": {"skipped_op": 2, "stopped_early": 1}}}
    assert "h=3: 3/4 failed  (skipped_op 67%, stopped_early 33%)" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no completions found"):
        chain_math_errors.main([str(tmp_path / "empty")])
