"""Using a PRM at inference: aggregation, best-of-N, majority vote, step-level beam search.

- Aggregating step scores into one solution score (Lightman et al. 2023, "Let's Verify Step
  by Step", sec. 2.6, use the product of step probabilities; Wang et al. 2024, Math-Shepherd,
  the minimum; Snell et al. 2024, "Scaling LLM Test-Time Compute Optimally", sec. 5, find
  the last step's score works as well): ``aggregate_scores(..., how="product"|"min"|"last")``.
- Best-of-N: the candidate with the highest aggregate (ties: the first).
- Majority vote (self-consistency, Wang et al. 2023), optionally PRM-weighted.
- Step-level beam search (Snell et al. 2024, sec. 5.2; HF "search-and-learn"): extend each
  live beam by ``expand_per_beam`` sampled next lines, score every partial solution with the
  PRM, keep the best ``beam_width`` of all candidates and finished beams.

The PRM enters as a callable ``prm_scorer(task, steps) -> list[float]`` (one P(correct) per
step; ``rewards.prm.model.make_scorer`` wraps a ``ProcessRewardModel``), so search runs with
any scorer, scripted ones included.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from rewards.prm.labeling import FINAL_MARK, prefix_text
from rl.rollout.base import RolloutEngine, SamplingParams
from rl.rollout.chat import render_prompt
from rl.types import Completion, Task, split_steps

Aggregate = Literal["min", "last", "product"]
Scorer = Callable[[Task, list[str]], list[float]]


def aggregate_scores(step_scores: Sequence[float], how: Aggregate = "min") -> float:
    """One score for a solution from its step scores: ``min``, ``last`` or ``product``.

    A solution with no step scores 0.0 (it can never beat one with a positive score).
    """
    if how not in ("min", "last", "product"):
        raise ValueError(f"how={how!r}: use 'min', 'last' or 'product'")
    if not step_scores:
        return 0.0
    if how == "min":
        return float(min(step_scores))
    if how == "last":
        return float(step_scores[-1])
    return float(math.prod(step_scores))


def best_of_n(candidates_texts: Sequence[str], step_scores_per_candidate: Sequence[Sequence[float]],
              how: Aggregate = "min") -> int:
    """Index of the candidate with the highest aggregated PRM score (ties: the first)."""
    if len(candidates_texts) != len(step_scores_per_candidate) or not candidates_texts:
        raise ValueError(f"{len(candidates_texts)} candidates but {len(step_scores_per_candidate)} "
                         "score lists (need the same number, at least one)")
    totals = [aggregate_scores(s, how) for s in step_scores_per_candidate]
    return max(range(len(totals)), key=lambda i: (totals[i], -i))


def majority_vote(answers: Sequence[Hashable | None], weights: Sequence[float] | None = None) -> Hashable | None:
    """The most frequent answer (or the one with the largest total weight, e.g. PRM scores).

    ``None`` answers (no answer extracted) are ignored; ties go to the answer seen first.
    Returns None when every answer is None.
    """
    if weights is not None and len(weights) != len(answers):
        raise ValueError(f"{len(answers)} answers but {len(weights)} weights")
    totals: dict[Hashable, float] = {}
    for i, answer in enumerate(answers):
        if answer is not None:
            totals[answer] = totals.get(answer, 0.0) + (1.0 if weights is None else float(weights[i]))
    if not totals:
        return None
    return max(totals, key=lambda a: totals[a])  # dicts keep insertion order; max keeps the first


@dataclass
class Beam:
    """A partial (or finished) solution: its lines, their PRM scores and their aggregate."""

    steps: list[str]
    scores: list[float] = field(default_factory=list)
    score: float = 0.0
    finished: bool = False

    @property
    def text(self) -> str:
        return "\n".join(self.steps)


def _newline_id(tokenizer) -> int:
    ids = tokenizer("\n", add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(f"'\\n' is {len(ids)} tokens in this tokenizer: beam search stops on one token")
    return ids[0]


def _extend(steps: list[str], completion: Completion, newline: int) -> tuple[list[str], bool]:
    """The beam's steps after ``completion``, and whether the solution is finished.

    Finished: a line states the final answer (``####``; text after it is dropped), or the
    completion stopped on a token other than the newline (EOS). A completion cut by the token
    limit is kept as an unfinished step; an empty line adds nothing.
    """
    lines = split_steps(completion.text)
    new = list(steps)
    for line in lines:
        new.append(line)
        if line.startswith(FINAL_MARK):
            return new, True
    if completion.token_ids:
        ended_line = completion.token_ids[-1] == newline
    else:
        ended_line = completion.text.endswith("\n")
    return new, completion.finish_reason == "stop" and not ended_line


def step_beam_search(
    engine: RolloutEngine,
    tokenizer,
    prm_scorer: Scorer,
    task: Task,
    *,
    beam_width: int,
    expand_per_beam: int,
    max_steps: int,
    params: SamplingParams,
    how: Aggregate = "min",
) -> tuple[str, list[dict[str, Any]]]:
    """Step-level beam search guided by a PRM.

    Each round (at most ``max_steps``): every live beam's prompt (chat prompt + its lines,
    each ending in ``"\\n"``) goes to ONE ``engine.generate`` call with ``n=expand_per_beam``
    and ``"\\n"`` added to the stop tokens, so each sample is one more line. Candidates
    (deduplicated) are scored with ``prm_scorer`` and aggregated with ``how``; the best
    ``beam_width`` of candidates and already-finished beams (they keep their place and are
    not expanded again) survive, ties going to the earlier one. The search stops when no
    survivor is live or after ``max_steps`` rounds. With ``params.seed`` set, round r samples
    with seed ``seed + r``.

    Returns:
        ``(best_text, trace)``: the lines of the best-scored finished beam joined by newlines
        (the best live beam when none finished within ``max_steps``), and one dict per round:
        ``round``, ``expanded`` (live beams sent to the engine), ``candidates`` (new
        candidates scored), ``kept`` (``text``, ``score``, ``finished`` of each survivor).
    """
    if min(beam_width, expand_per_beam, max_steps) < 1:
        raise ValueError(f"beam_width={beam_width}, expand_per_beam={expand_per_beam} and "
                         f"max_steps={max_steps} must all be >= 1")
    newline = _newline_id(tokenizer)
    step_params = replace(params, stop_token_ids=tuple(sorted({*params.stop_token_ids, newline})))
    chat_ids = render_prompt(tokenizer, task.messages)
    cache: dict[tuple[str, ...], list[float]] = {}

    def score(steps: list[str]) -> list[float]:
        key = tuple(steps)
        if key not in cache:
            cache[key] = [float(s) for s in prm_scorer(task, steps)] if steps else []
            if len(cache[key]) != len(steps):
                raise ValueError(f"prm_scorer gave {len(cache[key])} scores for {len(steps)} steps")
        return cache[key]

    beams = [Beam([])]
    trace: list[dict[str, Any]] = []
    for round_index in range(max_steps):
        live = [b for b in beams if not b.finished]
        if not live:
            break
        prompts = [chat_ids + (tokenizer(prefix_text(b.steps, len(b.steps) - 1), add_special_tokens=False)
                               ["input_ids"] if b.steps else []) for b in live]
        round_params = step_params if params.seed is None else step_params.with_seed(params.seed + round_index)
        groups = engine.generate(prompts, round_params, n=expand_per_beam)
        if len(groups) != len(prompts):
            raise RuntimeError(f"engine {engine.name} answered {len(groups)} of {len(prompts)} prompts")
        pool = [b for b in beams if b.finished]
        seen = {(tuple(b.steps), True) for b in pool}
        new = 0
        for beam, group in zip(live, groups):
            for completion in group:
                steps, finished = _extend(beam.steps, completion, newline)
                if (tuple(steps), finished) in seen:
                    continue
                seen.add((tuple(steps), finished))
                scores = score(steps)
                pool.append(Beam(steps, scores, aggregate_scores(scores, how), finished))
                new += 1
        beams = sorted(pool, key=lambda b: -b.score)[:beam_width]  # stable: ties keep pool order
        trace.append({"round": round_index, "expanded": len(live), "candidates": new,
                      "kept": [{"text": b.text, "score": b.score, "finished": b.finished} for b in beams]})
    finished = [b for b in beams if b.finished]
    best = max(finished or beams, key=lambda b: b.score)  # max keeps the first of equals
    return best.text, trace
