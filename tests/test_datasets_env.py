"""The ``dataset`` env: question/answer rows from jsonl, parquet, csv and saved dataset dirs.

Every test writes its own small files into ``tmp_path``; no model is loaded.
"""

import json
import pickle

import datasets
import pytest

from envs.datasets import MAX_LISTED, SPEC, DatasetOptions, DatasetSource, normalize_answer
from rl.build import build_task_source
from rl.config import EnvConfig, EvalConfig
from rl.errors import ConfigError, DataError
from rl.types import Completion, Episode, Task, Turn

TEMPLATE = "{problem}\n\nPut the final answer after ####."
MAPPING = {"question_column": "problem", "answer_column": "solution", "template": TEMPLATE}


def qa_rows(n, start=0, prefix="What is"):
    return [{"problem": f"{prefix} {i} + {i}?", "solution": str(2 * i), "level": 1 + i % 3}
            for i in range(start, start + n)]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def options(path, **kw):
    return DatasetOptions(path=str(path), **{**MAPPING, **kw})


def episode(task, text):
    turn = Turn(context_ids=[1], completion=Completion([2], [0.0], text, "stop"))
    return Episode(task=task, group_id=0, turns=[turn])


# --------------------------------------------------------------------------- formats


def write_format(kind, tmp_path, rows):
    table = datasets.Dataset.from_list(rows)
    if kind == "jsonl":
        return write_jsonl(tmp_path / "train.jsonl", rows), None
    if kind == "json":
        (tmp_path / "train.json").write_text(json.dumps(rows))
        return str(tmp_path / "train.json"), None
    if kind == "parquet":
        table.to_parquet(str(tmp_path / "train.parquet"))
        return str(tmp_path / "train.parquet"), None
    if kind == "csv":
        table.to_csv(str(tmp_path / "train.csv"), index=False)
        return str(tmp_path / "train.csv"), None
    if kind == "dir":
        table.save_to_disk(str(tmp_path / "saved"))
        return str(tmp_path / "saved"), None
    datasets.DatasetDict(train=table, test=datasets.Dataset.from_list(qa_rows(3, 100))).save_to_disk(
        str(tmp_path / "dict"))
    return str(tmp_path / "dict"), "train"


@pytest.mark.parametrize("kind", ["jsonl", "json", "parquet", "csv", "dir", "dict"])
def test_each_format_loads_with_a_column_mapping_and_template(kind, tmp_path):
    rows = qa_rows(12)
    path, split = write_format(kind, tmp_path, rows)
    data = options(path, split=split).data
    assert len(data.train) + len(data.eval) == 12
    source = DatasetSource(options(path, split=split), seed=0)
    tasks = source.sample(12)
    by_row = {t.meta["row"]: t for t in tasks}
    task = by_row[4]  # row 4 (1-based) is rows[3]
    assert task.messages == [{"role": "user", "content": "What is 3 + 3?\n\nPut the final answer after ####."}]
    assert task.answer == "6"
    assert {t.meta["row"] for t in tasks} == set(range(1, 13))  # one epoch: every row once


def test_csv_cells_stay_text_and_rows_are_data_rows(tmp_path):
    path = tmp_path / "qa.csv"
    path.write_text("problem,solution\nCode?,007\n\"Comma, inside\",\n")
    with pytest.raises(DataError, match=r"qa\.csv:2: answer is None"):
        options(path)
    data = options(path, on_bad_rows="drop").data
    assert [r.answer for r in data.train + data.eval] == ["007"]


def test_dataset_dict_dir_needs_a_split(tmp_path):
    path, _ = write_format("dict", tmp_path, qa_rows(4))
    with pytest.raises(ConfigError, match=r"env\.split.*\['train', 'test'\]"):
        options(path)
    with pytest.raises(ConfigError, match=r"env\.split.*'dev' is not one"):
        options(path, split="dev")


def test_split_and_path_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"env\.path.*required"):
        DatasetOptions()
    with pytest.raises(ConfigError, match=r"env\.path.*does not exist"):
        options(tmp_path / "missing.jsonl")
    (tmp_path / "data.txt").write_text("x")
    with pytest.raises(ConfigError, match=r"env\.path.*format"):
        options(tmp_path / "data.txt")
    with pytest.raises(ConfigError, match=r"env\.split"):
        options(write_jsonl(tmp_path / "a.jsonl", qa_rows(3)), split="train")
    (tmp_path / "broken.jsonl").write_text(json.dumps(qa_rows(1)[0]) + "\n{not json\n")
    with pytest.raises(DataError, match=r"env\.path.*line 2 is not a JSON object"):
        options(tmp_path / "broken.jsonl")


# --------------------------------------------------------------------------- bad rows


