"""envs.reasoning_gym: reasoning-gym's tasks through horizon's env contract (no model).

Episodes are faked: a completion whose text holds an answer in the asked-for format.
"""

import json
import os
import pickle
import subprocess
import sys
from collections import Counter, deque
from pathlib import Path

import pytest

from envs.base import TaskSource, is_heldout
from envs.curriculum import CurriculumConfig, CurriculumSource
from envs.reasoning_gym import (KNOBS, SPEC, ReasoningGymConfig, ReasoningGymSource, format_score,
                                partial_credit)
from rl.config import EnvConfig, EvalConfig, RewardConfig
from rl.errors import ConfigError
from rl.types import Completion, Episode, Task, Turn

ROOT = Path(__file__).parents[1]
TASKS = ["tower_of_hanoi", "chain_sum", "basic_arithmetic", "maze", "sokoban", "rush_hour", "knights_knaves",
         "countdown"]


def _source(task="chain_sum", seed=0, low=None, high=None, **kw) -> ReasoningGymSource:
    return ReasoningGymSource(ReasoningGymConfig(task=task, min_horizon=low, max_horizon=high, **kw), seed=seed)


def _episode(task: Task, text: str) -> Episode:
    completion = Completion(token_ids=[], logprobs=[], text=text, finish_reason="stop")
    return Episode(task=task, group_id=0, turns=[Turn(context_ids=[], completion=completion)])


def _answered(task: Task, answer: str) -> Episode:
    return _episode(task, f"Let me think.\n<answer>\n{answer}\n</answer>")


