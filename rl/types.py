"""The vocabulary that crosses module borders: tasks, completions, steps, turns, episodes.

Everything else in horizon (environments, verifiers, rollout engines, algorithms, trainers)
talks in these types. They are plain dataclasses with no model, tokenizer or I/O inside, so
environments and verifiers can import them without pulling in torch.

Shapes follow one convention: a *completion* is what the policy sampled in one turn; a
*sample* is the flat token sequence a trainer sees (prompt + policy tokens + env tokens),
with a ``loss_mask`` that is 1 only on policy tokens.

Example::

    task = Task(id="chain_math/h2/0", messages=[{"role": "user", "content": "Start with 3. ..."}],
                answer="12", meta={"horizon": 2})
    turn = Turn(context_ids=[1, 2, 3], completion=Completion([7, 8], [-0.1, -0.2], "12", "stop"))
    ep = Episode(task=task, group_id=0, turns=[turn])
    (sample,) = ep.to_samples()      # token_ids [1, 2, 3, 7, 8], loss_mask [0, 0, 0, 1, 1]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Message = dict[str, str]  # {"role": "system" | "user" | "assistant" | "tool", "content": str}

FinishReason = Literal["stop", "length"]
ErrorKind = Literal["verifier", "env", "engine", "prm"]

STEP_SEPARATOR = "\n"  # the default step boundary: one reasoning step per non-empty line


def split_steps(text: str, separator: str = STEP_SEPARATOR) -> list[str]:
    """The reasoning steps of ``text``: its non-empty pieces between separators, stripped.

    With the default separator a ``"\r"`` is stripped as whitespace, so a step is always a run
    of the text between newline characters. ``rl.rollout.steps.StepSplitter`` cuts token spans
    at the same places.
    """
    return [piece.strip() for piece in text.split(separator) if piece.strip()]


@dataclass(frozen=True)
class Task:
    """One problem: a chat prompt, a reference answer and what the source knows about it.

    ``meta`` holds source-specific facts, e.g. ``horizon`` (number of dependent steps) and,
    for chain_math, every exact intermediate value (used for exact step labels). A task whose
    last message is the assistant's starts the answer for the model (``rl.trainer.given_steps``):
    ``meta["given_steps"]`` lists the steps written there, which step labels count first.
    """

    id: str
    messages: list[Message]
    answer: str
    meta: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def horizon(self) -> int | None:
        return self.meta.get("horizon")

    @property
    def given_steps(self) -> list[str]:
        """The steps already written in a prefilled start of the answer (``[]``: none)."""
        return list(self.meta.get("given_steps", ()))


@dataclass
class Completion:
    """What an engine sampled for one prompt.

    ``logprobs[i]`` is the engine's log-probability of ``token_ids[i]`` under the sampling
    distribution (logits divided by the temperature). ``finish_reason`` is ``"stop"`` when an
    end-of-sequence token ended it (the EOS token is kept in ``token_ids``), ``"length"`` when
    it hit the token limit.
    """

    token_ids: list[int]
    logprobs: list[float]
    text: str
    finish_reason: FinishReason

    def __post_init__(self) -> None:
        if len(self.token_ids) != len(self.logprobs):
            raise ValueError(
                f"Completion has {len(self.token_ids)} token_ids but {len(self.logprobs)} logprobs"
            )


@dataclass
class Step:
    """One reasoning step: a span ``[token_start, token_end)`` of a completion's tokens."""

    text: str
    token_start: int
    token_end: int


@dataclass
class Turn:
    """One policy turn: the context it saw, what it sampled, the steps in it, the env's reply."""

    context_ids: list[int]
    completion: Completion
    steps: list[Step] = field(default_factory=list)
    observation: list[Message] | None = None


@dataclass
class Outcome:
    """A verifier's verdict. ``error`` is set (and ``score`` is meaningless) when it failed."""

    score: float
    correct: bool
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class EpisodeError:
    """A failure recorded on an episode instead of being raised: which part failed and why."""

    kind: ErrorKind
    message: str


@dataclass
class Sample:
    """A flat training sequence rendered from an episode (or from one turn of it).

    ``loss_mask[i]`` is 1 where ``token_ids[i]`` was sampled by the policy; ``old_logprobs``
    holds the engine's logprobs there and 0.0 elsewhere. ``step_spans`` are ``[start, end)``
    token indices of the reasoning steps in this sequence. Token ``i`` is predicted from the
    logits at position ``i - 1``, so ``loss_mask[0]`` is always 0.
    """

    token_ids: list[int]
    loss_mask: list[int]
    old_logprobs: list[float]
    step_spans: list[tuple[int, int]]
    turn_index: int | None = None  # set when a turn became its own sample

    def __len__(self) -> int:
        return len(self.token_ids)

    @property
    def num_policy_tokens(self) -> int:
        return sum(self.loss_mask)