def test_missing_column_names_the_key_and_the_columns_present(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [{"problem": "1 + 1?", "answer": "2"}])
    with pytest.raises(ConfigError, match=r"env\.answer_column.*'solution'.*\['problem', 'answer'\]"):
        options(path)
    with pytest.raises(ConfigError, match=r"env\.template.*'topic'"):
        options(path, answer_column="answer", template="{problem} ({topic})")


def test_template_errors(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", qa_rows(3))
    with pytest.raises(ConfigError, match=r"env\.template.*answer column"):
        options(path, template="{problem} = {solution}")
    with pytest.raises(ConfigError, match=r"env\.template"):
        options(path, template="{problem")
    with pytest.raises(ConfigError, match=r"env\.template.*no placeholder"):
        options(path, template="hello")
    extra = options(path, template="[{level}] {question}")  # {question}: the question column
    assert extra.data.train[0].messages[-1][1].startswith("[")


def test_every_bad_row_is_listed_with_its_row_number(tmp_path):
    rows = qa_rows(10)
    rows[2]["solution"] = ""            # row 3: empty answer
    rows[4]["problem"] = None           # row 5: None question
    rows[7] = dict(rows[1])             # row 8: duplicates row 2
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    held = write_jsonl(tmp_path / "eval.jsonl", [qa_rows(1, 100)[0], rows[5]])  # eval row 2 = train row 6
    with pytest.raises(DataError) as info:
        options(train, eval_path=held)
    message = str(info.value)
    assert "train.jsonl:3: answer is empty (column 'solution')" in message
    assert "train.jsonl:5: question is None (column 'problem')" in message
    assert "train.jsonl:8: duplicates row 2" in message
    assert "train.jsonl:6: same prompt as eval.jsonl:2" in message and "contamination" in message
    assert "4 bad row(s)" in message and "on_bad_rows: drop" in message


def test_bad_rows_in_the_eval_file_and_the_list_is_capped(tmp_path):
    rows = qa_rows(MAX_LISTED + 5)
    for r in rows:
        r["solution"] = None
    train = write_jsonl(tmp_path / "train.jsonl", rows + qa_rows(2, 500))
    held = write_jsonl(tmp_path / "eval.jsonl", [*qa_rows(2, 900), qa_rows(1, 900)[0]])
    with pytest.raises(DataError) as info:
        options(train, eval_path=held)
    message = str(info.value)
    assert f"{MAX_LISTED + 6} bad row(s)" in message and "... and 6 more" in message
    assert "train.jsonl:1: answer is None" in message
    assert message.count("\n  ") == MAX_LISTED + 1
    with pytest.raises(DataError, match=r"env\.eval_path.*\n  eval\.jsonl:3: duplicates row 1"):
        options(write_jsonl(tmp_path / "ok.jsonl", qa_rows(5)), eval_path=held)


def test_drop_leaves_bad_rows_out_and_prints_a_summary(tmp_path, capsys):
    rows = qa_rows(6)
    rows[0]["solution"] = None
    rows[3] = dict(rows[2])
    data = options(write_jsonl(tmp_path / "train.jsonl", rows), on_bad_rows="drop").data
    assert sorted(r.number for r in data.train + data.eval) == [2, 3, 5, 6]
    assert len(data.dropped) == 2
    assert "left out 2 bad row(s)" in capsys.readouterr().err


def test_bad_rows_stop_horizon_train_before_any_model_loads(tmp_path, monkeypatch, capsys):
    import rl.models
    from rl.cli import main

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded before the data was checked")

    monkeypatch.setattr(rl.models, "load_policy", no_model)
    rows = qa_rows(4)
    rows[1]["solution"] = "  "
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"env": {"name": "dataset", "path": write_jsonl(tmp_path / "t.jsonl", rows),
                                          **MAPPING}}))
    code = main(["train", "--config", str(config), "--model", "tiny-random", "--output_dir", str(tmp_path / "run")])
    assert code == 2
    assert "t.jsonl:2: answer is empty" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- splits


def eval_env(tmp_path, **kw):
    train = write_jsonl(tmp_path / "train.jsonl", qa_rows(30))
    held = write_jsonl(tmp_path / "eval.jsonl", qa_rows(5, 100, prefix="Compute"))
    return EnvConfig(name="dataset", options={"path": train, "eval_path": held, **MAPPING, **kw})


def test_eval_file_rows_are_the_held_out_split(tmp_path):
    env = eval_env(tmp_path)
    eval_tasks = build_task_source(env, 0, split="eval").sample(12)
    assert all(t.meta["file"] == "eval.jsonl" and SPEC.heldout(t) for t in eval_tasks)
    assert {t.meta["row"] for t in eval_tasks} == {1, 2, 3, 4, 5}
    eval_prompts = {t.messages[-1]["content"] for t in eval_tasks}
    for seed in range(3):
        train = build_task_source(env, seed).sample(100)
        assert all(t.meta["file"] == "train.jsonl" for t in train)
        assert not eval_prompts & {t.messages[-1]["content"] for t in train}


