"""Environments, task sources and env specs: the contract between tasks and the rest of horizon.

An ``Env`` is single-use: one per episode. ``reset()`` returns the prompt messages;
``step(action)`` takes the policy's text and returns the env's reply. A single-turn task is an
env whose first ``step`` returns ``done=True``.

An ``EnvSpec`` is everything the trainers, the distiller and the PRM job know of an env: its
options (a dataclass whose fields are the keys of the config's ``env`` section), how to build
its seeded task source, how its answers are scored, where its steps split, and optionally its
exact step labels and oracle solver. Each env module exports one ``SPEC``; configs name it
(``env: {name: chain_math, max_horizon: 6}``) or point at a user's module
(``env: {name: mypkg.myenv:SPEC}``). Environments import only ``rl.types`` / ``rl.errors``
(and verifiers from ``rewards``).

Example::

    env = SingleTurnEnv(task)
    messages = env.reset()
    result = env.step("12\\n#### 12")      # StepResult(observation=None, done=True, info={})
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from rl.errors import ConfigError, DataError
from rl.types import STEP_SEPARATOR, Episode, Message, Outcome, Task

HELDOUT_EVERY = 10  # one task in ten (by its prompt's hash) belongs to the held-out split


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


def is_int(x: Any) -> bool:
    """Whether ``x`` is an int and not a bool (options and saved states hold plain ints)."""
    return isinstance(x, int) and not isinstance(x, bool)


class PositionStream:
    """Base of a ``TaskSource`` whose task number ``i`` is a pure function of ``(seed, i)`` and its
    settings: ``sample`` draws by position, so the position (with the settings) is the whole data
    state. A subclass sets ``self.seed`` and ``self.position`` and defines ``task_at(index)``;
    ``STATE_NAME`` names it in errors."""

    STATE_NAME = "source"
    seed: int
    position: int

    def start_stream(self, seed: int) -> None:
        """Set ``seed`` (``ConfigError`` naming ``seed`` unless it is an int) and position 0."""
        if not is_int(seed):
            raise ConfigError(f"config key 'seed': {seed!r}: use an integer")
        self.seed, self.position = seed, 0

    def task_at(self, index: int) -> Task:
        raise NotImplementedError

    def sample(self, n: int) -> list[Task]:
        """The next ``n`` tasks of the stream (the position moves on by ``n``)."""
        if n < 0:
            raise ValueError(f"sample(n) needs n >= 0, got {n}")
        tasks = [self.task_at(self.position + k) for k in range(n)]
        self.position += n
        return tasks

    def check_state(self, state: dict[str, Any], keys: set[str]) -> int:
        """Raise ``DataError`` unless ``state`` holds ``keys`` (and ``position``), was saved with this
        source's seed (when it recorded one) and has a position >= 0; returns the position."""
        name = self.STATE_NAME
        missing = (keys | {"position"}) - set(state)
        if missing:
            raise DataError(f"{name} state is missing {sorted(missing)}: got {sorted(state)}")
        if "seed" in state and state["seed"] != self.seed:
            raise DataError(f"{name} state was saved with seed={state['seed']} but this source has "
                            f"seed={self.seed}: resume with the same seed")
        if not is_int(state["position"]) or state["position"] < 0:
            raise DataError(f"{name} state position={state['position']!r}: expected int >= 0")
        return state["position"]


@dataclass(frozen=True)
class EnvSpec:
    """One env, as the rest of horizon sees it.

    - ``options``: a dataclass; its fields are the env's config keys (``env.<field>``) and its
      ``__post_init__`` validates them (raise ``rl.errors.ConfigError`` naming ``env.<field>``).
    - ``make_source(options, seed)``: the seeded ``TaskSource``.
    - ``verifier(task, episode) -> Outcome``: the outcome verdict (picklable: it may run in a
      worker process with a timeout).
    - ``format_score(text) -> float`` in [0, 1]: the ``format`` reward term (None: no format term).
    - ``step_separator``: steps are the non-empty pieces of a completion between separators
      (``rl.types.split_steps``); the runner cuts token spans at the same place.
    - ``step_labels(task, step_texts) -> list[bool]``: exact per-step correctness, when the env
      knows it (PRM labels are measured against it).
    - ``oracle(task) -> str``: an exact solution (a programmatic teacher for distillation).
    - ``heldout(task) -> bool``: the env's own rule for its held-out split (e.g. the rows of a
      dataset's eval file); None: ``is_heldout``, a hash of the prompt (one task in ten).
    - ``reward_terms(options) -> {name: (weight, fn(task, episode) -> float)}``: extra reward
      terms beside ``outcome`` and ``format`` (e.g. partial credit), weighted from the env's
      options, logged even at weight 0; each ``fn`` is picklable (it runs like the verifier).
    """

    name: str
    options: type
    make_source: Callable[[Any, int], "TaskSource"]
    verifier: Callable[[Task, Episode], Outcome]
    format_score: Callable[[str], float] | None = None
    step_separator: str = STEP_SEPARATOR
    step_labels: Callable[[Task, list[str]], list[bool]] | None = None
    oracle: Callable[[Task], str] | None = None
    heldout: Callable[[Task], bool] | None = None
    reward_terms: Callable[[Any], dict[str, tuple[float, Callable[[Task, Episode], float]]]] | None = None


def is_heldout(task: Task) -> bool:
    """Whether ``task`` belongs to the held-out (eval) split: a stable hash of its prompt messages
    puts one task in ``HELDOUT_EVERY`` there, whatever the seed or the source that drew it."""
    text = "\x00".join(f"{m['role']}\x01{m['content']}" for m in task.messages)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") % HELDOUT_EVERY == 0


class SplitSource:
    """A ``TaskSource`` that keeps only the tasks of one split of another source's stream.

    ``split="train"`` drops the held-out tasks, ``split="eval"`` keeps only them, so no training
    stream of any seed can draw a task the eval stream holds: disjoint by construction, not by
    filtering against a list. The wrapped source's state is the whole state (it is
    deterministic, so the filter redraws the same tasks after a resume).
    """

    MAX_DRAWS_PER_TASK = 1000

    def __init__(self, source: TaskSource, split: str, heldout: Callable[[Task], bool] | None = None):
        """``heldout``: which tasks are held out (default ``is_heldout``, the prompt-hash rule)."""
        if split not in ("train", "eval"):
            raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
        self.source, self.split = source, split
        self.heldout = heldout or is_heldout

    def sample(self, n: int) -> list[Task]:
        out: list[Task] = []
        draws = 0
        while len(out) < n:
            batch = self.source.sample(n - len(out))
            if not batch:
                raise DataError(f"the task source ran out after {draws} tasks with {len(out)} of {n} in the "
                                f"{self.split} split: give it more tasks")
            draws += len(batch)
            out += [t for t in batch if self.heldout(t) == (self.split == "eval")]
            if draws > self.MAX_DRAWS_PER_TASK * n and len(out) < n:
                raise DataError(
                    f"the env's {self.split} split is (nearly) empty: {len(out)} of {draws} drawn tasks "
                    f"fell in it; widen the env's options (e.g. env.max_horizon, or env.train_fraction for humaneval) so that split has more distinct tasks")
        return out

    def set_horizon(self, low: int, high: int | None = None) -> None:
        self.source.set_horizon(low, high)

    def state_dict(self) -> dict[str, Any]:
        return self.source.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.source.load_state_dict(state)

    def make_env(self, task: Task) -> Env:
        return self.source.make_env(task)
