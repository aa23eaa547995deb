import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envs.base import SingleTurnEnv, TaskSource
from envs.chain_math import ChainMathConfig, ChainMathSource, oracle_solution, step_labels
from rewards.math import MathVerifier
from rewards.prm.metrics import first_error
from rl.errors import ConfigError, DataError
from rl.types import Completion, Episode, Task, Turn
from rl.types import split_steps


def _source(low=1, high=8, seed=0, **kw) -> ChainMathSource:
    return ChainMathSource(ChainMathConfig(min_horizon=low, max_horizon=high, **kw), seed=seed)


def _task(horizon: int, seed: int = 0) -> Task:
    return _source(horizon, horizon, seed).sample(1)[0]


def _episode(task: Task, text: str) -> Episode:
    completion = Completion(token_ids=[], logprobs=[], text=text, finish_reason="stop")
    return Episode(task=task, group_id=0, turns=[Turn(context_ids=[], completion=completion)])


def _with_value(line: str, value: int) -> str:
    """Replace the number after the last '=' of an oracle line."""
    head, _ = line.rsplit("=", 1)
    return f"{head}= {value}"


def test_worked_example_from_meta():
    task = Task(id="t", messages=[], answer="32", source="chain_math",
                meta={"horizon": 3, "start": 7, "ops": [["add", 5], ["multiply", 3],
                                                        ["subtract", 4]], "values": [12, 36, 32]})
    assert oracle_solution(task) == "7 + 5 = 12\n12 * 3 = 36\n36 - 4 = 32\n#### 32"


def test_task_fields_and_prompt():
    source = _source(3, 3, seed=5)
    assert isinstance(source, TaskSource)
    task = source.sample(1)[0]
    assert task.id == "chain_math/h3/s5-i0"
    assert task.source == "chain_math" and task.meta["source"] == "chain_math"
    assert task.horizon == 3 and len(task.meta["ops"]) == 3 and len(task.meta["values"]) == 3
    assert task.answer == str(task.meta["values"][-1])
    (message,) = task.messages
    assert message["role"] == "user"
    assert message["content"].startswith(f"Start with {task.meta['start']}. ")
    assert "####" in message["content"]
    json.dumps(task.meta)  # rollout records must serialise
    env = source.make_env(task)
    assert isinstance(env, SingleTurnEnv) and env.reset() == task.messages
    assert env.step(oracle_solution(task)).done


def test_values_follow_ops():
    for task in _source(1, 64, seed=3).sample(20):
        value = task.meta["start"]
        for (op, x), got in zip(task.meta["ops"], task.meta["values"]):
            value = {"add": value + x, "subtract": value - x, "multiply": value * x}[op]
            assert got == value
            if op == "multiply":
                assert 2 <= x <= 5
            else:
                assert 1 <= x <= 20
        assert 1 <= task.meta["start"] <= 20


def test_value_cap():
    for task in _source(64, 64, seed=1).sample(10):
        assert max(abs(v) for v in task.meta["values"]) <= 999
    uncapped = _source(64, 64, seed=1, ops=("multiply",), max_abs_value=None).sample(1)[0]
    assert abs(uncapped.meta["values"][-1]) >= 2**64


def test_same_seed_same_tasks_different_seed_different():
    a, b, c = _source(seed=0).sample(10), _source(seed=0).sample(10), _source(seed=1).sample(10)
    assert a == b
    assert [t.messages for t in a] != [t.messages for t in c]
    # the stream depends on position only, not on how it was drawn in batches
    batched = _source(seed=0)
    assert batched.sample(4) + batched.sample(6) == a


def test_state_dict_round_trip():
    source = _source(2, 6, seed=7)
    source.sample(5)
    source.set_horizon(3, 9)
    state = source.state_dict()
    expected = source.sample(4)
    restored = _source(1, 1, seed=7)
    restored.load_state_dict(json.loads(json.dumps(state)))
    assert restored.sample(4) == expected
    assert restored.state_dict()["position"] == 9


def test_load_state_dict_rejects_other_seed_and_missing_keys():
    state = _source(seed=1).state_dict()
    with pytest.raises(DataError, match="seed"):
        _source(seed=2).load_state_dict(state)
    with pytest.raises(DataError, match="position"):
        _source().load_state_dict({"min_horizon": 1, "max_horizon": 2})


def test_horizon_range_respected():
    source = _source(3, 5)
    horizons = {t.horizon for t in source.sample(60)}
    assert horizons == {3, 4, 5}
    source.set_horizon(7)
    assert {t.horizon for t in source.sample(10)} == {7}
    assert all(t.id.startswith("chain_math/h7/") for t in source.sample(3))


@pytest.mark.parametrize("field,kwargs", [
    ("min_horizon", {"min_horizon": 0, "max_horizon": 4}),
    ("max_horizon", {"min_horizon": 1, "max_horizon": 65}),
    ("min_horizon", {"min_horizon": 5, "max_horizon": 4}),
    ("operand_range", {"operand_range": (5, 1)}),
    ("mul_range", {"mul_range": (0, 3)}),
    ("ops", {"ops": ("add", "divide")}),
    ("ops", {"ops": ()}),
    ("max_abs_value", {"max_abs_value": 0}),
])
def test_config_validation_names_the_field(field, kwargs):
    with pytest.raises(ConfigError, match=field):
        ChainMathConfig(**kwargs)


