"""The step's training batch, as the credit signals and the update see it.

``TrainBatch`` holds the samples rendered from one step's scored episodes, where each sample
came from (group and episode), and the pre-update passes over them: the trainer's own
logprobs (pi_old), the reference's (adapter off) and the value head's values. Passes run on
first request and are cached, so a signal that needs pi_old and an update that needs it share
one forward, and a step that needs no reference never runs one.

``SignalOutput`` is what one credit signal returns (``rl.trainer.credit`` composes them).

Example::

    batch = TrainBatch.from_groups(groups, policy, temperature=1.0, micro_batch_size=8)
    old = batch.old_logprobs()          # per sample, 1-D float tensors of len(sample)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from rl.trainer.distributed import ONE, World
from rl.types import Episode, EpisodeGroup, Sample


@dataclass
class SignalOutput:
    """One signal's credit for every sample of a batch.

    ``advantages[i]``: a 1-D float tensor of ``len(samples[i])`` per-token advantages, 0 off
    the policy tokens, already scaled by the signal's weight. ``returns[i]``: PPO's value
    targets (only the signal that trains a value head gives them). ``metrics``: logged as is.
    """

    advantages: list[torch.Tensor]
    returns: list[torch.Tensor] | None = None
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainBatch:
    """Samples of one step with their origin and lazily computed pre-update passes.

    ``origin[i] = (g, e)``: sample i was rendered from ``groups[g].episodes[e]``. ``groups``
    are all the step's kept groups, so group-relative signals see every scored episode even
    when some of its samples were left out of the batch (``algorithm.filter_truncated``).
    """

    samples: list[Sample]
    origin: list[tuple[int, int]]
    groups: list[EpisodeGroup]
    policy: object
    temperature: float
    micro_batch_size: int
    value_head: torch.nn.Module | None = None
    share_prompt: bool = True  # pre-update passes run a micro-batch's shared prompt once
    world: World = ONE  # data-parallel ranks split the pre-update passes (ONE: one process)
    _passes: dict[str, list[torch.Tensor]] = field(default_factory=dict, repr=False)

    @classmethod
    def from_groups(cls, groups: list[EpisodeGroup], policy, temperature: float, micro_batch_size: int,
                    value_head=None, filter_truncated: bool = False, share_prompt: bool = True,
                    world: World = ONE) -> "TrainBatch":
        """Every sample of every scored episode (``filter_truncated``: not of episodes cut at the
        token limit; they still count in their group's baseline)."""
        samples, origin = [], []
        for g, group in enumerate(groups):
            for e, episode in enumerate(group.episodes):
                if episode.reward is None or (filter_truncated and episode.stop_reason == "length"):
                    continue
                for sample in episode.to_samples():
                    samples.append(sample)
                    origin.append((g, e))
        return cls(samples, origin, groups, policy, temperature, micro_batch_size, value_head, share_prompt, world)

    @classmethod
    def from_samples(cls, samples: list[Sample], policy, temperature: float = 1.0,
                     micro_batch_size: int = 8) -> "TrainBatch":
        """A batch of bare samples with no episodes behind them (for direct use of the update)."""
        return cls(list(samples), [(0, i) for i in range(len(samples))], [], policy, temperature, micro_batch_size)

    def __len__(self) -> int:
        return len(self.samples)

    def episode(self, i: int) -> Episode:
        g, e = self.origin[i]
        return self.groups[g].episodes[e]

    @property
    def masks(self) -> list[torch.Tensor]:
        """Per sample, the float loss mask (1 on policy tokens)."""
        return [torch.tensor(s.loss_mask, dtype=torch.float32) for s in self.samples]

    def select(self, keep: list[int]) -> "TrainBatch":
        """The batch restricted to samples ``keep`` (cached passes are restricted too)."""
        passes = {name: [values[i] for i in keep] for name, values in self._passes.items()}
        return TrainBatch([self.samples[i] for i in keep], [self.origin[i] for i in keep], self.groups,
                          self.policy, self.temperature, self.micro_batch_size, self.value_head,
                          self.share_prompt, self.world, passes)

    def _ensure(self, old: bool = False, ref: bool = False, values: bool = False) -> None:
        from rl.trainer.update import reference_pass

        need_old, need_ref = old and "old" not in self._passes, ref and "ref" not in self._passes
        need_values = values and "values" not in self._passes
        need_old = need_old or (need_values and "old" not in self._passes)  # the same forward gives both
        if not (need_old or need_ref or need_values):
            return
        got_old, got_ref, got_values = reference_pass(
            self.policy, self.samples, self.temperature, self.micro_batch_size, need_old=need_old,
            need_ref=need_ref, value_head=self.value_head if need_values else None, share_prompt=self.share_prompt,
            world=self.world)
        for name, wanted, got in (("old", need_old, got_old), ("ref", need_ref, got_ref),
                                  ("values", need_values, got_values)):
            if wanted:
                self._passes[name] = got

    def old_logprobs(self) -> list[torch.Tensor]:
        """pi_old: the trainer's logprobs of every token before the update (no gradient)."""
        self._ensure(old=True)
        return self._passes["old"]

    def ref_logprobs(self) -> list[torch.Tensor]:
        """The reference policy's logprobs (the LoRA adapter disabled)."""
        self._ensure(ref=True)
        return self._passes["ref"]

    def values(self) -> list[torch.Tensor]:
        """The value head's values before the update (PPO)."""
        if self.value_head is None and "values" not in self._passes:
            raise ValueError("values() needs a value head (algorithm.advantage: gae)")
        self._ensure(values=True)
        return self._passes["values"]
