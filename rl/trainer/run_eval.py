"""Evaluate a training run's checkpoint on held-out tasks (``rl.evaluate`` on the run's policy)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rl.config import EvalConfig


def load_run_policy(run_dir, step: int | None = None, device: str | None = None):
    """The policy of a training run at a checkpoint (the newest, or ``step``; ``step=0`` is the
    run's base model, before any update), for evaluation.

    Returns ``(policy, run_cfg, step)``: the run's own ``config.yaml`` gives the base model and
    LoRA shape, the checkpoint's adapter is loaded onto it.
    """
    from rl.config import load_config
    from rl.errors import DataError
    from rl.models import load_policy
    from rl.run.checkpoint import list_checkpoints, load_checkpoint
    from rl.trainer.config import TrainConfig

    run_dir = Path(run_dir)
    run_cfg = load_config(TrainConfig, run_dir / "config.yaml")
    policy = load_policy(run_cfg.model, lora=run_cfg.lora, dtype=run_cfg.dtype, device=device or run_cfg.device,
                         trainable=False, rope_scaling=run_cfg.rope_scaling)
    if step != 0:
        checkpoints = list_checkpoints(run_dir / "checkpoints")
        path = checkpoints[-1] if checkpoints and step is None else run_dir / "checkpoints" / f"step_{step}"
        if path not in checkpoints:
            raise DataError(f"{run_dir}: no checkpoint {path.name} (found {[p.name for p in checkpoints]}); "
                            "train it first or pick another step")
        step = load_checkpoint(path, policy)["step"]
    return policy, run_cfg, step


def evaluate_run(run_dir, cfg: EvalConfig, step: int | None = None) -> dict[str, Any]:
    """The horizon curve of a training run's checkpoint (the newest, or ``step``; 0: the base)
    on the run's own env and reward. Returns ``evaluate_policy``'s dict plus ``"run"`` and ``"step"``."""
    from rl.evaluate import evaluate_policy

    policy, run_cfg, step = load_run_policy(run_dir, step)
    result = evaluate_policy(policy, run_cfg.env, cfg, run_cfg.reward)
    result.update(run=str(run_dir), step=step)
    return result