def test_set_horizon_validated():
    source = _source()
    with pytest.raises(ConfigError, match="'env.min_horizon': 0 must be in 1..64"):
        source.set_horizon(0)
    with pytest.raises(ConfigError, match="'env.max_horizon': 65 must be in 1..64"):
        source.set_horizon(1, 65)
    with pytest.raises(ConfigError, match="1..64"):
        source.set_horizon(65)


def test_config_accepts_lists_from_yaml():
    cfg = ChainMathConfig(start_range=[2, 3], ops=["add"])
    assert cfg.start_range == (2, 3) and cfg.ops == ("add",)


@pytest.mark.parametrize("horizon", [1, 2, 8, 64])
def test_oracle_is_correct_and_fully_labelled(horizon):
    for task in _source(horizon, horizon, seed=horizon).sample(3):
        text = oracle_solution(task)
        lines = split_steps(text)
        assert len(lines) == horizon + 1
        outcome = MathVerifier()(task, _episode(task, text))
        assert outcome.score == 1.0 and outcome.correct
        labels = step_labels(task, lines)
        assert labels == [True] * (horizon + 1)
        assert first_error(labels) is None


def test_corrupting_one_line_flips_only_its_label():
    task = _task(8)
    lines = split_steps(oracle_solution(task))
    for k in range(8):
        bad = list(lines)
        bad[k] = _with_value(bad[k], task.meta["values"][k] + 1)
        labels = step_labels(task, bad)
        assert labels == [i != k for i in range(9)]
        assert first_error(labels) == k


def test_corrupting_the_final_line_flips_only_the_final_label():
    task = _task(5)
    lines = split_steps(oracle_solution(task))
    lines[-1] = f"#### {int(task.answer) - 1}"
    assert step_labels(task, lines) == [True] * 5 + [False]
    outcome = MathVerifier()(task, _episode(task, "\n".join(lines)))
    assert outcome.score == 0.0 and not outcome.correct


def test_mistake_carried_forward_is_false():
    # 7 + 5 = 12, 12 * 3 = 36, 36 - 4 = 32; the policy slips at step 0 then computes correctly
    task = Task(id="t", messages=[], answer="32", source="chain_math",
                meta={"horizon": 3, "start": 7, "ops": [["add", 5], ["multiply", 3],
                                                        ["subtract", 4]], "values": [12, 36, 32]})
    lines = ["7 + 5 = 13", "13 * 3 = 39", "39 - 4 = 35", "#### 35"]
    assert step_labels(task, lines) == [False, False, False, False]
    assert first_error(step_labels(task, lines)) == 0
    # recovering to the true value is True again (labels are absolute)
    assert step_labels(task, ["7 + 5 = 13", "12 * 3 = 36", "36 - 4 = 32", "#### 32"]) == [
        False, True, True, True]
    # the right answer before the last operation's line: operations were skipped, so it is not a right step
    assert step_labels(task, ["7 + 5 = 12", "12 * 3 = 36", "#### 32"]) == [True, True, False]
    assert step_labels(task, ["#### 32"]) == [False]


def test_extra_and_unparseable_lines_are_false():
    task = _task(2)
    lines = split_steps(oracle_solution(task))
    assert step_labels(task, lines[:2] + ["Let me double-check.", lines[2]]) == [
        True, True, False, True]
    assert step_labels(task, ["no numbers here", "???"]) == [False, False]
    assert step_labels(task, []) == []


def test_number_formats():
    task = Task(id="t", messages=[], answer="-1234", source="chain_math",
                meta={"horizon": 3, "start": 6, "ops": [["subtract", 10], ["multiply", 3],
                                                        ["subtract", 1222]],
                      "values": [-4, -12, -1234]})
    lines = ["6-10=\u22124", "Step 2: (-4) * 3 = -12.0.", "-12 - 1,222 = -1,234", "#### \u22121234"]
    assert step_labels(task, lines) == [True, True, True, True]
    assert step_labels(task, ["6 - 10 = 4", "x-12", "1234", "####"]) == [
        False, False, False, False]


def test_split_steps():
    assert split_steps("  a = 1 \r\n\n\t\n b = 2\n#### 2\n") == ["a = 1", "b = 2", "#### 2"]
    assert split_steps("") == []


def test_first_error():
    assert first_error([]) is None
    assert first_error([True, True]) is None
    assert first_error([True, False, True, False]) == 1


def test_step_labels_need_chain_math_meta():
    with pytest.raises(DataError, match="values"):
        step_labels(Task(id="x", messages=[], answer="1"), ["1"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(), max_size=12))
def test_step_labels_never_raise(step_texts):
    task = _task(4)
    labels = step_labels(task, step_texts)
    assert len(labels) == len(step_texts) and all(isinstance(x, bool) for x in labels)
    assert all(isinstance(s, str) and s for s in split_steps("\n".join(step_texts)))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["####", "-", "\u2212", "1", "9", ",", ".", " ", "=", "x", "\n",
                                 "(", ")", "000", "1,234", "e5"]), max_size=40))
def test_step_labels_never_raise_on_number_like_text(pieces):
    task = _task(3)
    text = "".join(pieces)
    assert len(step_labels(task, split_steps(text))) == len(split_steps(text))


def test_tasks_of_other_horizons_are_not_prefixes():
    short, long = _task(4), _task(32)
    assert long.meta["ops"][:4] != short.meta["ops"] or long.meta["start"] != short.meta["start"]