def test_eval_split_of_a_dataset_dict(tmp_path):
    path, _ = write_format("dict", tmp_path, qa_rows(8))
    data = options(path, split="train", eval_split="test").data
    assert (len(data.train), len(data.eval)) == (8, 3)
    assert all(r.file == "dict[test]" for r in data.eval)


def test_without_an_eval_file_the_prompt_hash_rule_holds_out(tmp_path):
    from envs.base import is_heldout

    env = EnvConfig(name="dataset", options={"path": write_jsonl(tmp_path / "t.jsonl", qa_rows(60)), **MAPPING})
    held = build_task_source(env, 0, split="eval").sample(10)
    assert all(is_heldout(t) for t in held)
    assert not any(is_heldout(t) for t in build_task_source(env, 0).sample(60))


def test_eval_tasks_one_bucket_distinct_tasks_and_a_warning(tmp_path, capsys):
    from rl.evaluate import eval_tasks

    env = eval_env(tmp_path)
    tasks = eval_tasks(env, EvalConfig(horizons=[1], tasks_per_horizon=8))
    assert list(tasks) == [1] and len(tasks[1]) == 5
    assert len({t.messages[-1]["content"] for t in tasks[1]}) == 5
    assert "only 5 distinct held-out tasks" in capsys.readouterr().err
    assert len(eval_tasks(env, EvalConfig(horizons=[1], tasks_per_horizon=3))[1]) == 3


# --------------------------------------------------------------------------- stream


