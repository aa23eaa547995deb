"""Envs in a worker process: a crash or hang costs only its episodes, the worker comes back."""

import os
import time

from envs.base import SingleTurnEnv, StepResult
from rl.rollout.env_worker import ProcessEnvs
from rl.rollout.runner import Runner
from rl.types import Completion, Task


class _FragileEnv(SingleTurnEnv):
    def step(self, action):
        if "crash" in self.task.id:
            os._exit(3)  # takes the whole interpreter down, as a segfault would
        if "hang" in self.task.id:
            time.sleep(60)
        return StepResult(observation=None, done=True, info={"pid": os.getpid()})


def make_fragile_env(task):
    return _FragileEnv(task)


class _EchoEngine:
    name = "echo"

    def generate(self, prompts, params, n=1):
        return [[Completion([5], [-0.1], "done", "stop") for _ in range(n)] for _ in prompts]


def test_crashing_and_hanging_envs_are_contained(tokenizer):
    envs = ProcessEnvs(make_fragile_env, timeout_s=3.0)
    try:
        runner = Runner(_EchoEngine(), tokenizer, envs, env_timeout_s=None)

        def run(*names):
            tasks = [Task(id=n, messages=[{"role": "user", "content": n}], answer="1") for n in names]
            groups = runner.run(tasks, group_size=1, params=None)
            return {g.task.id: " ".join(e.message for e in g.episodes[0].errors) for g in groups}

        errors = run("ok-1", "crash", "ok-2")
        assert errors["ok-1"] == ""  # stepped before the crash
        assert "worker died" in errors["crash"] and "exit code 3" in errors["crash"]
        assert errors["ok-2"] == ""  # it lived in the worker that died: rebuilt by replay
        errors = run("hang", "ok-3")
        assert "took over 3 s" in errors["hang"] and errors["ok-3"] == ""
        # the worker is back: a new env works, in a process that is not ours
        env = envs(Task(id="ok-3", messages=[{"role": "user", "content": "x"}], answer="1"))
        env.reset()
        assert env.step("a").info["pid"] != os.getpid()
    finally:
        envs.close()


def test_grpo_runs_with_process_isolated_envs(tmp_path, tiny_path):
    from rl.config import load_config
    from rl.trainer.config import TrainConfig
    from rl.trainer.loop import train
    from rl.run.io import read_jsonl

    cfg = load_config(TrainConfig, None, [
        "--model", str(tiny_path), "--output_dir", str(tmp_path / "run"), "--max_steps", "1",
        "--rollout.engine", "hf", "--rollout.prompts_per_step", "2", "--rollout.group_size", "2",
        "--rollout.max_new_tokens", "8", "--progress", "false", "--env.isolation", "process"])
    (row,) = read_jsonl(train(cfg) / "metrics.jsonl")
    assert row["errors/env"] == 0.0 and row["reward/mean"] is not None
