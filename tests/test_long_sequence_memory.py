"""Training on long sequences: gradient checkpointing gives the same update, and the memory of the
trainer's forward+backward (``rl.trainer.forward.token_logprobs``) grows linearly with the length.

The memory test measures the peak resident memory of one forward+backward on tiny-random in a
fresh interpreter (this file run as a script): 16 rows of L tokens, the loss on the last 16 of each
(the long-context shape: a long document, a short answer), at L = 256, 512, 1024, with the baseline
taken just before and the kernel's peak counter reset (``/proc/self/clear_refs``). glibc is told to
map every allocation over 64 KiB on its own (``MALLOC_MMAP_THRESHOLD_``), so freed tensors leave
the resident set at once and the peak is the live tensors' peak, reproducible to ~3 MB.

What it proves: the memory that depends on L grows linearly. The statistic is the ratio of the
increments, (M(1024) - M(512)) / (M(512) - M(256)): 2 when memory is c + a L, 4 when a c + q L^2
term dominates. Measured: 2.2 with the trainer's path (SDPA, no L x L attention weights kept, logits
only at the 256 answer positions); 3.6 for the control, the same model with eager attention (its
softmax weights, 16 rows x 2 heads x L^2 floats per layer, kept for the backward), so the bound 3
separates them. Logits at every position would cost 16 x 1024 x 49152 x 4 B = 3.2 GB at 1024; the
measured peak is ~0.3 GB. With gradient checkpointing the L-dependent part nearly vanishes
(+6 to +10 MB from 256 to 1024 tokens against +88 MB without).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
LENGTHS = (256, 512, 1024)
ROWS, ANSWER = 16, 16


# ---------------------------------------------------------------- gradient checkpointing


@pytest.mark.parametrize("lora, share", [(True, True), (True, False), (False, False)])
def test_update_is_the_same_with_gradient_checkpointing(tiny_path, lora, share):
    """One full ``policy_update`` (SGD, lr 0.5) with and without checkpointing: the same weights,
    and the checkpointed run really recomputed its layers."""
    from rl.config import LoraConfig
    from rl.models import load_policy
    from rl.trainer.batch import TrainBatch
    from rl.trainer.config import AlgorithmConfig, OptimConfig
    from rl.trainer.update import policy_update
    from test_forward import _perturbed, _samples

    after, calls = {}, []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        policy = load_policy(str(tiny_path), lora=LoraConfig(r=4, alpha=8) if lora else None, dtype="float32",
                             device="cpu", gradient_checkpointing=checkpointing)
        policy = _perturbed(policy)
        for m in policy.model.modules():
            if getattr(m, "gradient_checkpointing", False) and hasattr(m, "_gradient_checkpointing_func"):
                inner = m._gradient_checkpointing_func
                m._gradient_checkpointing_func = lambda *a, _f=inner, **k: calls.append(1) or _f(*a, **k)
        params = [p for p in policy.model.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(params, lr=0.5)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
        metrics = policy_update(policy, optimizer, scheduler, TrainBatch.from_samples(_samples(), policy),
                                [1.0, -1.0, 0.5, -0.5], AlgorithmConfig(log_kl=False),
                                OptimConfig(share_prompt=share, gradient_checkpointing=checkpointing),
                                8, torch.Generator().manual_seed(0))
        assert metrics["grad_norm"] > 0
        after[checkpointing] = [p.detach().clone() for p in params]
        if not checkpointing:
            assert not calls
    assert len(calls) >= 2  # both layers of at least one micro-batch ran checkpointed
    for plain, checkpointed in zip(after[False], after[True]):
        torch.testing.assert_close(checkpointed, plain, atol=1e-6, rtol=1e-5)


def test_checkpointing_only_inside_the_gradient_pass(tiny_path):
    """Outside ``policy.checkpointing()`` (reference passes, generation) the layers run normally,
    so a shared prompt's KV cache is used there."""
    from rl.models import load_policy
    from rl.trainer.forward import _checkpointing, _decoder_and_head

    policy = load_policy(str(tiny_path), lora=None, dtype="float32", device="cpu", gradient_checkpointing=True)
    policy.model.eval()
    decoder, _ = _decoder_and_head(policy.model)
    assert not _checkpointing(decoder)
    with policy.checkpointing():
        assert _checkpointing(decoder)
        assert not any(m.training for m in decoder.modules() if "Attention" in type(m).__name__)  # no dropout
    assert not _checkpointing(decoder) and not any(m.training for m in policy.model.modules())


# ---------------------------------------------------------------- memory by sequence length


def _status_bytes(key: str) -> int:
    return int(re.search(key + r":\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) * 1024


def _peak_extra_mb(policy, length: int) -> float:
    """Peak resident memory (MB) of one forward+backward above the memory before it."""
    import ctypes
    import gc

    from rl.trainer.forward import collate, token_logprobs
    from rl.types import Sample

    g = torch.Generator().manual_seed(length)
    samples = [Sample([100 + r] + torch.randint(100, 40000, (length - 1,), generator=g).tolist(),
                      [0] * (length - ANSWER) + [1] * ANSWER, [0.0] * length, []) for r in range(ROWS)]
    micro = collate(samples, list(range(ROWS)), [0.0] * ROWS, 0, torch.device("cpu"))
    policy.model.zero_grad(set_to_none=True)
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    before = _status_bytes("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    with policy.checkpointing():
        logprobs_bt, _, _ = token_logprobs(policy, micro, 1.0)
    (logprobs_bt * micro.loss_mask_bt).sum().backward()
    return (_status_bytes("VmHWM") - before) / 2**20


def measure() -> dict[str, list[float]]:
    """Peak MB at each of ``LENGTHS``: the trainer's path, the eager-attention control, and with
    gradient checkpointing. Run in a fresh interpreter (``__main__`` below)."""
    from rl.config import LoraConfig
    from rl.models import load_policy

    policy = load_policy("tiny-random", lora=LoraConfig(r=4, alpha=8), dtype="float32", device="cpu")
    policy.model.eval()
    _peak_extra_mb(policy, 64)  # first-call allocations (kernels, caches) out of the way
    out = {"sdpa": [_peak_extra_mb(policy, n) for n in LENGTHS]}
    policy.model.set_attn_implementation("eager")
    out["eager"] = [_peak_extra_mb(policy, n) for n in LENGTHS]
    policy.model.set_attn_implementation("sdpa")
    policy.model.get_base_model().gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    policy.gradient_checkpointing = True
    out["checkpointed"] = [_peak_extra_mb(policy, n) for n in LENGTHS]
    return out


def _increment_ratio(mb: list[float]) -> float:
    return (mb[2] - mb[1]) / (mb[1] - mb[0])


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's peak-RSS reset")
def test_training_memory_grows_linearly_with_the_sequence_length():
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.run([sys.executable, __file__], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    mb = json.loads(proc.stdout.strip().splitlines()[-1])
    trainer, control, checkpointed = mb["sdpa"], mb["eager"], mb["checkpointed"]
    assert trainer[0] < trainer[1] < trainer[2], mb
    assert _increment_ratio(trainer) < 3.0, mb  # linear: ~2.2
    assert _increment_ratio(control) > 3.0, mb  # the measurement sees an L^2 term: ~3.6
    assert trainer[2] < 0.25 * ROWS * 1024 * 49152 * 4 / 2**20, mb  # no [B, T, V] logits (3.2 GB)
    assert checkpointed[2] - checkpointed[0] < 0.5 * (trainer[2] - trainer[0]), mb  # activations not kept


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    print(json.dumps({k: [round(v, 1) for v in vs] for k, vs in measure().items()}))