def test_same_seed_same_stream_epochs_reshuffle(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", qa_rows(20))
    opts = options(path, eval_path=write_jsonl(tmp_path / "e.jsonl", qa_rows(2, 50)))

    def ids(seed, n):
        return [t.id for t in build_task_source(EnvConfig("dataset", options=opts), seed).sample(n)]

    assert ids(0, 60) == ids(0, 60)
    assert ids(0, 20) != ids(1, 20)
    first, second = ids(0, 40)[:20], ids(0, 40)[20:]
    assert sorted(first) == sorted(second) == sorted(set(first))  # each epoch: every row once
    assert first != second  # reshuffled


def test_no_shuffle_keeps_file_order(tmp_path):
    source = DatasetSource(options(write_jsonl(tmp_path / "t.jsonl", qa_rows(5)), shuffle=False,
                                   eval_path=write_jsonl(tmp_path / "e.jsonl", qa_rows(2, 50))), seed=3)
    rows = [(t.meta["split"], t.meta["row"]) for t in source.sample(8)]
    assert rows == [("train", 1), ("eval", 1), ("train", 2), ("eval", 2), ("train", 3), ("eval", 1),
                    ("train", 4), ("eval", 2)]


def test_state_dict_restores_the_exact_position(tmp_path):
    env = eval_env(tmp_path)
    source = build_task_source(env, 7)
    source.sample(13)
    state = source.state_dict()
    expected = [t.id for t in source.sample(40)]
    resumed = build_task_source(env, 7)
    resumed.load_state_dict(json.loads(json.dumps(state)))
    assert [t.id for t in resumed.sample(40)] == expected
    resumed.load_state_dict(state)
    assert [t.id for t in pickle.loads(pickle.dumps(resumed)).sample(40)] == expected  # env.isolation: process
    with pytest.raises(DataError, match="seed"):
        build_task_source(env, 8).load_state_dict(state)
    changed = EnvConfig(name="dataset", options={"path": write_jsonl(tmp_path / "other.jsonl", qa_rows(31)), **MAPPING})
    with pytest.raises(DataError, match="changed"):
        build_task_source(changed, 7).load_state_dict(state)


def test_difficulty_column_is_the_horizon_knob(tmp_path):
    source = DatasetSource(options(write_jsonl(tmp_path / "t.jsonl", qa_rows(30)), difficulty_column="level"), 0)
    source.set_horizon(2, 2)
    assert {t.meta["horizon"] for t in source.sample(20)} == {2}
    source.set_horizon(1, 3)
    state = source.state_dict()
    expected = [t.id for t in source.sample(10)]
    fresh = DatasetSource(source.options, 0)
    fresh.load_state_dict(state)
    assert [t.id for t in fresh.sample(10)] == expected
    with pytest.raises(DataError, match=r"env\.difficulty_column.*\[1, 2, 3\]"):
        source.set_horizon(7, 9)


def test_without_difficulty_set_horizon_changes_nothing(tmp_path):
    opts = options(write_jsonl(tmp_path / "t.jsonl", qa_rows(10)))
    a, b = DatasetSource(opts, 0), DatasetSource(opts, 0)
    a.set_horizon(64, 64)
    assert [t.id for t in a.sample(10)] == [t.id for t in b.sample(10)]
    assert all(t.horizon is None for t in a.sample(3))


def test_non_numeric_difficulty_is_a_bad_row(tmp_path):
    rows = qa_rows(4)
    rows[2]["level"] = "hard"
    with pytest.raises(DataError, match=r"t\.jsonl:3: difficulty 'hard' is not a number"):
        options(write_jsonl(tmp_path / "t.jsonl", rows), difficulty_column="level")


def test_system_prompt_and_id_column(tmp_path):
    rows = [{**r, "uid": f"u{i}", "persona": "Be brief." if i == 0 else None} for i, r in enumerate(qa_rows(3))]
    opts = options(write_jsonl(tmp_path / "t.jsonl", rows), id_column="uid", system_column="persona",
                   system_prompt="You are careful.", shuffle=False)
    by_id = {t.id: t for t in DatasetSource(opts, 0).sample(3)}
    assert by_id["dataset/train/t.jsonl:u0"].messages[0] == {"role": "system", "content": "Be brief."}
    assert by_id["dataset/train/t.jsonl:u1"].messages[0] == {"role": "system", "content": "You are careful."}
    rows[2]["uid"] = "u0"
    with pytest.raises(DataError, match=r"t\.jsonl:3: id 'u0' repeats row 1"):
        options(write_jsonl(tmp_path / "t.jsonl", rows), id_column="uid")


# --------------------------------------------------------------------------- scoring


def test_math_verifier_scores_right_and_wrong(tmp_path):
    rows = [{"problem": "Natalia sold 48 clips in April and half as many in May. How many in all?",
             "solution": "In May she sold 48/2 = 24.\n48 + 24 = 72\n#### 72"}]
    (task,) = DatasetSource(options(write_jsonl(tmp_path / "gsm.jsonl", rows)), 0).sample(1)
    assert task.answer == "72" and task.meta["raw_answer"].endswith("#### 72")
    assert SPEC.verifier(task, episode(task, "48 + 24 = 72\n#### 72")).correct
    assert SPEC.verifier(task, episode(task, "#### 72.0")).score == 1.0
    wrong = SPEC.verifier(task, episode(task, "48 + 12 = 60\n#### 60"))
    assert not wrong.correct and wrong.score == 0.0
    assert not SPEC.verifier(task, episode(task, "no final answer here")).correct


def test_exact_and_normalized_matching():
    def task(answer, match):
        return Task(id="t", messages=[{"role": "user", "content": "?"}], answer=answer,
                    meta={"match": match}, source="dataset")

    assert SPEC.verifier(task("Paris", "exact"), episode(task("Paris", "exact"), "#### Paris")).correct
    assert not SPEC.verifier(task("Paris", "exact"), episode(task("Paris", "exact"), "#### paris")).correct
    t = task("The Eiffel Tower", "normalized")
    assert SPEC.verifier(t, episode(t, "The answer is: eiffel tower.")).correct
    assert not SPEC.verifier(t, episode(t, "#### Big Ben")).correct
    assert normalize_answer("  The 3.5-kg  Cat! ") == "3.5 kg cat"


def test_match_option_reaches_the_task(tmp_path):
    rows = [{"problem": "Capital of France?", "solution": "Paris"}]
    (task,) = DatasetSource(options(write_jsonl(tmp_path / "t.jsonl", rows), match="normalized"), 0).sample(1)
    assert task.meta["match"] == "normalized"
    assert SPEC.verifier(task, episode(task, "#### PARIS")).correct
    with pytest.raises(ConfigError, match=r"env\.match"):
        options(write_jsonl(tmp_path / "t.jsonl", rows), match="fuzzy")


# --------------------------------------------------------------------------- config and recipe


def test_build_task_source_from_env_config(tmp_path):
    env = EnvConfig(name="dataset", options={"path": write_jsonl(tmp_path / "t.jsonl", qa_rows(30)),
                                            "eval_path": write_jsonl(tmp_path / "e.jsonl", qa_rows(4, 70)),
                                            **MAPPING})
    (task,) = build_task_source(env, 0, split="eval").sample(1)
    assert task.meta["split"] == "eval"
    with pytest.raises(ConfigError, match=r"unknown config key 'env\.question_col'"):
        EnvConfig.from_raw({"name": "dataset", "path": "x.jsonl", "question_col": "q"})


def test_recipe_config_and_example_data_load():
    from rl.config import load_config
    from rl.trainer.config import TrainConfig

    cfg = load_config(TrainConfig, "recipes/configs/grpo_dataset.yaml")
    data = cfg.env.options.data
    assert len(data.train) + len(data.eval) >= 20 and data.eval and not data.dropped
    for row in data.train + data.eval:
        task = Task(id=row.id, messages=[], answer=row.answer, meta={"match": "math"})
        assert SPEC.verifier(task, episode(task, f"#### {row.answer}")).correct
