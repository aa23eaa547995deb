"""One ``policy_update`` on a fixed batch, in however many processes the launcher started.

Run by ``tests/test_data_parallel.py``: once as a plain process, once under
``accelerate launch --num_processes 2``; rank 0 saves to ``argv[1]`` the trainable weights after
the update, the update's metrics, and an on-policy distillation teacher's logprobs of the same
batch with the tokens each rank ran through the teacher. The batch (4 prompts x 3 completions of
random tokens with hand-set advantages) and the LoRA init are seeded, so both runs start identically.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from rl.config import LoraConfig  # noqa: E402
from rl.models import load_policy  # noqa: E402
from rl.trainer.batch import TrainBatch  # noqa: E402
from rl.trainer.config import AlgorithmConfig, OptimConfig  # noqa: E402
from rl.trainer.distributed import World  # noqa: E402
from rl.trainer.update import policy_update  # noqa: E402
from rl.types import Sample  # noqa: E402


def fixed_samples(vocab: int) -> tuple[list[Sample], list[float]]:
    g = torch.Generator().manual_seed(1234)
    samples, advantages = [], []
    for prompt in range(4):
        prompt_ids = torch.randint(3, vocab, (5 + prompt,), generator=g).tolist()
        for k in range(3):
            completion = torch.randint(3, vocab, (4 + 2 * k + prompt,), generator=g).tolist()
            ids = prompt_ids + completion
            mask = [0] * len(prompt_ids) + [1] * len(completion)
            engine_lp = [(-1.0 - 0.1 * k if m else 0.0) for m in mask]
            samples.append(Sample(ids, mask, engine_lp, []))
            advantages.append([1.0, -0.5, -0.5][k] * (1 + prompt))
    return samples, advantages


def main(out: str) -> None:
    world = World.from_env()
    torch.manual_seed(0)
    policy = load_policy("tiny-random", lora=LoraConfig(r=8, alpha=16), dtype="float32", device="cpu")
    samples, advantages = fixed_samples(policy.model.config.vocab_size)
    batch = TrainBatch.from_samples(samples, policy, temperature=1.0, micro_batch_size=2)
    batch.world = world
    # GRPO with the KL in the loss (a reference pass) and 2 minibatches (a pi_old pass): both
    # pre-update passes and the gradient pass run split over the ranks
    algo = AlgorithmConfig.from_preset("grpo", minibatches=2)
    params = [p for p in policy.model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    before = {n: p.detach().clone() for n, p in policy.model.named_parameters() if p.requires_grad}
    metrics = policy_update(policy, optimizer, scheduler, batch, advantages, algo, OptimConfig(micro_batch_size=2),
                            max_new_tokens=16, generator=torch.Generator().manual_seed(7), world=world)
    after = {n: p.detach().clone() for n, p in policy.model.named_parameters() if p.requires_grad}
    # on-policy distillation's teacher pass on the same batch: the ranks split it too (tokens each
    # rank embedded, gathered) and every rank ends with the whole batch's teacher logprobs
    from rl.trainer.teacher import TeacherKL

    torch.manual_seed(1)
    teacher = TeacherKL("tiny-random", policy.tokenizer, coef=1.0, device="cpu", dtype="float32")
    embedded = []
    teacher.policy.model.get_input_embeddings().register_forward_hook(
        lambda module, args, output: embedded.append(args[0].numel()))
    teacher_lp = teacher.teacher_logprobs(batch)
    teacher_tokens = world.gather([sum(embedded)])
    if world.is_main:
        torch.save({"before": before, "after": after, "metrics": metrics, "world_size": world.size,
                    "teacher_lp": teacher_lp, "teacher_tokens": teacher_tokens}, out)
    world.barrier()


if __name__ == "__main__":
    main(sys.argv[1])
