"""Monte Carlo step labels (Math-Shepherd) and TRL's stepwise PRM rows.

Math-Shepherd (Wang et al. 2024, "Math-Shepherd: Verify and Reinforce LLMs Step-by-step
without Human Annotations", sec. 3.3): the quality of step i of a solution is estimated by
completing the solution from the prefix ``s_1 .. s_i`` N times with a "completer" and checking
the final answers::

    soft (SE):  y_i = |{j : a_j correct}| / N
    hard (HE):  y_i = 1 if any a_j is correct else 0

Here the completer is any ``RolloutEngine``; the prompt of prefix i is the task's chat prompt
(``render_prompt``) followed by the tokens of ``"\\n".join(steps[:i+1]) + "\\n"``, and ONE
``engine.generate(..., n=k)`` call covers every prefix of every solution (vLLM's prefix cache
makes the shared prompt and shared step prefixes cheap).

Departure from the paper: a prefix whose last step already states the final answer (a line
starting with ``####``) is not completed; its label is the verdict on the prefix itself
(1.0 or 0.0), which is what every completion would be judged on if the model stopped there.

Example::

    labels = mc_step_labels(engine, tok, [(task, ["2 + 3 = 5", "5 * 4 = 21", "#### 21"])],
                            k=8, params=SamplingParams(max_new_tokens=64))
    labels[0].soft   # e.g. [0.75, 0.0, 0.0]
    ds = build_label_dataset(engine, tok, solutions, k=8, params=params)   # datasets.Dataset
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rl.rollout.base import RolloutEngine, SamplingParams
from rl.rollout.chat import render_prompt
from rl.types import Task

FINAL_MARK = "####"

# the columns of ``to_trl_rows`` that hold one entry per step
STEP_COLUMNS = ("completions", "labels", "soft_labels", "exact_labels")

Solution = tuple[Task, list[str]]  # a task and the texts of its solution's steps (lines)


@dataclass
class StepLabels:
    """Monte Carlo labels of one solution, one entry per step.

    ``soft[i]`` is the fraction of the ``k`` completions from prefix i that reached the right
    answer, ``hard[i]`` whether any did, ``sampled[i]`` whether prefix i was completed (False
    for a final-answer step, labelled directly).
    """

    soft: list[float]
    hard: list[bool]
    sampled: list[bool]


def answer_is_correct(task: Task, text: str) -> bool:
    """Default verdict: the last final answer in ``text`` equals ``task.answer`` (MathVerifier's rule)."""
    from rewards.math import answers_equivalent, extract_answer

    extracted = extract_answer(text)
    return extracted is not None and answers_equivalent(extracted, task.answer.strip())


def prefix_text(steps: Sequence[str], i: int) -> str:
    """The solution text through step ``i``: ``steps[:i+1]`` joined by newlines, plus one newline."""
    return "\n".join(s.strip() for s in steps[: i + 1]) + "\n"


def mc_step_labels(
    engine: RolloutEngine,
    tokenizer,
    solutions: Sequence[Solution],
    *,
    k: int,
    params: SamplingParams,
    verify: Callable[[Task, str], bool] = answer_is_correct,
) -> list[StepLabels]:
    """Math-Shepherd soft and hard labels for every step of every solution.

    Args:
        engine: the completer; called once (not at all when no prefix needs completing).
        tokenizer: the engine's tokenizer (chat template + prefix tokens).
        solutions: ``(task, step_texts)`` pairs; step texts are lines without newlines.
        k: completions per prefix (Math-Shepherd's N).
        params: sampling settings of the completions (temperature > 0 for k > 1).
        verify: ``(task, full_text) -> bool`` on prefix + completion text.

    Returns:
        One ``StepLabels`` per solution, in order.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    prompts: list[list[int]] = []
    where: list[tuple[int, int]] = []  # (solution, step) of each prompt
    labels = [StepLabels([0.0] * len(steps), [False] * len(steps), [False] * len(steps))
              for _, steps in solutions]
    for s, (task, steps) in enumerate(solutions):
        chat_ids = render_prompt(tokenizer, task.messages)
        for i in range(len(steps)):
            prefix = prefix_text(steps, i)
            if steps[i].strip().startswith(FINAL_MARK):
                ok = verify(task, prefix)
                labels[s].soft[i], labels[s].hard[i] = float(ok), bool(ok)
                continue
            prompts.append(chat_ids + tokenizer(prefix, add_special_tokens=False)["input_ids"])
            where.append((s, i))
    if prompts:
        groups = engine.generate(prompts, params, n=k)
        if len(groups) != len(prompts):
            raise RuntimeError(f"engine {engine.name} answered {len(groups)} of {len(prompts)} prompts")
        for (s, i), completions in zip(where, groups):
            task, steps = solutions[s]
            prefix = prefix_text(steps, i)
            wins = sum(bool(verify(task, prefix + c.text)) for c in completions)
            labels[s].soft[i] = wins / len(completions)
            labels[s].hard[i] = wins > 0
            labels[s].sampled[i] = True
    return labels


ExactLabeler = Callable[[Task, list[str]], list[bool]]  # an env spec's ``step_labels``


def to_trl_rows(solutions: Sequence[Solution], labels: Sequence[StepLabels],
                exact_labels: ExactLabeler | None = None) -> list[dict[str, Any]]:
    """Rows in TRL's stepwise-supervision format, plus our columns.

    TRL's columns: ``prompt`` (the last user message's text), ``completions`` (the step
    texts), ``labels`` (one bool per step: the hard MC label). Extra columns:
    ``soft_labels`` (MC fractions), ``exact_labels`` (the env's ground truth from
    ``exact_labels(task, steps)``, or None without a labeller),
    ``messages`` (the full chat prompt, which ``train_prm`` renders), ``task_id``, ``horizon``.
    """
    if len(solutions) != len(labels):
        raise ValueError(f"{len(solutions)} solutions but {len(labels)} label sets")
    rows = []
    for (task, steps), lab in zip(solutions, labels):
        if len(lab.hard) != len(steps):
            raise ValueError(f"task {task.id}: {len(steps)} steps but {len(lab.hard)} labels")
        users = [m["content"] for m in task.messages if m["role"] == "user"]
        rows.append({
            "prompt": users[-1] if users else "",
            "completions": [s.strip() for s in steps],
            "labels": list(lab.hard),
            "soft_labels": list(lab.soft),
            "exact_labels": exact_labels(task, steps) if exact_labels else None,
            "messages": [dict(m) for m in task.messages],
            "task_id": task.id,
            "horizon": task.horizon,
        })
    return rows


def build_label_dataset(
    engine: RolloutEngine,
    tokenizer,
    solutions: Sequence[Solution],
    *,
    k: int,
    params: SamplingParams,
    verify: Callable[[Task, str], bool] = answer_is_correct,
    exact_labels: ExactLabeler | None = None,
):
    """MC-label ``solutions`` and return them as a ``datasets.Dataset`` of ``to_trl_rows`` rows."""
    from datasets import Dataset

    labels = mc_step_labels(engine, tokenizer, solutions, k=k, params=params, verify=verify)
    return Dataset.from_list(to_trl_rows(solutions, labels, exact_labels))
