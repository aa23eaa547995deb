"""Update throughput: training tokens/s and achieved FLOP/s of one policy update, as a fraction
of this machine's matmul peak measured in the same run.

    python recipes/bench/train_throughput.py                        # SmolLM2-135M + LoRA r=16
    python recipes/bench/train_throughput.py --variants shared --repeats 5

The batch is one GRPO step of the CPU preset: 4 chain_math prompts (the chat-rendered prompt,
~95 tokens) x 8 completions of ``--completion_tokens`` random tokens, all of them loss tokens;
one optimizer step in micro-batches of 8, bf16 autocast where the CPU has it. Variants, timed
one after the other on the same batch:

- ``full``: the reference pass runs (``algorithm.log_kl: true``) and every sample carries its
  own prompt through forward and backward (``optim.share_prompt: false``);
- ``no_ref``: no reference pass (KL is neither in the loss nor logged);
- ``shared``: no reference pass, and each group's prompt runs once per micro-batch, its keys and
  values shared by the group's completions (the trainer's default).

FLOPs are counted for the work each variant executes, for a frozen base with LoRA adapters:
forward ``2 N`` per token for the frozen linear weights (N of them) plus ``2 r (in + out)`` per
LoRA-adapted linear, attention ``4 d_attn ctx`` per token and layer (QK^T and AV over the
``ctx`` keys it attends to), the LM head ``2 H V`` at each loss position only; backward: input
gradients only for frozen weights (``2 N`` per token, the same again), input and weight
gradients for LoRA (twice its forward), twice the forward for attention and the head. A
reference pass adds one forward. "Useful" tokens/s counts completion tokens only. The peak is
the best of 5 timed 2048x2048 matmuls on this machine, in this run, in the dtype the trainer
computes in (bf16 autocast where the CPU has native bf16, else fp32).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

VARIANTS = {"full": dict(log_kl=True, share_prompt=False), "no_ref": dict(log_kl=False, share_prompt=False),
            "shared": dict(log_kl=False, share_prompt=True)}


def matmul_peak_gflops(dtype, n: int = 2048, repeats: int = 5) -> float:
    import torch

    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    for _ in range(3):
        a @ b  # warm-up (AMX tiles, thread pool)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def build_batch(policy, prompts: int, group: int, completion_tokens: int, seed: int = 0):
    """``prompts x group`` samples: a real chat-rendered chain_math prompt + random completion tokens."""
    import torch

    from rl.build import build_task_source
    from rl.config import EnvConfig
    from rl.rollout.chat import render_prompt
    from rl.types import Sample

    gen = torch.Generator().manual_seed(seed)
    tasks = build_task_source(EnvConfig(options={"min_horizon": 2, "max_horizon": 4}), seed).sample(prompts)
    samples = []
    for task in tasks:
        prompt = render_prompt(policy.tokenizer, task.messages)
        for _ in range(group):
            completion = torch.randint(100, 20_000, (completion_tokens,), generator=gen).tolist()
            samples.append(Sample(prompt + completion, [0] * len(prompt) + [1] * completion_tokens,
                                  [0.0] * len(prompt) + [-2.0] * completion_tokens, []))
    return samples


def update_flops(config, lora_r: int, samples, micro: int, shared: bool, ref_pass: bool) -> float:
    """FLOPs executed by one update (forward + backward, plus a reference forward if run)."""
    layers, hidden, vocab = config.num_hidden_layers, config.hidden_size, config.vocab_size
    head_dim = getattr(config, "head_dim", None) or hidden // config.num_attention_heads
    q_dim, kv_dim = config.num_attention_heads * head_dim, config.num_key_value_heads * head_dim
    linears = [(hidden, q_dim), (hidden, kv_dim), (hidden, kv_dim), (q_dim, hidden),
               (hidden, config.intermediate_size), (hidden, config.intermediate_size),
               (config.intermediate_size, hidden)]
    frozen_per_token = 2 * layers * sum(i * o for i, o in linears)
    lora_per_token = 2 * layers * sum(lora_r * (i + o) for i, o in linears)
    forward = backward = 0.0
    for start in range(0, len(samples), micro):
        rows = samples[start:start + micro]
        prefix = _common_prefix(rows) if shared and len(rows) > 1 else 0
        for k, sample in enumerate(rows):
            begin = prefix if k else 0  # the shared prefix is computed once per micro-batch
            tokens = len(sample) - begin
            ctx = sum(range(begin + 1, len(sample) + 1))  # keys attended, summed over this row's queries
            attention = 4 * layers * q_dim * ctx
            head = 2 * hidden * vocab * sum(sample.loss_mask)
            forward += (frozen_per_token + lora_per_token) * tokens + attention + head
            backward += (frozen_per_token + 2 * lora_per_token) * tokens + 2 * attention + 2 * head
    reference = forward if ref_pass else 0.0
    return forward + backward + reference


def _common_prefix(rows) -> int:
    first = rows[0].token_ids
    n = min(len(r) for r in rows) - 1
    for i in range(n):
        if any(r.token_ids[i] != first[i] for r in rows):
            return i
    return max(n, 0)


def time_update(policy, samples, variant: dict, repeats: int) -> float:
    import torch

    from rl.trainer.batch import TrainBatch
    from rl.trainer.config import AlgorithmConfig, OptimConfig
    from rl.trainer.update import policy_update

    algo = AlgorithmConfig(kl_coef=0.0, log_kl=variant["log_kl"], importance_correction="none")
    optim = OptimConfig(lr=1e-9, micro_batch_size=8, share_prompt=variant["share_prompt"])
    params = [p for p in policy.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    times = []
    for r in range(repeats + 1):  # the first run warms up
        batch = TrainBatch.from_samples(samples, policy)
        t0 = time.perf_counter()
        policy_update(policy, optimizer, scheduler, batch, [1.0 if i % 2 else -1.0 for i in range(len(samples))],
                      algo, optim, 128, torch.Generator().manual_seed(r))
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--group_size", type=int, default=8)
    parser.add_argument("--completion_tokens", type=int, default=101)
    parser.add_argument("--lora_r", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()

    import torch

    from rl.config import LoraConfig
    from rl.models import load_policy

    policy = load_policy(args.model, lora=LoraConfig(r=args.lora_r, alpha=2 * args.lora_r))
    samples = build_batch(policy, args.prompts, args.group_size, args.completion_tokens)
    fp32 = matmul_peak_gflops(torch.float32)
    # a CPU without native bf16 (no AVX512-bf16 / AMX) emulates it far below its fp32 rate, and the
    # trainer then runs in fp32 (autocast off): the fp32 peak is the one that bounds it
    bf16 = matmul_peak_gflops(torch.bfloat16) if policy.autocast_dtype == torch.bfloat16 else None
    peak, peak_name = (bf16, "bf16") if bf16 else (fp32, "fp32")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, autocast {policy.autocast_dtype}; "
          f"matmul peak fp32 {fp32:.0f} GFLOP/s, bf16 " + (f"{bf16:.0f} GFLOP/s" if bf16 else "not native here"))
    prompt_len = len(samples[0]) - args.completion_tokens
    print(f"batch: {len(samples)} samples of {prompt_len} prompt + {args.completion_tokens} completion tokens")
    useful = len(samples) * args.completion_tokens
    first = None
    for name in args.variants:
        variant = VARIANTS[name]
        seconds = time_update(policy, samples, variant, args.repeats)
        flops = update_flops(policy.model.config, args.lora_r, samples, 8, variant["share_prompt"], variant["log_kl"])
        first = first or seconds
        print(f"{name:>7}: {seconds:6.2f} s/update  {useful / seconds:6.0f} completion tok/s  "
              f"{flops / seconds / 1e9:6.0f} GFLOP/s = {100 * flops / seconds / 1e9 / peak:4.1f}% of the {peak_name} "
              f"peak  x{first / seconds:.2f} vs {args.variants[0]}", flush=True)


if __name__ == "__main__":
    main()
