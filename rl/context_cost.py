"""What a long context costs: KV-cache bytes per token from a model config, and measured prefill
time and peak memory per context length.

- ``kv_cache_bytes_per_token(config, dtype)`` = 2 (K and V) x layers x KV heads x head dim x bytes
  per element: the memory every token of context holds during decoding (standard multi-head or
  grouped-query attention; sliding-window layers and latent attention (MLA) hold less).
- ``measure_prefill(model, lengths)`` runs one forward pass over a random prompt of each length
  (``use_cache=True``, logits of the last position only, as engines prefill) in a fresh
  subprocess per length, and reports the best of ``repeats`` wall times and the memory:
  ``peak_rss_bytes`` is ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (the process's high-water
  mark: torch's CPU allocator keeps no statistics and ``tracemalloc`` does not see its memory);
  ``prefill_rss_bytes`` is how far the prefill raised it above the mark after loading and a
  warm-up (0 when loading peaked higher); on CUDA ``cuda_peak_bytes`` is
  ``torch.cuda.max_memory_allocated`` of the prefill alone.
- ``fit_linear_quadratic`` splits the times into ``a L`` (projections, MLP: linear in the length)
  and ``b L^2`` (attention scores), so doubling the length multiplies the time by between 2
  (all linear) and 4 (all attention).

Example::

    kv_cache_bytes_per_token({"num_hidden_layers": 30, "num_attention_heads": 9,
                              "num_key_value_heads": 3, "hidden_size": 576}, "bfloat16")   # 23040
    rows = measure_prefill("tiny-random", [128, 256, 512])   # [{"length": 128, "prefill_s": ...}, ...]
    doubling_ratios(rows)                                    # {256: 1.9, 512: 2.1}
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

DTYPE_BYTES = {"float32": 4, "float": 4, "bfloat16": 2, "float16": 2, "half": 2, "float8": 1, "fp8": 1}


def _field(config: Any, name: str) -> Any:
    return config.get(name) if isinstance(config, dict) else getattr(config, name, None)


def dtype_bytes(dtype: Any) -> int:
    """Bytes per element of ``dtype``: a name (``"bfloat16"``, ``"torch.float16"``) or a torch dtype."""
    if hasattr(dtype, "itemsize"):
        return int(dtype.itemsize)
    name = str(dtype).removeprefix("torch.")
    if name not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}: use one of {sorted(DTYPE_BYTES)} or a torch dtype")
    return DTYPE_BYTES[name]


def kv_cache_bytes_per_token(hf_config: Any, dtype: Any = "bfloat16") -> int:
    """KV-cache bytes one token of context holds: ``2 x num_hidden_layers x num_key_value_heads x
    head_dim x bytes(dtype)``; ``num_key_value_heads`` defaults to ``num_attention_heads`` (MHA) and
    ``head_dim`` to ``hidden_size / num_attention_heads``. ``hf_config``: a transformers config or
    a dict with those keys (a multimodal config's ``text_config`` is used when it has no layers)."""
    if _field(hf_config, "num_hidden_layers") is None and _field(hf_config, "text_config") is not None:
        hf_config = _field(hf_config, "text_config")
    layers = _field(hf_config, "num_hidden_layers")
    heads = _field(hf_config, "num_attention_heads")
    if not layers or not heads:
        raise ValueError("the model config needs num_hidden_layers and num_attention_heads")
    kv_heads = _field(hf_config, "num_key_value_heads") or heads
    head_dim = _field(hf_config, "head_dim") or _field(hf_config, "hidden_size") // heads
    return 2 * layers * kv_heads * head_dim * dtype_bytes(dtype)


def measure_prefill(model: str, lengths: list[int], dtype: str = "float32", repeats: int = 2,
                    attn_implementation: str = "sdpa", device: str = "cpu", threads: int | None = None,
                    timeout_s: float = 3600) -> list[dict[str, Any]]:
    """Prefill seconds and peak memory of ``model`` (a built-in name or an HF dir) at each length,
    each in a fresh Python process. Returns one dict per length: ``length``, ``prefill_s`` (best of
    ``repeats``), ``tokens_per_s``, ``loaded_rss_bytes``, ``peak_rss_bytes``, ``prefill_rss_bytes``,
    ``kv_cache_bytes`` (the cache the pass returned, measured), ``kv_cache_bytes_formula``
    (``kv_cache_bytes_per_token`` x length at ``dtype``) and on CUDA ``cuda_peak_bytes``. A length
    the model cannot run (out of memory, ...) has ``error`` instead of the measurements."""
    from rl.models import resolve_model_path

    path = str(resolve_model_path(model))
    rows = []
    for length in lengths:
        job = {"path": path, "length": int(length), "dtype": dtype, "repeats": repeats,
               "attn_implementation": attn_implementation, "device": device, "threads": threads}
        env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
        proc = subprocess.run([sys.executable, "-c", "from rl.context_cost import _worker_main; _worker_main()",
                               json.dumps(job)], capture_output=True, text=True, timeout=timeout_s, env=env)
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines:
            rows.append({"length": int(length), "error": (proc.stderr.strip().splitlines() or ["no output"])[-1]})
            continue
        rows.append(json.loads(lines[-1]))
    return rows


def _max_rss_bytes() -> int:
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # Linux reports KiB, macOS bytes


def _cache_bytes(cache: Any) -> int:
    """Bytes of the key and value tensors a forward pass returned (any transformers cache layout)."""
    import torch

    seen = 0
    stack = [cache]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            seen += item.numel() * item.element_size()
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif hasattr(item, "layers"):  # transformers >= 4.56: Cache.layers[i].keys / .values
            stack.extend((getattr(layer, "keys", None), getattr(layer, "values", None)) for layer in item.layers)
        elif hasattr(item, "key_cache"):
            stack.extend((item.key_cache, item.value_cache))
    return seen


def _worker_main() -> None:
    """One measurement (``measure_prefill``'s job in ``sys.argv[1]``); prints its JSON row last."""
    import inspect
    import time

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    job = json.loads(sys.argv[1])
    if job["threads"]:
        torch.set_num_threads(job["threads"])
    dtype = getattr(torch, job["dtype"])
    device = torch.device(job["device"])
    config = AutoConfig.from_pretrained(job["path"])
    model = AutoModelForCausalLM.from_pretrained(job["path"], dtype=dtype,
                                                 attn_implementation=job["attn_implementation"]).to(device).eval()
    length = job["length"]
    ids = torch.randint(100, config.vocab_size, (1, length), generator=torch.Generator().manual_seed(0)).to(device)
    kwargs = {"use_cache": True}
    if "logits_to_keep" in inspect.signature(model.forward).parameters:
        kwargs["logits_to_keep"] = 1
    loaded = _max_rss_bytes()
    with torch.inference_mode():
        model(ids[:, : min(length, 32)], **kwargs)  # warm-up: kernels, allocator
        before = _max_rss_bytes()
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        best = float("inf")
        for _ in range(max(1, job["repeats"])):
            t0 = time.perf_counter()
            out = model(ids, **kwargs)
            if device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t0)
            kv = _cache_bytes(out.past_key_values)
            del out
    peak = _max_rss_bytes()
    row = {"length": length, "prefill_s": round(best, 5), "tokens_per_s": round(length / best, 1),
           "loaded_rss_bytes": loaded, "peak_rss_bytes": peak, "prefill_rss_bytes": max(0, peak - before),
           "kv_cache_bytes": kv, "kv_cache_bytes_formula": kv_cache_bytes_per_token(config, dtype) * length}
    if device.type == "cuda":
        row["cuda_peak_bytes"] = torch.cuda.max_memory_allocated()
    print(json.dumps(row))


