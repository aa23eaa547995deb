"""The rollout-engine contract: token prompts in, sampled completions with logprobs out.

Example::

    engine = HFEngine(policy)
    params = SamplingParams(max_new_tokens=64, temperature=1.0, seed=0)
    groups = engine.generate([prompt_ids_a, prompt_ids_b], params, n=4)
    groups[1][3].logprobs     # per-token logprobs of the 4th sample for prompt b
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

from rl.types import Completion


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. ``temperature == 0`` is greedy decoding; ``top_k == 0`` is off.

    Logprobs are always returned, under logits / temperature (for greedy decoding, the
    untempered distribution). With top-p/top-k on, the engines differ: HFEngine reports the
    untruncated log-softmax (what the trainer recomputes), vLLM the log-softmax renormalised
    over the kept tokens; keep both off (the default) when comparing engines.
    """

    max_new_tokens: int = 128
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop_token_ids: tuple[int, ...] = field(default_factory=tuple)
    ignore_eos: bool = False  # always generate max_new_tokens (benchmarks: equal work per engine)

    def with_seed(self, seed: int) -> "SamplingParams":
        return replace(self, seed=seed)


@runtime_checkable
class RolloutEngine(Protocol):
    """Samples completions. ``name`` is logged as the ``engine`` metric of each step."""

    name: str

    def generate(
        self, prompts: list[list[int]], params: SamplingParams, n: int = 1
    ) -> list[list[Completion]]:
        """Return ``n`` completions for each prompt: ``result[i][j]`` is sample j of prompt i."""
        ...

    def update_weights(self, policy) -> None:
        """Make the next ``generate`` sample from the policy's current weights."""
        ...

    def close(self) -> None: ...
