"""A user's env, defined only here, trains and is evaluated through ``env.name: test_user_env:SPEC``.

``SPEC`` (sort N words) is the complete small env the README shows: options, a seeded task
source with a horizon knob, a verifier, and an oracle. ``PARITY`` is a scripted env for tests
that need real gradients from a random model: its score is the share of even token ids.
"""

import random
from dataclasses import dataclass

import pytest

from envs.base import EnvSpec, SingleTurnEnv
from rl.errors import ConfigError
from rl.types import Episode, Outcome, Task

WORDS = ["apple", "birch", "cedar", "delta", "ember", "fjord", "grove", "heron", "indigo", "juniper"]


@dataclass(frozen=True)
class SortOptions:
    min_horizon: int = 2
    max_horizon: int = 4

    def __post_init__(self):
        if not 2 <= self.min_horizon <= self.max_horizon <= len(WORDS):
            raise ConfigError(f"config key 'env.max_horizon': need 2 <= min_horizon <= max_horizon <= {len(WORDS)}")


class SortSource:
    """Task i: sort ``horizon`` words; a pure function of (seed, i, horizon window)."""

    def __init__(self, options: SortOptions, seed: int):
        self.options, self.seed, self.position = options, seed, 0
        self.low, self.high = options.min_horizon, options.max_horizon

    def task_at(self, i: int) -> Task:
        rng = random.Random(f"sort:{self.seed}:{i}:{self.low}-{self.high}")
        words = rng.sample(WORDS, rng.randint(self.low, self.high))
        prompt = f"Sort these words alphabetically, one per line: {' '.join(words)}"
        return Task(id=f"sort/s{self.seed}-i{i}", messages=[{"role": "user", "content": prompt}],
                    answer="\n".join(sorted(words)), meta={"horizon": len(words)}, source="sort")

    def sample(self, n: int) -> list[Task]:
        tasks = [self.task_at(self.position + k) for k in range(n)]
        self.position += n
        return tasks

    def set_horizon(self, low: int, high: int | None = None) -> None:
        self.low, self.high = low, low if high is None else high

    def state_dict(self) -> dict:
        return {"position": self.position, "low": self.low, "high": self.high}

    def load_state_dict(self, state: dict) -> None:
        self.position, self.low, self.high = state["position"], state["low"], state["high"]

    def make_env(self, task: Task) -> SingleTurnEnv:
        return SingleTurnEnv(task)


def verify_sorted(task: Task, episode: Episode) -> Outcome:
    lines = [w.strip() for w in episode.final_text.splitlines() if w.strip()]
    return Outcome(score=float(lines == task.answer.split("\n")), correct=lines == task.answer.split("\n"))


SPEC = EnvSpec(name="sort_words", options=SortOptions, make_source=SortSource, verifier=verify_sorted,
               oracle=lambda task: task.answer)


def verify_parity(task: Task, episode: Episode) -> Outcome:
    """A reward a random model earns in varying amounts: the share of even token ids."""
    ids = episode.turns[-1].completion.token_ids
    share = sum(t % 2 == 0 for t in ids) / max(len(ids), 1)
    return Outcome(share, share > 0.5)


PARITY = EnvSpec(name="parity", options=SortOptions, make_source=SortSource, verifier=verify_parity)

SMALL = ["--model", "tiny-random", "--rollout.engine", "hf", "--rollout.prompts_per_step", "2",
         "--rollout.group_size", "2", "--rollout.max_new_tokens", "8", "--progress", "false",
         "--dtype", "float32", "--reward.verifier_timeout_s", "0"]


def test_a_user_env_trains_and_evaluates_by_dotted_path(tmp_path):
    from rl.config import EvalConfig, load_config
    from rl.run.io import read_jsonl
    from rl.trainer.config import TrainConfig
    from rl.trainer.loop import train
    from rl.trainer.run_eval import evaluate_run

    cfg = load_config(TrainConfig, None, [*SMALL, "--env.name", "test_user_env:SPEC", "--env.max_horizon", "3",
                                          "--max_steps", "2", "--output_dir", str(tmp_path / "run")])
    run = train(cfg)
    assert [r["step"] for r in read_jsonl(run / "metrics.jsonl")] == [1, 2]
    records = list(read_jsonl(run / "rollouts" / "step_2.jsonl"))
    assert len(records) == 4 and all(r["task_id"].startswith("sort/") and r["horizon"] in (2, 3) for r in records)
    saved = load_config(TrainConfig, run / "config.yaml")  # the run's config reads back with its env options
    assert saved.env.name == "test_user_env:SPEC" and saved.env.options == SortOptions(2, 3)
    result = evaluate_run(run, EvalConfig(horizons=[2, 3], tasks_per_horizon=2, max_new_tokens=8, engine="hf"))
    assert set(result["pass@1"]) == {2, 3} and result["step"] == 2 and result["verifier_errors"] == 0


def test_unknown_env_names_and_options_are_config_errors():
    from rl.config import load_config
    from rl.trainer.config import TrainConfig

    with pytest.raises(ConfigError, match="'env.name': unknown env 'chain_maths': did you mean 'chain_math'"):
        load_config(TrainConfig, None, ["--env.name", "chain_maths"])
    with pytest.raises(ConfigError, match="'env.name': cannot import 'no_such_module'"):
        load_config(TrainConfig, None, ["--env.name", "no_such_module:SPEC"])
    with pytest.raises(ConfigError, match="'test_user_env:WORDS' is list, not an envs.base.EnvSpec"):
        load_config(TrainConfig, None, ["--env.name", "test_user_env:WORDS"])
    with pytest.raises(ConfigError, match="unknown config key 'env.max_horizn' — did you mean 'env.max_horizon'"):
        load_config(TrainConfig, None, ["--env.name", "test_user_env:SPEC", "--env.max_horizn", "3"])
    with pytest.raises(ConfigError, match="'env.max_horizon': need 2 <="):
        load_config(TrainConfig, None, ["--env.name", "test_user_env:SPEC", "--env.max_horizon", "99"])
