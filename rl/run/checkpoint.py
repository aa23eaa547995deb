"""Checkpoints: everything needed to continue a run exactly, written atomically.

``checkpoints/step_N/`` holds ``model/`` (the LoRA adapter, or the full weights),
``optimizer.pt``, ``scheduler.pt``, ``rng.pt`` (python, numpy, torch, CUDA states) and
``state.json`` (step, task-source position, ...). It is written to a hidden temp directory
and renamed into place, so a directory named ``step_N`` is always complete; the last
``keep_last`` are kept.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

STATE_FILE = "state.json"


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch from the one config ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def save_checkpoint(root: Path, step: int, policy, optimizer, scheduler, state: dict[str, Any],
                    keep_last: int = 3, extra: dict[str, Any] | None = None) -> Path:
    """Write ``root/step_{step}`` atomically and prune older ones; returns its path.

    ``extra``: more modules to save by name (e.g. PPO's ``value_head`` -> ``value_head.pt``).
    """
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step}"
    tmp = root / f".tmp-step_{step}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    policy.model.save_pretrained(tmp / "model")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    torch.save(rng_state(), tmp / "rng.pt")
    for name, module in (extra or {}).items():
        torch.save(module.state_dict(), tmp / f"{name}.pt")
    (tmp / STATE_FILE).write_text(json.dumps({"step": step, **state}, indent=2))
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    for old in list_checkpoints(root)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first (temp dirs of a crashed save ignored)."""
    if not root.is_dir():
        return []
    done = [p for p in root.glob("step_*") if (p / STATE_FILE).is_file()]
    return sorted(done, key=lambda p: int(p.name.split("_")[1]))


def load_checkpoint(path: Path, policy, optimizer=None, scheduler=None,
                    extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Restore model weights (and optimizer, scheduler, RNG, ``extra`` modules when given);
    returns state.json."""
    load_weights(path, policy)
    for name, module in (extra or {}).items():
        module.load_state_dict(torch.load(path / f"{name}.pt", weights_only=True))
    if optimizer is not None:
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=False))
    if scheduler is not None:
        scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=False))
        set_rng_state(torch.load(path / "rng.pt", weights_only=False))
    return json.loads((path / STATE_FILE).read_text())


def load_weights(path: Path, policy) -> None:
    """Load the adapter (LoRA) or the full weights saved in ``path/model`` into ``policy``."""
    model_dir = path / "model"
    if policy.is_lora:
        from peft import set_peft_model_state_dict
        from peft.utils import load_peft_weights

        set_peft_model_state_dict(policy.model, load_peft_weights(str(model_dir), device=str(policy.device)))
    else:
        from safetensors.torch import load_file

        state = {}
        for f in sorted(model_dir.glob("*.safetensors")):
            state.update(load_file(f, device=str(policy.device)))
        missing, unexpected = policy.model.load_state_dict(state, strict=False)
        if unexpected or [k for k in missing if "lm_head" not in k]:
            raise RuntimeError(f"checkpoint {model_dir} does not match the model: missing {missing}, unexpected {unexpected}")
