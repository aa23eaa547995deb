"""Context cost: prefill time and memory per context length, and what doubling the length costs.

    python recipes/bench/context_cost.py                                  # SmolLM2-135M, 512..8192
    python recipes/bench/context_cost.py --lengths 512,1024,2048 --dtype bfloat16 --threads 2
    python recipes/bench/context_cost.py --model tiny-random --lengths 64,128,256 --repeats 1   # smoke

Each length runs in a fresh process (``rl.context_cost.measure_prefill``): one forward pass over a
random prompt with the KV cache on and the logits of the last position only (as an engine
prefills), best of ``--repeats``. Prints per length: prefill seconds, tokens/s, the ratio
t(L) / t(L/2) (2 when the cost is linear in the length, 4 when attention dominates), the share of
the time a fit t = a L + b L^2 puts in the quadratic (attention) term, the peak RSS and how much
the prefill raised it, and the KV cache (measured from the returned cache, and by the formula
2 x layers x KV heads x head dim x bytes). ``--json`` writes the rows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

MIB = 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--lengths", default="512,1024,2048,4096,8192", help="comma-separated token counts")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"], help="attention implementation")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run (default: torch's)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", default=None, help="write the rows to this file")
    args = parser.parse_args()

    from transformers import AutoConfig

    from rl.context_cost import doubling_ratios, kv_cache_bytes_per_token, measure_prefill, quadratic_share
    from rl.models import resolve_model_path

    lengths = [int(x) for x in args.lengths.split(",") if x.strip()]
    config = AutoConfig.from_pretrained(resolve_model_path(args.model))
    per_token = kv_cache_bytes_per_token(config, args.dtype)
    kv_heads = config.num_key_value_heads or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    print(f"{args.model}: {config.num_hidden_layers} layers, {kv_heads} KV heads, head dim {head_dim}: "
          f"KV cache {per_token} bytes/token at {args.dtype} ({per_token * 8192 / MIB:.0f} MiB at 8K)")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; dtype {args.dtype}, "
          f"attention {args.attn}, threads {args.threads or 'default'}, best of {args.repeats}")
    rows = measure_prefill(args.model, lengths, dtype=args.dtype, repeats=args.repeats,
                           attn_implementation=args.attn, device=args.device, threads=args.threads)
    ratio, share = doubling_ratios(rows), quadratic_share(rows)
    print(f"{'length':>7} {'prefill s':>10} {'tok/s':>8} {'t(L)/t(L/2)':>11} {'attn share':>10} "
          f"{'peak RSS MiB':>12} {'+prefill MiB':>12} {'KV MiB':>7} {'KV formula':>10}")
    for r in rows:
        if "error" in r:
            print(f"{r['length']:>7} failed: {r['error']}")
            continue
        print(f"{r['length']:>7} {r['prefill_s']:>10.3f} {r['tokens_per_s']:>8.0f} "
              f"{ratio.get(r['length'], float('nan')):>11.2f} {share.get(r['length'], float('nan')):>10.2f} "
              f"{r['peak_rss_bytes'] / MIB:>12.0f} {r['prefill_rss_bytes'] / MIB:>12.0f} "
              f"{r['kv_cache_bytes'] / MIB:>7.1f} {r['kv_cache_bytes_formula'] / MIB:>10.1f}")
    if ratio:
        mean = sum(ratio.values()) / len(ratio)
        print(f"doubling the length multiplied the prefill time by {mean:.2f} on average "
              f"(2 = linear, 4 = attention-bound); the attention share at the longest length: "
              f"{share.get(max(share), float('nan')):.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "dtype": args.dtype, "attn": args.attn, "kv_bytes_per_token": per_token,
                       "rows": rows, "doubling_ratio": ratio, "quadratic_share": share}, f, indent=1)


if __name__ == "__main__":
    main()
