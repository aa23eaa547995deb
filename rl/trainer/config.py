"""Config of policy-gradient training (``horizon train``): ``TrainConfig`` and its own sections.

``AlgorithmConfig`` holds the algorithm table's keys (``ALGORITHM_PRESETS``: grpo, dr_grpo,
dapo, gspo, rloo, reinforce_pp, ppo); ``OptimConfig`` the optimizer; ``OnPolicyDistillConfig``
the teacher of on-policy distillation. Which credit signals a config turns on, and which of
them exclude each other, is declared by the signals themselves (``rl.trainer.credit``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from envs.curriculum import CurriculumConfig
from rl.config import EnvConfig, LoraConfig, RewardConfig, RolloutConfig, RopeScalingConfig, check, from_dict
from rl.errors import ConfigError
from rl.run.tracking import check_tracker_names


ALGORITHM_PRESETS: dict[str, dict[str, Any]] = {
    # Shao et al. 2024 (DeepSeekMath): group-normalised advantages, per-sequence mean, KL in loss
    "grpo": dict(advantage="grpo", aggregation="sequence", clip_low=0.2, clip_high=0.2,
                 kl_coef=0.04, kl_mode="loss"),
    # Liu et al. 2025 (Dr. GRPO): no std division, constant normaliser, no KL
    "dr_grpo": dict(advantage="dr_grpo", aggregation="dr_grpo", clip_low=0.2, clip_high=0.2, kl_coef=0.0),
    # Yu et al. 2025 (DAPO): clip-higher, token-level mean, dynamic sampling, overlong shaping, no KL
    # (two minibatches per rollout batch, as in the paper: with one, the ratio is 1 and no clip acts)
    "dapo": dict(advantage="grpo", aggregation="token", clip_low=0.2, clip_high=0.28, kl_coef=0.0,
                 dynamic_sampling=True, overlong_buffer=32, overlong_penalty=1.0, minibatches=2),
    # Zheng et al. 2025 (GSPO): sequence-level importance ratio with tight clipping
    "gspo": dict(advantage="grpo", ratio_level="sequence", aggregation="sequence",
                 clip_low=3e-4, clip_high=4e-4, kl_coef=0.0, minibatches=2),
    # Ahmadian et al. 2024 (RLOO): leave-one-out baseline
    "rloo": dict(advantage="rloo", aggregation="token", clip_low=0.2, clip_high=0.2, kl_coef=0.0),
    # Hu 2025 (REINFORCE++-baseline): group mean baseline, batch-wide normalisation, KL in reward
    "reinforce_pp": dict(advantage="reinforce_pp", aggregation="token", clip_low=0.2, clip_high=0.2,
                         kl_coef=0.01, kl_mode="reward", kl_estimator="k1"),
    # Schulman et al. 2017 (PPO) as in Ouyang et al. 2022: value head + GAE, KL in reward
    "ppo": dict(advantage="gae", aggregation="token", clip_low=0.2, clip_high=0.2, kl_coef=0.01,
                kl_mode="reward", kl_estimator="k1", gamma=1.0, lam=0.95, vf_coef=0.1, value_clip=0.2,
                epochs=2, minibatches=2),
}


@dataclass
class AlgorithmConfig:
    """The policy-gradient algorithm: advantages, loss and their options (see rl/algorithms).

    ``preset`` fills every key it names (table in ``ALGORITHM_PRESETS`` and the README); keys
    given explicitly in the YAML or on the command line override the preset's. ``algorithm: ppo``
    (a bare name) is shorthand for ``algorithm: {preset: ppo}``. In Python, build a preset with
    ``AlgorithmConfig.from_preset("ppo", epochs=4)`` (the constructor alone does not expand it).
    """

    SHORTHAND: ClassVar[str] = "preset"

    preset: Literal["custom", "grpo", "dr_grpo", "dapo", "gspo", "rloo", "reinforce_pp", "ppo"] = "custom"
    # raft: positive-only, 1 for each group's best completions (rejection-sampling fine-tuning)
    advantage: Literal["grpo", "dr_grpo", "rloo", "reinforce_pp", "raft", "gae"] = "grpo"
    clip_low: float = 0.2
    clip_high: float = 0.28
    ratio_level: Literal["token", "sequence"] = "token"  # sequence: GSPO
    aggregation: Literal["token", "sequence", "dr_grpo"] = "token"
    kl_coef: float = 0.0
    kl_mode: Literal["loss", "reward"] = "loss"  # KL penalty in the loss, or per-token in the reward
    kl_estimator: Literal["k1", "k2", "k3"] = "k3"
    # compute the KL to the reference for the logs when kl_coef is 0: it costs a reference forward
    # (~25% of an update), so it is opt-in; without it the `kl` metric is logged as null
    log_kl: bool = False
    entropy_coef: float = 0.0  # entropy bonus in the loss
    # truncated importance sampling (Yao et al. 2025, "Your efficient RL framework secretly brings
    # you off-policy RL training"): weight = min(pi_trainer / pi_engine, cap) on the policy term
    importance_correction: Literal["tis", "none"] = "tis"
    importance_cap: float = 2.0
    epochs: int = 1
    minibatches: int = 1
    drop_zero_advantage_groups: bool = False  # skip all-equal-reward groups (no refill)
    # DAPO: drop all-equal groups and refill with new prompts (with reward.prm: exact a group whose
    # answers are alike stays when its steps get process credit)
    dynamic_sampling: bool = False
    max_sampling_rounds: int = 4  # dynamic sampling: at most this many rollout rounds per step
    overlong_buffer: int = 0  # DAPO soft overlong penalty over the last N tokens of the budget; 0 = off
    overlong_penalty: float = 1.0
    filter_truncated: bool = False  # leave completions cut at max_new_tokens out of the loss
    # PPO (advantage: gae): value head on the policy's last hidden state
    gamma: float = 1.0
    lam: float = 0.95
    vf_coef: float = 0.1
    value_lr: float = 5e-3  # the value head's learning rate (it starts from zero)
    value_clip: float | None = 0.2
    whiten_advantages: bool = True

    def __post_init__(self) -> None:
        check(0 < self.clip_low < 1, "algorithm.clip_low", f"must be in (0, 1), got {self.clip_low}")
        check(self.clip_high > 0, "algorithm.clip_high", f"must be > 0, got {self.clip_high}")
        check(self.kl_coef >= 0, "algorithm.kl_coef", f"must be >= 0, got {self.kl_coef}")
        check(self.entropy_coef >= 0, "algorithm.entropy_coef", f"must be >= 0, got {self.entropy_coef}")
        check(self.importance_cap >= 1, "algorithm.importance_cap", f"must be >= 1, got {self.importance_cap}")
        check(self.epochs >= 1, "algorithm.epochs", "must be >= 1")
        check(self.minibatches >= 1, "algorithm.minibatches", "must be >= 1")
        check(self.max_sampling_rounds >= 1, "algorithm.max_sampling_rounds", "must be >= 1")
        check(self.overlong_buffer >= 0, "algorithm.overlong_buffer", "must be >= 0 (0 = off)")
        check(self.overlong_penalty >= 0, "algorithm.overlong_penalty", "must be >= 0")
        check(0 <= self.gamma <= 1, "algorithm.gamma", f"must be in [0, 1], got {self.gamma}")
        check(0 <= self.lam <= 1, "algorithm.lam", f"must be in [0, 1], got {self.lam}")
        check(self.vf_coef >= 0, "algorithm.vf_coef", "must be >= 0")
        check(self.value_lr > 0, "algorithm.value_lr", "must be > 0")
        check(self.value_clip is None or self.value_clip > 0, "algorithm.value_clip", "must be > 0 or null")
        check(not (self.advantage == "gae" and self.vf_coef == 0), "algorithm.vf_coef",
              "advantage: gae (PPO) learns a value head: vf_coef must be > 0")
        check(not (self.ratio_level == "sequence" and self.epochs == 1 and self.minibatches == 1),
              "algorithm.ratio_level", "the sequence-level (GSPO) ratio is exactly 1 when each rollout batch "
              "is used for one optimizer step (epochs: 1, minibatches: 1), so it would train like GRPO: set "
              "algorithm.minibatches >= 2 or algorithm.epochs >= 2")
        check(not (self.advantage == "gae" and self.ratio_level == "sequence"), "algorithm.ratio_level",
              "GAE gives per-token advantages; the sequence-level (GSPO) ratio needs one advantage per "
              "sequence: use ratio_level: token with advantage: gae")


    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "AlgorithmConfig":
        """``AlgorithmConfig`` with preset ``name``'s keys, then ``overrides``."""
        return cls.from_raw({"preset": name, **overrides})

    @classmethod
    def from_raw(cls, raw: dict[str, Any], prefix: str = "algorithm.") -> "AlgorithmConfig":
        """Expand ``preset`` (its keys first, explicit keys over them), then validate."""
        name = raw.get("preset", "custom")
        if name != "custom":
            if name not in ALGORITHM_PRESETS:
                raise ConfigError(f"config key '{prefix}preset': {name!r} is not one of "
                                  f"{['custom', *ALGORITHM_PRESETS]}")
            raw = {**ALGORITHM_PRESETS[name], **raw}
        return from_dict(cls, raw, prefix)