def _solve_rush_hour(board: str) -> str:
    """A shortest solution in one-cell moves ("B+1 A-1 ..."), by breadth-first search over board
    strings (6x6, 'o' empty, 'x' wall, letters cars; solved when car A covers cells 16-17). The
    prompt (and the scorer) names the cars A, B, C... in the order of their labels here."""
    labels = sorted(set(board) - {"o", "x"})
    name = {label: chr(ord("A") + i) for i, label in enumerate(labels)}
    seen, queue = {board: ""}, deque([board])
    while queue:
        state = queue.popleft()
        if state[16] == state[17] == "A":
            return seen[state].strip()
        for label in labels:
            cells = [i for i, c in enumerate(state) if c == label]
            stride = cells[1] - cells[0]
            for sign in (1, -1):
                head, tail = (cells[-1], cells[0]) if sign > 0 else (cells[0], cells[-1])
                nxt = head + sign * stride
                if not 0 <= nxt < 36 or state[nxt] != "o" or (stride == 1 and nxt // 6 != head // 6):
                    continue
                new = list(state)
                new[nxt], new[tail] = label, "o"
                new = "".join(new)
                if new not in seen:
                    seen[new] = f"{seen[state]} {name[label]}{'+' if sign > 0 else '-'}1"
                    queue.append(new)
    raise AssertionError(f"unsolvable board {board}")


def _reference(task: Task) -> str:
    """A correct answer: reasoning-gym's reference, or for rush_hour (which has none) a BFS solution."""
    if task.meta["task"] == "rush_hour":
        return _solve_rush_hour(task.meta["entry"]["metadata"]["board_config"])
    return task.answer


def _flip_first_person(task: Task) -> str:
    terms = task.meta["entry"]["metadata"]["knight_knave_terms"]
    first, rest = task.answer.split(",", 1)
    for a, b in ((terms["a_knight"], terms["a_knave"]), (terms["a_knave"], terms["a_knight"])):
        if first.endswith(a):
            return first[: -len(a)] + b + "," + rest
    raise AssertionError(task.answer)


def _wrong(task: Task) -> str:
    """A wrong answer per task (some earn reasoning-gym's partial credit)."""
    name, answer = task.meta["task"], _reference(task)
    if name in ("chain_sum", "basic_arithmetic", "maze"):
        return str(int(answer) + 1)
    if name == "tower_of_hanoi":
        return answer.rsplit("\n", 1)[0]  # every move valid, one short: unsolved (0.05)
    if name == "sokoban":
        return answer[:-1]  # the reference stops at the first solved state: one move short is not solved
    if name == "rush_hour":
        return answer.rsplit(" ", 1)[0]  # one move short (0.01 for a parseable answer)
    if name == "knights_knaves":
        return _flip_first_person(task)  # partial: 0.3 + 0.7 * (n - 1) / n
    return f"{answer} + 1"  # countdown: uses a number it does not have (0.05)


def _difficulty(task: Task) -> int:
    """What the generated item says its difficulty is, in the knob's unit."""
    meta = task.meta["entry"]["metadata"]
    name = task.meta["task"]
    return {"chain_sum": lambda: meta["num_terms"], "basic_arithmetic": lambda: meta["num_terms"],
            "tower_of_hanoi": lambda: meta["num_disks"], "maze": lambda: meta["shortest_path_length"],
            "sokoban": lambda: len(task.answer), "rush_hour": lambda: meta["min_moves"],
            "knights_knaves": lambda: len(meta["names"]), "countdown": lambda: len(meta["numbers"])}[name]()


@pytest.mark.parametrize("name", TASKS)
def test_deterministic_per_seed_and_json_meta(name):
    a, b, c = (_source(name, seed=s).sample(3) for s in (0, 0, 1))
    assert a == b
    assert [t.messages for t in a] != [t.messages for t in c]
    for task in a:
        assert task.source == "reasoning_gym" and task.meta["task"] == name
        assert task.messages[-1]["content"].startswith(task.meta["entry"]["question"])
        assert "<answer>" in task.messages[-1]["content"]
        assert json.loads(json.dumps(task.meta)) == task.meta  # plain JSON data: records round-trip
        assert task.horizon == _difficulty(task)


def test_same_tasks_in_another_process_with_another_hash_seed():
    """reasoning-gym's generation does not depend on PYTHONHASHSEED (set iteration order) or on
    anything of this process: a fresh interpreter draws the identical prompts."""
    code = ("import json; from envs.reasoning_gym import ReasoningGymSource, ReasoningGymConfig; "
            f"print(json.dumps({{n: [t.messages[0]['content'] for t in ReasoningGymSource("
            f"ReasoningGymConfig(task=n), seed=3).sample(2)] for n in {TASKS!r}}}))")
    env = {**os.environ, "PYTHONHASHSEED": "12345", "OMP_WAIT_POLICY": "PASSIVE"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout
    here = {n: [t.messages[0]["content"] for t in _source(n, seed=3).sample(2)] for n in TASKS}
    assert json.loads(out.strip().splitlines()[-1]) == here


@pytest.mark.parametrize("name", TASKS)
def test_reference_scores_one_and_wrong_answer_does_not(name):
    low = max(KNOBS[name].low, 3)
    for task in _source(name, seed=2, low=low, high=low + 1).sample(2):
        right = SPEC.verifier(task, _answered(task, _reference(task)))
        assert right.correct and right.score == 1.0 and right.details["rg_score"] == 1.0
        wrong = SPEC.verifier(task, _answered(task, _wrong(task)))
        assert not wrong.correct and wrong.score == 0.0 and wrong.details["rg_score"] < 1.0
        untagged = SPEC.verifier(task, _episode(task, _reference(task)))  # no <answer> tags: no answer
        assert not untagged.correct and untagged.details["answer"] is None


@pytest.mark.parametrize("name", TASKS)
def test_set_horizon_moves_the_knob(name):
    knob = KNOBS[name]
    low, high = knob.low, min(knob.low + 3, knob.high)
    source = _source(name, seed=1)
    for h in (low, high):
        source.set_horizon(h, h)
        tasks = source.sample(2)
        assert [t.horizon for t in tasks] == [h, h]
        assert [_difficulty(t) for t in tasks] == [h, h]
        assert f"/h{h}/" in tasks[0].id
    source.set_horizon(low, high)
    assert {t.horizon for t in source.sample(40)} == set(range(low, high + 1))
    with pytest.raises(ConfigError, match="env.min_horizon"):
        source.set_horizon(knob.high + 1)


def test_partial_credit_is_its_own_logged_weighted_term():
    from rl.build import build_reward

    env = EnvConfig(name="reasoning_gym", options={"task": "knights_knaves", "min_horizon": 2, "max_horizon": 2,
                                                   "partial_credit_weight": 0.5})
    reward_fn = build_reward(env, RewardConfig(verifier_timeout_s=0, format_weight=0.1))
    task = ReasoningGymSource(env.options, seed=0).sample(1)[0]
    episode = _answered(task, _flip_first_person(task))
    reward_fn(episode)
    assert episode.reward_terms == pytest.approx({"outcome": 0.0, "format": 1.0, "partial": 0.3 + 0.7 / 2})
    assert episode.reward == pytest.approx(0.5 * 0.65 + 0.1 * 1.0)
    assert not episode.outcome.correct
    solved = _answered(task, task.answer)
    reward_fn(solved)
    assert solved.reward_terms == {"outcome": 1.0, "format": 1.0, "partial": 0.0}
    assert solved.reward == pytest.approx(1.1)
    assert partial_credit(task, _episode(task, "no tags")) == 0.0 and format_score("no tags") == 0.0
    assert ReasoningGymConfig().partial_credit_weight == 0.0  # logged, not trained on, unless asked


def test_verifier_and_partial_term_run_isolated_in_a_worker():
    """The default path (reward.verifier_timeout_s > 0): verifier and term are pickled to workers."""
    from rl.build import build_reward

    env = EnvConfig(name="reasoning_gym", options={"task": "tower_of_hanoi", "min_horizon": 3,
                                                   "max_horizon": 3, "partial_credit_weight": 1.0})
    reward_fn = build_reward(env, RewardConfig(verifier_timeout_s=60))  # workers stop when it is collected
    task = ReasoningGymSource(env.options, seed=0).sample(1)[0]
    episode = _answered(task, _wrong(task))
    reward_fn(episode)
    assert not episode.errors, episode.errors
    assert episode.reward_terms["partial"] == pytest.approx(0.05) and episode.reward_terms["outcome"] == 0.0


def test_weighted_mix_draws_each_task_at_its_weight():
    mix = ReasoningGymSource(ReasoningGymConfig(tasks={"chain_sum": 3, "basic_arithmetic": 1}), seed=0)
    counts = Counter(t.meta["task"] for t in mix.sample(800))
    assert counts["chain_sum"] / 800 == pytest.approx(0.75, abs=0.05)
    as_list = ReasoningGymSource(ReasoningGymConfig(tasks=[
        {"name": "chain_sum", "weight": 1, "config": {"max_digits": 1}},
        {"name": "maze", "weight": 1}]), seed=0)
    tasks = as_list.sample(60)
    assert set(Counter(t.meta["task"] for t in tasks)) == {"chain_sum", "maze"}
    assert all(t.meta["entry"]["metadata"]["num_digits"] == 1 for t in tasks if t.meta["task"] == "chain_sum")
    as_list.set_horizon(7, 7)  # one horizon for every task with a knob
    assert {_difficulty(t) for t in as_list.sample(10)} == {7}


def test_state_dict_round_trip_gives_the_same_next_tasks():
    source = _source("countdown", seed=4)
    source.sample(3)
    source.set_horizon(3, 5)
    source.sample(2)
    state = json.loads(json.dumps(source.state_dict()))  # a checkpoint holds plain JSON
    expected = source.sample(4)
    resumed = _source("countdown", seed=4)
    resumed.load_state_dict(state)
    assert resumed.sample(4) == expected
    clone = pickle.loads(pickle.dumps(source))  # an env worker gets the source through make_env
    assert clone.state_dict() == source.state_dict() and clone.sample(1) == source.sample(1)
    assert isinstance(source, TaskSource) and source.make_env(expected[0]).reset() == expected[0].messages
    with pytest.raises(Exception, match="seed"):
        _source("countdown", seed=5).load_state_dict(state)


@pytest.mark.parametrize("options, key, hint", [
    ({"task": "chain_summ"}, "env.task", "chain_sum"),
    ({"task": "chain_sum", "task_config": {"max_digit": 3}}, "env.task_config.max_digit", "max_digits"),
    ({"task": "chain_sum", "task_config": {"min_terms": 3}}, "env.task_config.min_terms", "env.min_horizon"),
    ({"task": "chain_sum", "task_config": {"seed": 3}}, "env.task_config.seed", "seed"),
    ({"task": "chain_sum", "task_config": {"min_digits": 0}}, "env.task_config", "min_digits must be positive"),
    ({"tasks": {"chain_sum": 1, "mazes": 2}}, "env.tasks.mazes", "maze"),
    ({"tasks": {"chain_sum": 0}}, "env.tasks.chain_sum", "weight"),
    ({"tasks": [{"name": "maze", "wieght": 2}]}, "env.tasks[0].wieght", "weight"),
    ({"tasks": [{"name": "maze", "config": {"max_dst": 3}}]}, "env.tasks[0].config.max_dst", "max_dist"),
    ({"task": "maze", "tasks": {"maze": 1}}, "env.task", "both"),
    ({"task": "knights_knaves", "min_horizon": 1, "max_horizon": 3}, "env.min_horizon", "2..10"),
    ({"task": "word_sorting", "max_horizon": 4}, "env.min_horizon", "no horizon knob"),
])
def test_bad_config_names_the_key(options, key, hint):
    with pytest.raises(ConfigError, match=rf"'{__import__('re').escape(key)}'") as info:
        EnvConfig.from_raw({"name": "reasoning_gym", **options})
    assert hint in str(info.value)


def test_task_without_a_knob_keeps_its_difficulty():
    source = _source("word_sorting", seed=0)
    (task,) = source.sample(1)
    assert task.horizon is None and "/h-/" in task.id
    assert SPEC.verifier(task, _answered(task, task.answer)).correct
    source.set_horizon(1, 1)  # `horizon eval` with eval.horizons: [1]
    with pytest.raises(ConfigError, match="no horizon knob"):
        source.set_horizon(2, 2)
    mix = ReasoningGymSource(ReasoningGymConfig(tasks={"chain_sum": 1, "word_sorting": 1}), seed=0)
    mix.set_horizon(5, 5)  # the task with a knob moves, the other keeps its config
    assert {t.horizon for t in mix.sample(20)} == {5, None}


def test_curriculum_level_check_and_sampling():
    source = _source("chain_sum", seed=0)
    source.set_horizon(1, 16)  # what the trainer checks before loading a model (curriculum min..max level)
    with pytest.raises(ConfigError, match="knights_knaves"):
        _source("knights_knaves").set_horizon(1, 16)
    curriculum = CurriculumSource(source, CurriculumConfig(enabled=True, start=4, width=2), seed=0)
    assert {t.horizon for t in curriculum.sample(12)} <= {3, 4}


def test_build_task_source_and_eval_tasks_from_config():
    from rl.build import build_task_source
    from rl.evaluate import eval_tasks

    env = EnvConfig(name="reasoning_gym", options={"task": "chain_sum", "task_config": {"max_digits": 2}})
    eval_source = build_task_source(env, seed=0, split="eval")
    assert all(is_heldout(t) for t in eval_source.sample(3))
    train = {t.messages[0]["content"] for t in build_task_source(env, seed=0, split="train").sample(30)}
    assert all(not is_heldout(t) for t in build_task_source(env, seed=0).sample(5))
    tasks = eval_tasks(env, EvalConfig(horizons=[2, 6], tasks_per_horizon=4))
    assert {h: [t.horizon for t in ts] for h, ts in tasks.items()} == {2: [2] * 4, 6: [6] * 4}
    prompts = [t.messages[0]["content"] for ts in tasks.values() for t in ts]
    assert len(set(prompts)) == 8 and not set(prompts) & train
