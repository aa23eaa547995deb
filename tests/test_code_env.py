"""The humaneval env: deterministic tasks, its split, no horizon knob, the eval task draw, program
extraction from every completion style, and the verifier through the spec (sandboxed runs)."""

import pickle

import pytest

from envs.base import SplitSource
from envs.code import (
    SPEC,
    HumanEvalConfig,
    HumanEvalSource,
    heldout,
    in_train_split,
    load_problems,
    oracle_solution,
)
from rewards.code import CodeVerifier, extract_program, format_score
from rewards.sandbox import Limits
from rl.errors import ConfigError, DataError
from rl.types import Completion, Episode, Task, Turn


def _episode(task: Task, text: str) -> Episode:
    return Episode(task=task, group_id=0, turns=[Turn([1], Completion([2], [0.0], text, "stop"))])


def _task(task_id: str = "HumanEval/0") -> Task:
    (problem,) = [p for p in load_problems() if p["task_id"] == task_id]
    return HumanEvalSource().task(problem)


# ------------------------------------------------------------------------ the source


def test_problems_ship_with_the_package():
    problems = load_problems()
    assert len(problems) == 164
    assert [p["task_id"] for p in problems[:2]] == ["HumanEval/0", "HumanEval/1"]


def test_tasks_carry_what_the_verifier_needs():
    task = _task("HumanEval/2")
    problem = load_problems()[2]
    assert task.id == "HumanEval/2" and task.horizon == 1 and task.source == "humaneval"
    assert task.meta["entry_point"] == problem["entry_point"] == "truncate_number"
    assert task.meta["test"] == problem["test"] and task.meta["prompt"] == problem["prompt"]
    content = task.messages[0]["content"]
    assert content.startswith("Complete the following Python function") and problem["prompt"] in content
    assert task.meta["limits"] == {"timeout_s": 5.0, "cpu_s": 4, "memory_mb": 1024}
    bare = HumanEvalSource(HumanEvalConfig(instruction="")).task(problem)
    assert bare.messages[0]["content"] == problem["prompt"]


def test_stream_is_a_seeded_permutation_per_pass():
    a = [t.id for t in HumanEvalSource(seed=1).sample(328)]
    assert a == [t.id for t in HumanEvalSource(seed=1).sample(328)]
    assert sorted(a[:164]) == sorted(a[164:]) == sorted(p["task_id"] for p in load_problems())
    assert a[:164] != a[164:]  # each pass has its own order
    assert a[:20] != [t.id for t in HumanEvalSource(seed=2).sample(20)]


def test_state_dict_round_trip():
    source = HumanEvalSource(seed=3)
    source.sample(200)
    state = source.state_dict()
    expected = [t.id for t in source.sample(7)]
    resumed = HumanEvalSource(seed=3)
    resumed.load_state_dict(state)
    assert [t.id for t in resumed.sample(7)] == expected
    with pytest.raises(DataError, match="seed"):
        HumanEvalSource(seed=4).load_state_dict(state)
    with pytest.raises(DataError, match="position"):
        HumanEvalSource(seed=3).load_state_dict({"position": -1, "seed": 3})


def test_every_problem_is_held_out_by_default():
    tasks = HumanEvalSource().sample(164)
    assert all(heldout(t) for t in tasks)
    assert len(SplitSource(HumanEvalSource(), "eval", heldout=heldout).sample(10)) == 10
    with pytest.raises(DataError, match="train split"):
        SplitSource(HumanEvalSource(), "train", heldout=heldout).sample(1)


def test_train_fraction_splits_by_task_id_whatever_the_seed():
    config = HumanEvalConfig(train_fraction=0.5)
    train = {t.id for t in SplitSource(HumanEvalSource(config, seed=0), "train", heldout=heldout).sample(300)}
    held = {t.id for t in SplitSource(HumanEvalSource(config, seed=9), "eval", heldout=heldout).sample(300)}
    assert train and held and not train & held
    assert len(train | held) == 164 and 50 < len(train) < 114
    assert all(in_train_split(i, 0.5) for i in train)
    assert not any(heldout(t) for t in HumanEvalSource(HumanEvalConfig(train_fraction=1.0)).sample(164))


def test_no_horizon_knob():
    source = HumanEvalSource()
    source.set_horizon(1)
    source.set_horizon(1, 8)
    for window in ((2, 2), (0, 0), ("1", 1)):
        with pytest.raises(ConfigError, match="eval.horizons"):
            source.set_horizon(*window)


def test_eval_draws_distinct_held_out_tasks():
    from rl.config import EnvConfig, EvalConfig
    from rl.evaluate import eval_tasks

    env = EnvConfig(name="humaneval")
    tasks = eval_tasks(env, EvalConfig(horizons=[1], tasks_per_horizon=20))[1]
    assert len({t.id for t in tasks}) == 20 and all(heldout(t) for t in tasks)
    assert len(eval_tasks(env, EvalConfig(horizons=[1], tasks_per_horizon=170))[1]) == 164
    with pytest.raises(ConfigError, match="eval.horizons"):
        eval_tasks(env, EvalConfig(horizons=[1, 2], tasks_per_horizon=5))


def test_options_are_checked_with_their_keys():
    from rl.config import EnvConfig

    for options, key in (({"train_fraction": 1.5}, "env.train_fraction"), ({"sandbox": "docker"}, "env.sandbox"),
                         ({"test_cpu_s": 0}, "env.test_cpu_s"), ({"test_memory_mb": 16}, "env.test_memory_mb"),
                         ({"test_timeout_s": -1}, "env.test_timeout_s")):
        with pytest.raises(ConfigError, match=key):
            EnvConfig(name="humaneval", options=options)
    env = EnvConfig(name="humaneval", options={"train_fraction": 0.25, "test_timeout_s": 3})
    assert env.spec is SPEC and env.options.train_fraction == 0.25