@dataclass
class OptimConfig:
    # "adamw" (torch AdamW), or "sgd" (torch SGD with momentum): Adam's per-element normalisation
    # moves every LoRA weight by about lr on its first steps, whatever the size of its gradient,
    # which a sparse RL signal cannot steer; SGD's step follows the gradient's own size
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = 1e-5
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    momentum: float = 0.9  # sgd only
    warmup_steps: int = 0
    # after warmup: "constant", or "cosine" from lr down to lr * min_lr_ratio over the run's budget
    # (max_steps, or max_train_s when that ends the run first: rl/trainer/schedule.py); every param
    # group's rate takes the same factor (PPO's value head's algorithm.value_lr too)
    lr_scheduler: Literal["constant", "cosine"] = "constant"
    min_lr_ratio: float = 0.0
    max_grad_norm: float = 1.0
    micro_batch_size: int = 8  # sequences per forward/backward (gradient accumulation)
    # run the prompt shared by a micro-batch's samples (a group's) once, its keys and values
    # reused by every completion (gradients flow through it); false: each sample runs it itself
    share_prompt: bool = True
    max_nonfinite_streak: int = 3  # stop after this many NaN/Inf updates in a row (each is skipped)
    # recompute each decoder layer in the backward instead of keeping its activations (HF gradient
    # checkpointing): ~1/3 more compute for activation memory ~ one layer's, what long sequences need.
    # The same gradients; a shared prompt is then run packed (rl/trainer/forward.py)
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        check(self.optimizer in ("adamw", "sgd"), "optim.optimizer",
              f"{self.optimizer!r} is not one of ['adamw', 'sgd']")
        check(self.lr > 0, "optim.lr", f"must be > 0, got {self.lr}")
        check(len(self.adam_betas) == 2 and all(0 <= b < 1 for b in self.adam_betas), "optim.adam_betas",
              f"give two numbers in [0, 1), e.g. [0.9, 0.999]; got {self.adam_betas}")
        check(self.adam_eps > 0, "optim.adam_eps", f"must be > 0, got {self.adam_eps}")
        check(0 <= self.momentum < 1, "optim.momentum", f"must be in [0, 1), got {self.momentum}")
        check(self.warmup_steps >= 0, "optim.warmup_steps", "must be >= 0")
        check(self.lr_scheduler in ("constant", "cosine"), "optim.lr_scheduler",
              f"{self.lr_scheduler!r} is not one of ['constant', 'cosine']")
        check(0 <= self.min_lr_ratio <= 1, "optim.min_lr_ratio", f"must be in [0, 1], got {self.min_lr_ratio}")
        check(self.max_grad_norm > 0, "optim.max_grad_norm", "must be > 0")
        check(self.micro_batch_size >= 1, "optim.micro_batch_size", "must be >= 1")
        check(self.max_nonfinite_streak >= 1, "optim.max_nonfinite_streak", "must be >= 1")


