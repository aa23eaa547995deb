"""Rollout throughput: transformers ``generate`` (HFEngine) vs vLLM on identical work.

    python recipes/bench/rollout_throughput.py                       # SmolLM2-135M + LoRA r=16
    python recipes/bench/rollout_throughput.py --samples 64 --max_new_tokens 128 --repeats 2

Both engines get the same chain_math prompts, the same sampling settings and the same policy
(a LoRA adapter, as in training); EOS is ignored so each engine produces exactly
``samples x max_new_tokens`` tokens. Each engine is warmed up first; start-up time is
reported, not counted. Engines run one after the other in this one process, so the ratio
is measured under the same machine conditions. Prints tokens/s for each and the ratio.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def timed_generate(engine, prompts, params, n, repeats) -> float:
    """Best-of-``repeats`` tokens/s (after a short warm-up call)."""
    from dataclasses import replace

    engine.generate(prompts[:1], replace(params, max_new_tokens=8), n=2)
    best = 0.0
    for r in range(repeats):
        t0 = time.perf_counter()
        groups = engine.generate(prompts, params.with_seed(r), n=n)
        elapsed = time.perf_counter() - t0
        tokens = sum(len(c.token_ids) for g in groups for c in g)
        best = max(best, tokens / elapsed)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--group_size", type=int, default=8)
    parser.add_argument("--max_new_tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--lora_r", type=int, default=16)
    parser.add_argument("--compile", action="store_true", help="vLLM with torch.compile (slower start-up)")
    args = parser.parse_args()

    import torch

    from envs.chain_math import ChainMathConfig, ChainMathSource
    from rl.config import LoraConfig, VLLMConfig
    from rl.models import load_policy
    from rl.rollout.base import SamplingParams
    from rl.rollout.hf import HFEngine
    from rl.rollout.chat import render_prompt
    from rl.rollout.vllm import VLLMEngine

    policy = load_policy(args.model, lora=LoraConfig(r=args.lora_r) if args.lora_r else None)
    source = ChainMathSource(ChainMathConfig(min_horizon=2, max_horizon=4), seed=123)
    prompts = [render_prompt(policy.tokenizer, t.messages) for t in source.sample(args.samples // args.group_size)]
    params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=1.0, ignore_eos=True)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, cuda={torch.cuda.is_available()}")
    print(f"work: {len(prompts)} prompts x {args.group_size} samples x {args.max_new_tokens} tokens, "
          f"model {args.model}, LoRA r={args.lora_r}")

    hf_tps = timed_generate(HFEngine(policy, batch_size=args.samples), prompts, params, args.group_size, args.repeats)
    print(f"hf    {hf_tps:8.1f} tokens/s")
    t0 = time.perf_counter()
    vllm = VLLMEngine(policy, VLLMConfig(enforce_eager=not args.compile), seed=0)
    startup = time.perf_counter() - t0
    try:
        vllm_tps = timed_generate(vllm, prompts, params, args.group_size, args.repeats)
    finally:
        vllm.close()
    print(f"vllm  {vllm_tps:8.1f} tokens/s  (start-up {startup:.0f} s, compile={args.compile}, lora_sync={'adapter' if vllm.use_adapter else 'merged'})")
    print(f"ratio vllm/hf: {vllm_tps / hf_tps:.2f}x")


if __name__ == "__main__":
    main()
