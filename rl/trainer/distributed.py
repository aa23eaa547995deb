"""Data parallel training: the ranks ``accelerate launch`` (or ``torchrun``) starts, and what they share.

``World.from_env()`` reads the launcher's environment (``WORLD_SIZE``, ``RANK``, ...) and, with
more than one process, lets accelerate's ``PartialState`` set up the process group (gloo on
CPU, NCCL on CUDA), so ``accelerate launch --num_processes 2 recipes/grpo_chain_math.py`` runs
the same script as one process. What each rank does in one RL step:

- every rank draws the step's tasks from its own copy of the task source (same seed, same
  draws: the data order does not depend on the world size, so a run resumes with any world
  size that divides ``rollout.prompts_per_step``), then rolls out and scores only its share
  (``shard``), with its own engine;
- the scored groups are gathered to every rank (``gather``: lists of token ids, not
  tensors), so credit assignment, the curriculum and every metric see the whole batch and
  batch-wide normalisations (REINFORCE++, whitening) are the one-process numbers;
- the pre-update passes (pi_old, the reference, PPO's values) and the gradient passes run on
  the rank's share of the micro-batches; the LoRA (and value-head) gradients are summed over
  ranks (``all_reduce_grads``) before clipping, so every rank takes the same optimizer step
  and the weights stay identical without broadcasting them;
- rank 0 alone writes the run directory and checkpoints.

Why by hand rather than ``accelerator.prepare(model)`` (torch DDP): the update accumulates
gradients over micro-batches with the whole minibatch's token counts as normalisers and runs
a shared prompt's forward once per micro-batch (``rl.trainer.forward``); DDP would all-reduce
at every backward and needs a uniform forward. One explicit all-reduce per optimizer step of
the (small) trainable parameters is all data parallelism needs here. The frozen base is
replicated on every rank: sharding it (FSDP, ZeRO-3) is not done.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from rl.errors import ConfigError


@dataclass(frozen=True)
class World:
    """This process's rank among ``size`` data-parallel ranks (``World()`` is one process)."""

    rank: int = 0
    size: int = 1

    @classmethod
    def from_env(cls) -> "World":
        """The world the launcher set up (one process when ``WORLD_SIZE`` is unset or 1)."""
        for flag, name in (("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")):
            if os.environ.get(flag, "false").lower() == "true":
                raise ConfigError(
                    f"accelerate launched this run with {name}, which horizon does not wire: its data parallel "
                    "replicates the frozen base and sums the LoRA gradients over ranks (the trainable state is "
                    "a few MB, so sharding it saves nothing). Launch with recipes/accelerate/ddp.yaml instead")
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return cls()
        from accelerate import PartialState

        # init_process_group from the launcher's env: NCCL on CUDA; on CPU accelerate needs cpu=True
        # to pick gloo for processes torchrun started (else it reports a single process)
        state = PartialState(cpu=not torch.cuda.is_available())
        if state.num_processes != int(os.environ["WORLD_SIZE"]):
            raise RuntimeError(f"accelerate set up {state.num_processes} processes but WORLD_SIZE is "
                               f"{os.environ['WORLD_SIZE']}: launch with `accelerate launch --multi_gpu "
                               "--num_processes N` (torchrun underneath; on CPU too) or `torchrun --nproc_per_node N`")
        return cls(state.process_index, state.num_processes)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, items: Sequence[Any]) -> list[Any]:
        """This rank's contiguous share of ``items`` (ranks 0..size-1 in order cover them all;
        the first ``len % size`` ranks get one more)."""
        n, rest = divmod(len(items), self.size)
        start = self.rank * n + min(self.rank, rest)
        return list(items[start: start + n + (self.rank < rest)])

    def gather(self, local: list[Any]) -> list[Any]:
        """Every rank's ``local`` list, concatenated in rank order, on every rank."""
        if self.size == 1:
            return list(local)
        parts: list[Any] = [None] * self.size
        torch.distributed.all_gather_object(parts, local)
        return [item for part in parts for item in part]

    def all_reduce_grads(self, params: list[torch.Tensor]) -> None:
        """Sum the gradients of ``params`` over ranks (a rank with no gradient adds zeros)."""
        if self.size == 1:
            return
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in params])  # one collective, not one per tensor
        torch.distributed.all_reduce(flat)
        offset = 0
        for p in params:
            p.grad.copy_(flat[offset: offset + p.numel()].view_as(p))
            offset += p.numel()

    def max(self, value: float) -> float:
        """The largest ``value`` over ranks (every rank gets it)."""
        return self._reduce(value, torch.distributed.ReduceOp.MAX) if self.size > 1 else value

    def all_true(self, flag: bool) -> bool:
        """Whether ``flag`` holds on every rank."""
        return bool(self._reduce(float(flag), torch.distributed.ReduceOp.MIN)) if self.size > 1 else flag

    def _reduce(self, value: float, op) -> float:
        t = torch.tensor([float(value)], dtype=torch.float64)
        torch.distributed.all_reduce(t, op=op)
        return float(t.item())

    def barrier(self) -> None:
        if self.size > 1:
            torch.distributed.barrier()


ONE = World()