def doubling_ratios(rows: list[dict[str, Any]]) -> dict[int, float]:
    """``{L: t(L) / t(L / 2)}`` for every measured length whose half was measured too."""
    t = {r["length"]: r["prefill_s"] for r in rows if "prefill_s" in r}
    return {L: round(t[L] / t[L // 2], 3) for L in sorted(t) if L % 2 == 0 and L // 2 in t and t[L // 2] > 0}


def fit_linear_quadratic(lengths: list[float], seconds: list[float]) -> tuple[float, float]:
    """Least-squares ``(a, b)`` of ``t = a L + b L^2`` with ``a, b >= 0`` (the 2 x 2 normal equations;
    a negative coefficient is set to 0 and the other refitted alone)."""
    s2 = sum(L ** 2 for L in lengths)
    s3 = sum(L ** 3 for L in lengths)
    s4 = sum(L ** 4 for L in lengths)
    t1 = sum(L * t for L, t in zip(lengths, seconds))
    t2 = sum(L ** 2 * t for L, t in zip(lengths, seconds))
    det = s2 * s4 - s3 * s3
    a, b = ((t1 * s4 - t2 * s3) / det, (s2 * t2 - s3 * t1) / det) if det > 0 else (-1.0, -1.0)
    if a >= 0 and b >= 0:
        return a, b
    only_a, only_b = t1 / s2, t2 / s4
    err_a = sum((t - only_a * L) ** 2 for L, t in zip(lengths, seconds))
    err_b = sum((t - only_b * L * L) ** 2 for L, t in zip(lengths, seconds))
    return (only_a, 0.0) if err_a <= err_b else (0.0, only_b)


def quadratic_share(rows: list[dict[str, Any]]) -> dict[int, float]:
    """``{L: b L^2 / (a L + b L^2)}``: the share of the prefill time that grows with the square of
    the length (attention), from ``fit_linear_quadratic`` over every measured length."""
    ok = [r for r in rows if "prefill_s" in r]
    if len(ok) < 2:
        return {}
    a, b = fit_linear_quadratic([r["length"] for r in ok], [r["prefill_s"] for r in ok])
    return {r["length"]: round(b * r["length"] ** 2 / (a * r["length"] + b * r["length"] ** 2), 3)
            for r in ok if a * r["length"] + b * r["length"] ** 2 > 0}
