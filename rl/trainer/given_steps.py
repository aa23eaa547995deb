"""Oracle-given starts: training tasks whose answer already holds the first k steps of an exact solution.

Outcome RL on a long chain learns a late step only from samples that got every earlier step
right, which at long horizons is almost none: the late steps get no signal (the main job's
SmolLM2 student, distilled on 4-step chains, writes ``####`` instead of line 7 of an 8-step chain
in 54 of 60 cases even when the first six lines are handed to it). R^3 (Xi et al. 2024, "Training Large Language Models for Reasoning through Reverse
Curriculum Reinforcement Learning") starts exploration from states along a demonstration
instead. Here each training task draws ``k`` uniformly from ``0..min(given_steps, S - 1)``
(``S``: the oracle's number of steps, so the step that holds the answer is never given) and its
chat gains an assistant message holding the oracle's first ``k`` steps, which the model continues
(``rl.rollout.chat.render_prompt``); ``k = 0`` is the plain task.

Deviations from R^3: no staged schedule from the end of the demonstration to its start (a uniform
mix, so every position is trained at every step); the verifier reads the model's completion only,
and step labels are computed on the given steps followed by the completion's, the given ones then
dropped (``rewards.compose``). The prefix is prompt: it is never trained on.
"""

from __future__ import annotations

import dataclasses
import random

from rl.types import Task, split_steps


def give_oracle_steps(tasks: list[Task], spec, max_given: int, seed: int) -> list[Task]:
    """``tasks`` with a drawn number of oracle steps given in each one's answer (the same draw for
    the same ``seed``: a resumed run redraws it). ``max_given`` 0 returns ``tasks`` unchanged."""
    if max_given == 0:
        return tasks
    rng = random.Random(f"given_steps:{seed}")
    out = []
    for task in tasks:
        steps = split_steps(spec.oracle(task), spec.step_separator)
        k = rng.randint(0, max(0, min(max_given, len(steps) - 1)))
        out.append(with_given_steps(task, steps[:k], spec.step_separator))
    return out


def with_given_steps(task: Task, steps: list[str], separator: str = "\n") -> Task:
    """A copy of ``task`` whose answer starts with ``steps`` (an assistant message ending in the
    separator, ``meta["given_steps"]`` listing them, ``#given<k>`` on the id); no steps: ``task``."""
    if not steps:
        return task
    text = separator.join(steps) + separator
    return dataclasses.replace(task, id=f"{task.id}#given{len(steps)}",
                               messages=[*task.messages, {"role": "assistant", "content": text}],
                               meta={**task.meta, "given_steps": list(steps)})