@dataclass
class OnPolicyDistillConfig:
    """On-policy distillation inside the RL loop: the student samples, a frozen teacher scores
    the student's tokens, and the per-token reverse KL ``-(log p_student - log p_teacher)`` is
    a dense per-token advantage (Agarwal et al. 2024, GKD; Lu & Thinking Machines 2025).
    ``teacher: null`` turns it off. Teacher and student must share a tokenizer.
    """

    teacher: str | None = None  # built-in model name or local HF directory
    coef: float = 1.0  # weight of the per-token reverse-KL advantage
    outcome_coef: float = 0.0  # weight of the group-relative outcome advantage added to it

    def __post_init__(self) -> None:
        check(self.coef >= 0, "distill.coef", f"must be >= 0, got {self.coef}")
        check(self.outcome_coef >= 0, "distill.outcome_coef", f"must be >= 0, got {self.outcome_coef}")


@dataclass
class AnchorConfig:
    """An SFT loss on fixed traces added to every policy update: the RL step and a supervised step
    on ``batch_size`` trace rows share one optimizer step (InstructGPT's PPO-ptx, Ouyang et al. 2022,
    with oracle traces in place of pre-training text). It keeps what distillation taught (a small
    model's arithmetic) while RL pushes where the traces stop. ``traces: null`` turns it off.

    The loss added is ``coef`` x the mean NLL per completion token (temperature 1, whatever the
    sampling temperature); each optimizer step draws its rows with replacement from the update's
    generator, seeded by (seed, step), so a resumed run redraws them.
    """

    traces: str | None = None  # a saved traces dataset: <distill run>/traces (prompt/completion rows)
    coef: float = 1.0  # weight of the mean NLL per completion token, beside the RL loss
    batch_size: int = 8  # trace rows per optimizer step
    max_length: int = 512  # rows longer than this (prompt + completion tokens) are left out

    def __post_init__(self) -> None:
        check(self.coef > 0, "anchor.coef", f"must be > 0, got {self.coef}; to turn it off set anchor.traces: null")
        check(self.batch_size >= 1, "anchor.batch_size", f"must be >= 1, got {self.batch_size}")
        check(self.max_length >= 8, "anchor.max_length", f"must be >= 8, got {self.max_length}")