# ---------------------------------------------------------------- program extraction

PROMPT = 'from typing import List\n\n\ndef double(xs: List[int]) -> List[int]:\n    """Double each item."""\n'
FULL = "def double(xs):\n    return [2 * x for x in xs]\n"
COMPLETIONS = {
    "fenced whole function": f"Here you go:\n```python\n{FULL}```\nIt doubles each item.",
    "fenced, no language tag": f"```\n{FULL}```",
    "the last block that defines it wins": f"```python\n{FULL.replace('2 *', '3 *')}```\nFixed:\n```python\n{FULL}```\n"
                                           "```python\nprint(double([1]))\n```",
    "unclosed fence (cut off)": f"```python\nimport math\n{FULL}",
    "bare whole function with prose around": f"Sure! Here is the code.\n\n{FULL}\nThis runs in linear time.",
    "echoed prompt and body": PROMPT + "    return [2 * x for x in xs]\n",
    "bare body (a base model's continuation)": "    return [2 * x for x in xs]\n\n\ndef helper():\n    pass\n",
    "body in a fence": "```python\n    return [2 * x for x in xs]\n```",
    "unindented body in a fence": "```python\nout = [2 * x for x in xs]\nreturn out\n```",
    "CRLF line ends": f"```python\r\n{FULL.replace(chr(10), chr(13) + chr(10))}```",
}


@pytest.mark.parametrize("style", list(COMPLETIONS))
def test_extract_program_reads_every_completion_style(style):
    program = extract_program(PROMPT, "double", COMPLETIONS[style])
    assert program is not None and program.startswith(PROMPT)
    namespace = {}
    exec(program, namespace)  # our own test strings: trusted
    assert namespace["double"]([1, 2]) == [2, 4]


def test_extract_program_without_code():
    for text in ("I don't know.", "", "```text\nhello\n```", "Use a list comprehension: [2 * x for x in xs]"):
        assert extract_program(PROMPT, "double", text) is None, text
    broken = extract_program(PROMPT, "double", "```python\ndef double(xs)\n    return xs\n```")
    assert broken is not None and "def double(xs)\n" in broken  # kept as is: the sandbox reports the syntax error


def test_format_score():
    assert format_score(f"```python\n{FULL}```") == 1.0
    assert format_score(FULL) == 0.0
    assert format_score("```python\ndef f(:\n```") == 0.0


# ----------------------------------------------------------------- the verifier


def test_verifier_scores_right_wrong_and_broken_answers():
    task = _task("HumanEval/0")
    cases = {
        oracle_solution(task): (True, None),
        "```python\ndef has_close_elements(numbers, threshold):\n    return False\n```": (False, "wrong_answer"),
        "```python\ndef has_close_elements(numbers, threshold)\n    return False\n```": (False, "syntax"),
        "```python\nimport os\nos._exit(0)\n```": (False, "crash"),  # no def: read as the body
        "I cannot solve this.": (False, "no_code"),
        "```python\ndef has_close_elements(numbers, threshold):\n    while 1:\n        pass\n```": (False, "timeout"),
    }
    fast = Task(task.id, task.messages, task.answer, {**task.meta, "limits": {"timeout_s": 1.5, "cpu_s": 5}},
                task.source)
    outcomes = SPEC.verifier.verify_many([(fast, _episode(fast, text)) for text in cases])
    for (text, (correct, kind)), outcome in zip(cases.items(), outcomes):
        assert (outcome.correct, outcome.details["error_kind"]) == (correct, kind), (text, outcome)
        assert outcome.score == float(correct) and outcome.error is None
        assert outcome.details["status"] == ("passed" if correct else "failed")
        assert outcome.details["sandbox"] in (None, "bwrap", "rlimits+netns", "rlimits+audit")


def test_reward_function_scores_through_the_spec():
    from rl.config import EnvConfig, RewardConfig
    from rl.build import build_reward

    reward = build_reward(EnvConfig(name="humaneval"), RewardConfig(verifier_timeout_s=0))
    task = _task("HumanEval/53")
    good, bad = _episode(task, oracle_solution(task)), _episode(task, "```python\nimport sys\nsys.exit(0)\n```")
    reward(good)
    reward(bad)
    # a bad program is an outcome of 0, not a verifier error (both answers are fenced: format 1)
    assert (good.reward_terms, bad.reward_terms) == ({"outcome": 1.0, "format": 1.0}, {"outcome": 0.0, "format": 1.0})
    assert not good.errors and not bad.errors
    assert bad.outcome.details["error_kind"] == "exception"  # no def: the body raises SystemExit


def test_verifier_pickles_and_runs_in_the_isolated_worker():
    from rewards.isolated import IsolatedVerifier

    verifier = pickle.loads(pickle.dumps(CodeVerifier(limits=Limits(timeout_s=5))))
    isolated = IsolatedVerifier(verifier, timeout_s=20)
    try:
        task = _task("HumanEval/4")
        assert isolated(task, _episode(task, oracle_solution(task))).correct
        assert not isolated(task, _episode(task, "```python\nraise SystemExit(0)\n```")).correct
    finally:
        isolated.close()


def test_verifier_refuses_a_task_of_another_env():
    task = Task("chain_math/h1/s0-i0", [{"role": "user", "content": "Start with 1."}], "1", {"horizon": 1})
    with pytest.raises(DataError, match="entry_point"):
        CodeVerifier()(task, _episode(task, "1"))
