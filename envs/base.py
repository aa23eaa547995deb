"""Environments and task sources: the contract between tasks and the rollout runner.

An ``Env`` is single-use: one per episode. ``reset()`` returns the prompt messages;
``step(action)`` takes the policy's text and returns the env's reply. A single-turn task is an
env whose first ``step`` returns ``done=True``. Environments import only ``rl.types``.

Example::

    env = SingleTurnEnv(task)
    messages = env.reset()
    result = env.step("12\\n#### 12")      # StepResult(observation=None, done=True, info={})
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from rl.types import Message, Task


@dataclass
class StepResult:
    """The env's reply to one action. ``observation`` is appended to the chat when not done."""

    observation: list[Message] | None
    done: bool
    info: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Env(Protocol):
    task: Task

    def reset(self) -> list[Message]: ...

    def step(self, action: str) -> StepResult: ...


class SingleTurnEnv:
    """The task's prompt, one answer, done."""

    def __init__(self, task: Task):
        self.task = task

    def reset(self) -> list[Message]:
        return [dict(m) for m in self.task.messages]

    def step(self, action: str) -> StepResult:
        return StepResult(observation=None, done=True)


@runtime_checkable
class TaskSource(Protocol):
    """A seeded, deterministic stream of tasks with a difficulty knob a curriculum can move.

    ``sample(n)`` returns the next ``n`` tasks; the stream depends only on the seed, the
    horizon settings and how many tasks were drawn before, so ``state_dict`` /
    ``load_state_dict`` restore the exact data position on resume.
    """

    def sample(self, n: int) -> list[Task]: ...

    def set_horizon(self, low: int, high: int | None = None) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def make_env(self, task: Task) -> Env: ...