@dataclass
class Episode:
    """One rollout of one task: its turns, its rewards and what went wrong.

    ``reward`` is the weighted total of ``reward_terms`` (``outcome``, ``format``, ...); it is
    ``None`` when the episode could not be scored (see ``errors``): such an episode is left
    out of its group's baseline and out of the loss, and counted in the metrics.
    """

    task: Task
    group_id: int
    turns: list[Turn] = field(default_factory=list)
    outcome: Outcome | None = None
    reward: float | None = None
    reward_terms: dict[str, float] = field(default_factory=dict)
    step_rewards: list[float] | None = None
    step_labels: list[bool] | None = None  # exact labels, when the env knows them
    errors: list[EpisodeError] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def final_text(self) -> str:
        """The text of the last policy turn ('' before the first turn)."""
        return self.turns[-1].completion.text if self.turns else ""

    @property
    def stop_reason(self) -> str:
        return self.turns[-1].completion.finish_reason if self.turns else "none"

    @property
    def num_policy_tokens(self) -> int:
        return sum(len(t.completion.token_ids) for t in self.turns)

    @property
    def steps(self) -> list[Step]:
        return [s for t in self.turns for s in t.steps]

    def record_error(self, kind: ErrorKind, message: str) -> None:
        self.errors.append(EpisodeError(kind, message))

    def has_error(self, kind: ErrorKind | None = None) -> bool:
        return any(kind is None or e.kind == kind for e in self.errors)

    def to_samples(self) -> list[Sample]:
        """Render the episode into training samples.

        When every turn's context extends the previous turn's context + completion (history
        kept), the whole episode is one sample: prompt and env tokens masked out, policy
        tokens masked in. When a context policy rewrote history, the shared-prefix property
        breaks and each turn becomes its own sample (the episode's advantage applies to all).
        """
        if not self.turns:
            return []
        if _turns_share_prefix(self.turns):
            return [_render(self.turns, turn_index=None)]
        return [_render([t], turn_index=i) for i, t in enumerate(self.turns)]

    def to_record(self, step: int) -> dict[str, Any]:
        """The rollout-file row (``rollouts/step_N.jsonl``) for this episode, without its
        advantage: the trainer adds what its update used (``rl.trainer.credit``)."""
        return {
            "step": step,
            "task_id": self.task.id,
            "group_id": self.group_id,
            "horizon": self.task.horizon,
            "messages": self.task.messages,
            "answer": self.task.answer,
            "completion": self.final_text,
            "turns": [
                {"completion": t.completion.text, "observation": t.observation}
                for t in self.turns
            ],
            "steps": [s.text for s in self.steps],
            "step_labels": self.step_labels,
            "rewards": {"total": self.reward, **self.reward_terms, "steps": self.step_rewards},
            "outcome": None if self.outcome is None else asdict(self.outcome),
            "stop_reason": self.stop_reason,
            "num_tokens": self.num_policy_tokens,
            "errors": [asdict(e) for e in self.errors],
        }


@dataclass
class EpisodeGroup:
    """The G episodes sampled for one task: group-relative baselines need them together."""

    task: Task
    episodes: list[Episode]

    @property
    def scored(self) -> list[Episode]:
        """Episodes with a reward (those whose scoring failed are left out)."""
        return [e for e in self.episodes if e.reward is not None]


def _turns_share_prefix(turns: list[Turn]) -> bool:
    for prev, cur in zip(turns, turns[1:]):
        head = prev.context_ids + prev.completion.token_ids
        if cur.context_ids[: len(head)] != head:
            return False
    return True


def _render(turns: list[Turn], turn_index: int | None) -> Sample:
    token_ids = list(turns[0].context_ids)
    loss_mask = [0] * len(token_ids)
    old_logprobs = [0.0] * len(token_ids)
    step_spans: list[tuple[int, int]] = []
    for i, turn in enumerate(turns):
        if i > 0:  # env / tool tokens between the previous completion and this turn
            gap = turn.context_ids[len(token_ids):]
            token_ids += gap
            loss_mask += [0] * len(gap)
            old_logprobs += [0.0] * len(gap)
        offset = len(token_ids)
        token_ids += turn.completion.token_ids
        loss_mask += [1] * len(turn.completion.token_ids)
        old_logprobs += list(turn.completion.logprobs)
        step_spans += [(offset + s.token_start, offset + s.token_end) for s in turn.steps]
    return Sample(token_ids, loss_mask, old_logprobs, step_spans, turn_index)
