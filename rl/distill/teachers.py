"""Teachers for distillation: anything that writes solutions to tasks as text.

A teacher has ``name`` (recorded in the traces' provenance), ``solve(tasks, k)`` returning k
texts per task, and ``close()``. Three kinds:

- ``OracleTeacher``: an env's exact solver (its spec's ``oracle``); one trace per task.
- ``EngineTeacher``: a local model sampled by a rollout engine (vLLM or transformers).
- ``OpenAITeacher``: any OpenAI-compatible chat endpoint (vLLM serve, llama.cpp, a hosted API).

Example::

    teacher = build_teacher(TeacherConfig(kind="oracle"), EnvConfig(name="chain_math"))
    teacher.solve(tasks, k=1)[0]        # ["3 + 4 = 7\\n#### 7"]
"""

from __future__ import annotations

import os
from typing import Callable

from rl.config import EnvConfig, RolloutConfig
from rl.distill.config import TeacherConfig
from rl.errors import ConfigError
from rl.types import Task


class OracleTeacher:
    """An exact solver ``solve_one(task) -> text``; k is ignored (it is deterministic)."""

    def __init__(self, solve_one: Callable[[Task], str], name: str):
        self.solve_one = solve_one
        self.name = name

    def solve(self, tasks: list[Task], k: int = 1) -> list[list[str]]:
        return [[self.solve_one(t)] for t in tasks]

    def close(self) -> None:
        pass


class EngineTeacher:
    """A local model sampled with a rollout engine through the chat template."""

    def __init__(self, model: str, engine: str, temperature: float, max_new_tokens: int,
                 device: str = "auto", seed: int = 0):
        from rl.build import build_engine
        from rl.models import load_policy
        from rl.rollout.base import SamplingParams

        self.policy = load_policy(model, lora=None, device=device, trainable=False)
        self.engine = build_engine(RolloutConfig(engine=engine), self.policy, seed=seed)
        self.params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed,
                                     stop_token_ids=(self.policy.tokenizer.eos_token_id,))
        self.name = f"model:{model}"

    def solve(self, tasks: list[Task], k: int = 1) -> list[list[str]]:
        from rl.rollout.chat import render_prompt

        prompts = [render_prompt(self.policy.tokenizer, t.messages) for t in tasks]
        groups = self.engine.generate(prompts, self.params, n=k)
        return [[c.text for c in group] for group in groups]

    def close(self) -> None:
        self.engine.close()


class OpenAITeacher:
    """Chat completions from an OpenAI-compatible endpoint (``n=k`` samples per request)."""

    def __init__(self, base_url: str, model: str, api_key: str, temperature: float,
                 max_new_tokens: int, max_workers: int = 8, timeout_s: float = 120.0):
        import openai

        self.client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=2)
        self.model, self.temperature, self.max_tokens = model, temperature, max_new_tokens
        self.max_workers = max_workers
        self.name = f"openai:{model}@{base_url}"

    def _one(self, task: Task, k: int) -> list[str]:
        reply = self.client.chat.completions.create(
            model=self.model, messages=task.messages, n=k,
            temperature=self.temperature, max_tokens=self.max_tokens,
        )
        return [choice.message.content or "" for choice in reply.choices]

    def solve(self, tasks: list[Task], k: int = 1) -> list[list[str]]:
        """k texts per task; a request that fails raises (the endpoint is down: nothing to keep)."""
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(self.max_workers) as pool:
            return list(pool.map(lambda t: self._one(t, k), tasks))

    def close(self) -> None:
        self.client.close()


def oracle_for(env: EnvConfig) -> Callable[[Task], str]:
    """The env's exact solver (its spec's ``oracle``); a ``ConfigError`` when the env has none."""
    oracle = env.spec.oracle
    if oracle is None:
        raise ConfigError(f"config key 'teacher.kind': env '{env.name}' has no oracle solver; "
                          "use teacher.kind: model or openai")
    return oracle


def build_teacher(cfg: TeacherConfig, env: EnvConfig, device: str = "auto", seed: int = 0):
    """The teacher ``cfg`` describes (models are checked to exist before anything loads)."""
    if cfg.kind == "oracle":
        return OracleTeacher(oracle_for(env), name=f"oracle:{env.name}")
    if cfg.kind == "model":
        from rl.models import check_model_available

        check_model_available(cfg.model)
        return EngineTeacher(cfg.model, cfg.engine, cfg.temperature, cfg.max_new_tokens, device, seed)
    try:
        import openai  # noqa: F401
    except ImportError as e:
        raise ConfigError("teacher.kind: openai needs the openai client: pip install 'horizon-rl[openai]'") from e
    return OpenAITeacher(cfg.base_url, cfg.model, os.environ.get(cfg.api_key_env, "EMPTY"),
                         cfg.temperature, cfg.max_new_tokens)