@dataclass
class TrainConfig:
    """Everything a policy-gradient run reads (every preset, PPO and on-policy distillation).
    The recipe YAML sets a subset; the rest are defaults."""

    model: str = "tiny-random"
    output_dir: str = "runs/train"
    seed: int = 0
    max_steps: int = 100
    # wall-clock budget of the training loop in seconds (summed over resumes): the run stops after
    # the first step that reaches it, with a checkpoint. None: max_steps alone ends the run
    max_train_s: float | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    save_every: int = 25
    keep_last: int = 3
    progress: bool = True
    max_failed_frac: float = 0.5  # stop when more of a step's episodes than this fail to score
    # trackers beside metrics.jsonl (always written): tensorboard, trackio, wandb; all offline
    # by default (rl/run/tracking.py); their packages are checked when the run directory opens
    report_to: list[str] = field(default_factory=lambda: ["jsonl"])
    lora: LoraConfig = field(default_factory=LoraConfig)
    rope_scaling: RopeScalingConfig = field(default_factory=RopeScalingConfig)  # the policy's context extension
    env: EnvConfig = field(default_factory=EnvConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    distill: OnPolicyDistillConfig = field(default_factory=OnPolicyDistillConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    anchor: AnchorConfig = field(default_factory=AnchorConfig)  # SFT loss on traces in each update

    def __post_init__(self) -> None:
        check(self.max_steps >= 1, "max_steps", f"must be >= 1, got {self.max_steps}")
        check(self.max_train_s is None or self.max_train_s > 0, "max_train_s",
              f"must be > 0 seconds, got {self.max_train_s}; or leave it unset for a step budget only")
        check(self.save_every >= 1, "save_every", "must be >= 1")
        check(self.keep_last >= 1, "keep_last", "must be >= 1")
        check(bool(self.model), "model", "must name a built-in model or a local directory")
        check(0 <= self.max_failed_frac <= 1, "max_failed_frac", f"must be in [0, 1], got {self.max_failed_frac}")
        check_tracker_names(self.report_to)
        check(not (self.algorithm.kl_coef > 0 and self.lora.r == 0), "algorithm.kl_coef",
              "a KL penalty needs a reference policy: with lora.r: 0 (full fine-tune) there is none; "
              "set lora.r > 0 or algorithm.kl_coef: 0")
        check(self.rollout.group_size >= 2 or self.algorithm.advantage == "gae", "rollout.group_size",
              f"must be >= 2 for group-relative advantages ({self.algorithm.advantage}); only PPO "
              f"(algorithm.advantage: gae) works with 1, got {self.rollout.group_size}")
        check(self.algorithm.overlong_buffer <= self.rollout.max_new_tokens, "algorithm.overlong_buffer",
              f"must be <= rollout.max_new_tokens ({self.rollout.max_new_tokens}), got "
              f"{self.algorithm.overlong_buffer}")
        check(self.reward.outcome == "answer" or self.env.spec.step_labels is not None, "reward.outcome",
              f"'all_steps' needs exact step labels, and env '{self.env.name}' has none: use 'answer'")
        check(self.rollout.given_steps == 0 or self.env.spec.oracle is not None, "rollout.given_steps",
              f"env '{self.env.name}' has no oracle solution to take the given steps from; set it to 0")
        cur, opts = self.curriculum, self.env.options
        # an env whose horizons are None (a reasoning-gym mix) leaves the check to its source (loop.py)
        if cur.enabled and None not in (getattr(opts, "min_horizon", None), getattr(opts, "max_horizon", None)):
            check(opts.min_horizon <= cur.min_level and cur.max_level <= opts.max_horizon, "curriculum.max_level",
                  f"the curriculum's levels [{cur.min_level}, {cur.max_level}] must lie inside the env's horizons "
                  f"[env.min_horizon, env.max_horizon] = [{opts.min_horizon}, {opts.max_horizon}]")
        from rl.trainer.credit import check_signals

        check_signals(self)
