"""Turn verifier verdicts into rewards: weighted terms, every term logged, failures recorded.

``score_episode`` calls the outcome verifier and the shaping terms on one episode. A verifier
that raises leaves ``episode.reward = None`` and an ``EpisodeError("verifier", ...)`` on the
episode: the trainer leaves it out of the baseline and the loss and counts it in
``errors/verifier``. It never becomes a reward of 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from rl.types import Episode, Outcome, Task

Verifier = Callable[[Task, Episode], Outcome]
Term = Callable[[Episode], float]


@dataclass
class RewardFunction:
    """``reward = outcome_weight * outcome.score + sum(weight_i * term_i(episode))``.

    With ``outcome_needs_all_steps`` (``reward.outcome: all_steps``; needs ``step_labeler``) the
    outcome term is the verifier's score only when every step is labelled right: a right answer
    reached through a wrong step scores 0 there (``episode.outcome`` keeps the verifier's verdict,
    so ``correct/*`` still reads answers).
    """

    verifier: Verifier
    outcome_weight: float = 1.0
    terms: dict[str, tuple[float, Term]] = field(default_factory=dict)
    step_labeler: Callable[[Task, list[str]], list[bool]] | None = None
    outcome_needs_all_steps: bool = False

    def __post_init__(self) -> None:
        if self.outcome_needs_all_steps and self.step_labeler is None:
            raise ValueError("outcome_needs_all_steps needs a step_labeler (an env with exact step labels)")

    def __call__(self, episode: Episode, outcome: Outcome | None = None) -> None:
        """Score ``episode`` in place (reward, reward_terms, outcome, step_labels, errors);
        ``outcome``: the verifier's verdict when it was already computed (``score_many``)."""
        if episode.has_error("env"):
            episode.reward = None  # the env broke: its trajectory is not a valid sample
            return
        try:
            outcome = outcome if outcome is not None else self.verifier(episode.task, episode)
            if outcome.error is not None:
                raise RuntimeError(outcome.error)
            if not math.isfinite(outcome.score):
                raise ValueError(f"verifier returned a non-finite score {outcome.score}")
            if self.step_labeler is not None:
                # steps given in a prefilled start of the answer come first: label the whole answer,
                # keep the labels of the episode's own steps
                given = episode.task.given_steps
                labels = self.step_labeler(episode.task, given + [s.text for s in episode.steps])
                episode.step_labels = labels[len(given):]
            values = {"outcome": float(outcome.score)}
            if self.outcome_needs_all_steps and not (episode.step_labels and all(episode.step_labels)):
                values["outcome"] = 0.0  # no credit for a right answer through a wrong step
            total = self.outcome_weight * values["outcome"]
            for name, (weight, term) in self.terms.items():
                values[name] = float(term(episode))
                total += weight * values[name]
        except Exception as e:  # noqa: BLE001 - verifier, labeler or term: recorded, not fatal
            message = f"{type(e).__name__}: {e}"
            episode.outcome = Outcome(score=0.0, correct=False, error=message)
            episode.record_error("verifier", message)
            episode.reward = None
            return
        episode.outcome = outcome
        episode.reward_terms = values
        episode.reward = total

    def score_many(self, episodes: list[Episode]) -> None:
        """Score every episode in place, as calling this object on each would; a verifier with
        ``verify_many(items)`` (the code sandbox's process pool) gets them all in one call."""
        verify_many = getattr(self.verifier, "verify_many", None)
        live = [e for e in episodes if not e.has_error("env")]
        outcomes: dict[int, Outcome] = {}
        if verify_many is not None and len(live) > 1:
            try:
                outcomes = dict(zip(map(id, live), verify_many([(e.task, e) for e in live])))
            except Exception:  # noqa: BLE001 - then each episode is verified alone and its error recorded
                outcomes = {}
        for episode in episodes:
            self(episode, outcomes.get(id(episode)))
