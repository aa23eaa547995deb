"""Config of ``horizon prm``: label steps (Monte Carlo), train a PRM, evaluate it (see rl/prm/pipeline.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from rl.config import EnvConfig, LoraConfig, RewardConfig, RolloutConfig, check


@dataclass
class PRMConfig:
    """Solutions sampled from ``sampler`` are step-labelled, a PRM on ``prm_base`` learns them."""

    sampler: str = "tiny-random"  # the policy whose solutions are labelled (e.g. the distilled student)
    prm_base: str | None = None  # the PRM's trunk; None: the sampler's weights
    output_dir: str = "runs/prm_chain_math"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    stages: list[str] = field(default_factory=lambda: ["label", "train", "eval"])
    num_tasks: int = 200  # training tasks; samples_per_task solutions of each are labelled
    samples_per_task: int = 2
    labels: Literal["mc_soft", "mc_hard", "exact"] = "mc_soft"  # what the PRM is trained on
    mc_k: int = 8  # Monte Carlo continuations per step prefix (Math-Shepherd's N)
    # temperature of those continuations; None: rollout.temperature (the sampled solutions keep
    # rollout.temperature so they hold mistakes). A cooler completer finishes correct prefixes more
    # often, so fewer correct steps get label 0: MC AUC vs exact 0.80 at 1.0 -> 0.81 at 0.5, h 2-4, k 8
    mc_temperature: float | None = None
    # train on each solution only through its first error (by the hard MC label, or the exact one
    # with labels: exact), so step scores mean "right, given a right prefix"; False: every step
    train_until_first_error: bool = False
    train_epochs: int = 2
    train_lr: float = 2.0e-4
    train_batch_size: int = 8
    eval_tasks: int = 100  # held-out tasks (eval seed) for PRM metrics and best-of-N
    eval_seed: int = 987_654
    best_of_n: int = 16
    progress: bool = True
    env: EnvConfig = field(default_factory=lambda: EnvConfig(options={"min_horizon": 2, "max_horizon": 6}))
    rollout: RolloutConfig = field(default_factory=lambda: RolloutConfig(max_new_tokens=160))
    reward: RewardConfig = field(default_factory=RewardConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)

    STAGES = ("label", "train", "eval")

    def __post_init__(self) -> None:
        unknown = [s for s in self.stages if s not in self.STAGES]
        check(not unknown and bool(self.stages), "stages", f"unknown stage(s) {unknown}: choose from {list(self.STAGES)}")
        for key in ("num_tasks", "samples_per_task", "mc_k", "train_epochs", "train_batch_size", "eval_tasks",
                    "best_of_n"):
            check(getattr(self, key) >= 1, key, f"must be >= 1, got {getattr(self, key)}")
        check(self.train_lr > 0, "train_lr", "must be > 0")
        check(self.mc_temperature is None or self.mc_temperature > 0, "mc_temperature",
              f"must be > 0 (k continuations must differ), got {self.mc_temperature}; or leave it unset")
