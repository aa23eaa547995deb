"""A horizon curriculum for any env whose task source has a difficulty knob (``set_horizon``).

The curriculum holds a *level* L, the frontier horizon. Each prompt's horizon is drawn from the
window ``[L - width + 1, L]`` (clamped to ``[min_level, max_level]``). After each step the
scored episodes update a rolling success rate per horizon (the last ``window`` episodes at
that horizon); when the frontier's rate reaches ``up`` the level rises by one, when it falls to
``down`` it drops by one (each move needs ``min_episodes`` fresh episodes at the new frontier
first, so the level does not oscillate on one lucky batch).

With ``frontier_weighting``, horizons inside the window are drawn in proportion to
``p (1 - p) + floor`` where p is the horizon's rolling success (0.5 before any data): most
prompts land where groups are neither all right nor all wrong, which is where group-relative
advantages are non-zero. This deviates from a plain uniform window (Bengio et al. 2009's
curriculum) in the direction of "learning progress" samplers (e.g. Portelas et al. 2020); it
is not either paper's exact rule.

Everything is deterministic: horizon draws come from an RNG seeded by (seed, draw index), and
``state_dict`` holds the level, the rolling histories and the wrapped source's position, so a
resumed run continues exactly (the trainer checkpoints the source's state).

Example::

    source = CurriculumSource(SplitSource(chain_math_source, "train"), CurriculumConfig(enabled=True), seed=0)
    tasks = source.sample(4)          # horizons from the window around the level
    metrics = source.observe(groups)  # {"curriculum/level": 2.0, "curriculum/success_h2": 0.7, ...}
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from typing import Any

from rl.errors import ConfigError
from rl.types import Task


@dataclass(frozen=True)
class CurriculumConfig:
    """The ``curriculum`` config section (off by default)."""

    enabled: bool = False
    start: int = 1  # the first level (frontier horizon)
    min_level: int = 1
    max_level: int = 16
    width: int = 3  # horizons sampled: the window [level - width + 1, level]
    up: float = 0.6  # rolling frontier success at or above this: level + 1
    down: float = 0.15  # at or below this: level - 1
    window: int = 64  # episodes per horizon in the rolling success rate
    min_episodes: int = 32  # episodes at the frontier before the level may move
    frontier_weighting: bool = True
    floor: float = 0.05  # weight floor of frontier weighting (every horizon in the window stays drawable)

    def __post_init__(self) -> None:
        def need(cond: bool, key: str, message: str) -> None:
            if not cond:
                raise ConfigError(f"config key 'curriculum.{key}': {message}")

        need(1 <= self.min_level <= self.max_level, "max_level",
             f"need 1 <= min_level <= max_level, got {self.min_level}, {self.max_level}")
        need(self.min_level <= self.start <= self.max_level, "start",
             f"must lie in [min_level, max_level] = [{self.min_level}, {self.max_level}], got {self.start}")
        need(self.width >= 1, "width", f"must be >= 1, got {self.width}")
        need(0 <= self.down < self.up <= 1, "up", f"need 0 <= down < up <= 1, got down={self.down} up={self.up}")
        need(1 <= self.min_episodes <= self.window, "min_episodes",
             f"must be in [1, window={self.window}], got {self.min_episodes}")
        need(self.floor > 0, "floor", f"must be > 0, got {self.floor}")


class CurriculumSource:
    """A ``TaskSource`` that draws each prompt's horizon from the curriculum's window; call
    ``observe(groups)`` with each step's scored groups to move the level."""

    def __init__(self, source, cfg: CurriculumConfig, seed: int = 0):
        self.source, self.cfg, self.seed = source, cfg, seed
        self.level, self.draws, self.moves = cfg.start, 0, 0
        self.history: dict[int, deque[bool]] = {}

    # ------------------------------------------------------------------ sampling

    def horizons(self) -> list[int]:
        """The horizons of the current window, shortest first."""
        low = max(self.cfg.min_level, self.level - self.cfg.width + 1)
        return list(range(low, self.level + 1))

    def rate(self, h: int) -> float | None:
        """Rolling success at horizon ``h`` (None before any episode there)."""
        seen = self.history.get(h)
        return sum(seen) / len(seen) if seen else None

    def weights(self) -> list[float]:
        """Sampling weight of each horizon in ``horizons()``."""
        if not self.cfg.frontier_weighting:
            return [1.0] * len(self.horizons())
        out = []
        for h in self.horizons():
            p = self.rate(h)
            p = 0.5 if p is None else p
            out.append(p * (1 - p) + self.cfg.floor)
        return out

    def sample(self, n: int) -> list[Task]:
        hs, weights = self.horizons(), self.weights()
        tasks = []
        for _ in range(n):
            h = random.Random(f"curriculum:{self.seed}:{self.draws}").choices(hs, weights)[0]
            self.draws += 1
            self.source.set_horizon(h, h)
            tasks += self.source.sample(1)
        return tasks

    def set_horizon(self, low: int, high: int | None = None) -> None:
        raise ConfigError("the curriculum owns the horizon: set curriculum.start / min_level / max_level "
                          "instead of moving the source's horizon by hand")

    def make_env(self, task: Task):
        return self.source.make_env(task)

    # ------------------------------------------------------------------ moving the level

    def observe(self, groups) -> dict[str, float]:
        """Add the step's scored episodes to the rolling rates, move the level if the frontier
        asks for it; returns the ``curriculum/*`` metrics (level after the move)."""
        for group in groups:
            for episode in group.scored:
                h = episode.task.horizon
                if h is not None:
                    self.history.setdefault(h, deque(maxlen=self.cfg.window)).append(bool(episode.outcome.correct))
        frontier = self.history.get(self.level, ())
        rate = self.rate(self.level)
        metrics: dict[str, float] = {"curriculum/frontier_success": float("nan") if rate is None else rate}
        if len(frontier) >= self.cfg.min_episodes:
            step = 1 if rate >= self.cfg.up else -1 if rate <= self.cfg.down else 0
            new = min(self.cfg.max_level, max(self.cfg.min_level, self.level + step))
            if new != self.level:
                self.level, self.moves = new, self.moves + 1
                self.history.pop(new, None)  # the new frontier is judged on fresh episodes only
        metrics["curriculum/level"] = float(self.level)
        metrics["curriculum/moves"] = float(self.moves)
        for h in sorted(self.history):
            metrics[f"curriculum/success_h{h}"] = self.rate(h)
        return metrics

    # ------------------------------------------------------------------ checkpointing

    def state_dict(self) -> dict[str, Any]:
        return {"source": self.source.state_dict(), "level": self.level, "draws": self.draws, "moves": self.moves,
                "history": {str(h): [int(x) for x in seen] for h, seen in self.history.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.source.load_state_dict(state["source"])
        self.level, self.draws, self.moves = state["level"], state["draws"], state["moves"]
        self.history = {int(h): deque((bool(x) for x in seen), maxlen=self.cfg.window)
                        for h, seen in state["history"].items()}
