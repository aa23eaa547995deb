"""Typed configs: dataclasses validated at construction, loaded from YAML + ``--key value``.

A config is a tree of dataclasses. ``load_config(Cls, path, overrides)`` reads the YAML file,
applies dotted overrides (``--rollout.engine vllm``, ``--max_steps 3``), coerces each value to
the field's annotated type and builds the tree; every dataclass checks its own ranges in
``__post_init__``. Unknown keys are errors that name the closest valid key. Nothing here
imports torch, so ``horizon --help`` and config errors come back fast.

Example::

    cfg = load_config(GRPOConfig, "recipes/configs/grpo_chain_math.yaml", ["--max_steps", "3"])
    save_config(cfg, run_dir / "config.yaml")
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from rl.errors import ConfigError


def check(cond: bool, key: str, message: str) -> None:
    """Raise ``ConfigError`` for ``key`` unless ``cond`` holds."""
    if not cond:
        raise ConfigError(f"config key '{key}': {message}")


@dataclass
class LoraConfig:
    """LoRA adapter (peft). ``r: 0`` trains all weights instead (full fine-tuning)."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.0  # used by SFT; RL updates run in eval mode (no dropout) so ratios are exact
    target_modules: str = "all-linear"

    def __post_init__(self) -> None:
        check(self.r >= 0, "lora.r", f"must be >= 0 (0 = full fine-tune), got {self.r}")
        check(self.alpha > 0, "lora.alpha", f"must be > 0, got {self.alpha}")
        check(0.0 <= self.dropout < 1.0, "lora.dropout", f"must be in [0, 1), got {self.dropout}")


@dataclass
class EnvConfig:
    """Which task source to train on and its difficulty settings."""

    name: Literal["chain_math"] = "chain_math"
    min_horizon: int = 1
    max_horizon: int = 4
    start_range: list[int] = field(default_factory=lambda: [1, 20])
    operand_range: list[int] = field(default_factory=lambda: [1, 20])
    mul_range: list[int] = field(default_factory=lambda: [2, 5])
    max_abs_value: int | None = 999
    timeout_s: float = 30.0  # wall-clock limit per env reset/step; a hung call marks its episode
    # "thread": envs run in the trainer's process (a hang is abandoned on a thread); "process":
    # in a worker process, so an env that crashes the interpreter costs only its episodes
    isolation: Literal["thread", "process"] = "thread"

    def __post_init__(self) -> None:
        check(self.timeout_s > 0, "env.timeout_s", f"must be > 0, got {self.timeout_s}")
        check(1 <= self.min_horizon <= 64, "env.min_horizon", f"must be in 1..64, got {self.min_horizon}")
        check(
            self.min_horizon <= self.max_horizon <= 64,
            "env.max_horizon",
            f"must be in env.min_horizon..64 ({self.min_horizon}..64), got {self.max_horizon}",
        )
        for key in ("start_range", "operand_range", "mul_range"):
            lo_hi = getattr(self, key)
            check(
                len(lo_hi) == 2 and lo_hi[0] <= lo_hi[1],
                f"env.{key}",
                f"must be [low, high] with low <= high, got {lo_hi}",
            )


@dataclass
class VLLMConfig:
    """vLLM engine settings. ``None`` means: pick for the device (CPU or CUDA)."""

    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"  # auto: bf16 where native
    kv_cache_gib: float = 1.0  # CPU: KV cache size (the default would take a share of all RAM)
    gpu_memory_utilization: float = 0.3  # CUDA: share of GPU memory for weights + KV cache
    max_model_len: int = 2048
    enforce_eager: bool | None = None  # None: eager on CPU (15 s start vs ~60 s compile), graphs on CUDA
    cpu_threads: str | None = None  # CPU cores vLLM binds (VLLM_CPU_OMP_THREADS_BIND); None: all
    # how a LoRA policy reaches vLLM: "adapter" (LoRARequest per update), "merged" (W + BA
    # reloaded in place), "auto" (merged on CPU, where vLLM-cpu's LoRA kernels sampled 6x
    # slower than the plain model; adapter on CUDA)
    lora_sync: Literal["auto", "adapter", "merged"] = "auto"

    def __post_init__(self) -> None:
        check(self.kv_cache_gib > 0, "rollout.vllm.kv_cache_gib", f"must be > 0, got {self.kv_cache_gib}")
        check(0 < self.gpu_memory_utilization <= 1, "rollout.vllm.gpu_memory_utilization",
              f"must be in (0, 1], got {self.gpu_memory_utilization}")
        check(self.max_model_len >= 64, "rollout.vllm.max_model_len", "must be >= 64")


@dataclass
class RolloutConfig:
    """Sampling: which engine, how many prompts and samples per prompt, how long.

    ``engine: auto`` uses vLLM when it is installed and falls back to transformers (saying so).
    """

    engine: Literal["hf", "vllm", "auto"] = "auto"
    prompts_per_step: int = 8
    group_size: int = 8
    max_new_tokens: int = 128
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    batch_size: int = 64  # sequences per HF generate call (memory bound)
    vllm: VLLMConfig = field(default_factory=VLLMConfig)

    def __post_init__(self) -> None:
        check(self.prompts_per_step >= 1, "rollout.prompts_per_step", "must be >= 1")
        check(self.group_size >= 1, "rollout.group_size", f"must be >= 1, got {self.group_size}")
        check(self.max_new_tokens >= 1, "rollout.max_new_tokens", "must be >= 1")
        check(self.temperature > 0, "rollout.temperature",
              f"must be > 0 (RL samples; greedy decoding has no exploration), got {self.temperature}")
        check(0 < self.top_p <= 1, "rollout.top_p", f"must be in (0, 1], got {self.top_p}")
        check(self.top_k >= 0, "rollout.top_k", "must be >= 0 (0 = off)")
        check(self.batch_size >= 1, "rollout.batch_size", "must be >= 1")


@dataclass
class RewardConfig:
    """Weighted reward terms. Every term is computed and logged, even at weight 0."""

    outcome_weight: float = 1.0
    format_weight: float = 0.1
    # wall-clock limit per verifier call, run in a worker process; 0 = call it in-process
    verifier_timeout_s: float = 10.0
    prm: str | None = None  # a PRM saved by `horizon prm` / recipes/train_prm.py: dense step rewards
    process_weight: float = 0.5  # advantage = (1 - w) * outcome + w * process (DeepSeekMath)
    prm_batch_size: int = 16

    def __post_init__(self) -> None:
        check(0 <= self.process_weight <= 1, "reward.process_weight",
              f"must be in [0, 1], got {self.process_weight}")
        check(self.verifier_timeout_s >= 0, "reward.verifier_timeout_s",
              f"must be >= 0 (0 = no isolation), got {self.verifier_timeout_s}")


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

    preset: Literal["custom", "grpo", "dr_grpo", "dapo", "gspo", "rloo", "reinforce_pp", "ppo"] = "custom"
    advantage: Literal["grpo", "dr_grpo", "rloo", "reinforce_pp", "gae"] = "grpo"
    clip_low: float = 0.2
    clip_high: float = 0.28
    ratio_level: Literal["token", "sequence"] = "token"  # sequence: GSPO
    aggregation: Literal["token", "sequence", "dr_grpo"] = "token"
    kl_coef: float = 0.0
    kl_mode: Literal["loss", "reward"] = "loss"  # KL penalty in the loss, or per-token in the reward
    kl_estimator: Literal["k1", "k2", "k3"] = "k3"
    log_kl: bool = True  # compute KL to the reference for the logs even when kl_coef is 0
    entropy_coef: float = 0.0  # entropy bonus in the loss
    # truncated importance sampling (Yao et al. 2025, "Your efficient RL framework secretly brings
    # you off-policy RL training"): weight = min(pi_trainer / pi_engine, cap) on the policy term
    importance_correction: Literal["tis", "none"] = "tis"
    importance_cap: float = 2.0
    epochs: int = 1
    minibatches: int = 1
    drop_zero_advantage_groups: bool = False  # skip all-equal-reward groups (no refill)
    dynamic_sampling: bool = False  # DAPO: drop all-equal groups and refill with new prompts
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


def _from_preset(cls, name: str, **overrides: Any) -> "AlgorithmConfig":
    """``AlgorithmConfig`` with preset ``name``'s keys, then ``overrides``."""
    raw = apply_algorithm_preset({"algorithm": {"preset": name, **overrides}})["algorithm"]
    return from_dict(cls, raw, "algorithm.")


AlgorithmConfig.from_preset = classmethod(_from_preset)


def apply_algorithm_preset(raw: dict[str, Any]) -> dict[str, Any]:
    """Expand ``algorithm: NAME`` / ``algorithm: {preset: NAME, ...}`` in a raw config dict."""
    section = raw.get("algorithm")
    if isinstance(section, str):
        section = {"preset": section}
    if isinstance(section, dict) and section.get("preset", "custom") != "custom":
        name = section["preset"]
        if name not in ALGORITHM_PRESETS:
            raise ConfigError(f"config key 'algorithm.preset': {name!r} is not one of "
                              f"{['custom', *ALGORITHM_PRESETS]}")
        section = {**ALGORITHM_PRESETS[name], **section}
    if section is not None:
        raw = {**raw, "algorithm": section}
    return raw


@dataclass
class OptimConfig:
    lr: float = 1e-5
    weight_decay: float = 0.0
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    micro_batch_size: int = 8  # sequences per forward/backward (gradient accumulation)
    max_nonfinite_streak: int = 3  # stop after this many NaN/Inf updates in a row (each is skipped)

    def __post_init__(self) -> None:
        check(self.lr > 0, "optim.lr", f"must be > 0, got {self.lr}")
        check(self.warmup_steps >= 0, "optim.warmup_steps", "must be >= 0")
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
class GRPOConfig:
    """Everything a GRPO run reads. The recipe YAML sets a subset; the rest are defaults."""

    model: str = "tiny-random"
    output_dir: str = "runs/grpo_chain_math"
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
    lora: LoraConfig = field(default_factory=LoraConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    distill: OnPolicyDistillConfig = field(default_factory=OnPolicyDistillConfig)

    def __post_init__(self) -> None:
        check(self.max_steps >= 1, "max_steps", f"must be >= 1, got {self.max_steps}")
        check(self.max_train_s is None or self.max_train_s > 0, "max_train_s",
              f"must be > 0 seconds, got {self.max_train_s}; or leave it unset for a step budget only")
        check(self.save_every >= 1, "save_every", "must be >= 1")
        check(self.keep_last >= 1, "keep_last", "must be >= 1")
        check(bool(self.model), "model", "must name a built-in model or a local directory")
        check(0 <= self.max_failed_frac <= 1, "max_failed_frac", f"must be in [0, 1], got {self.max_failed_frac}")
        check(not (self.algorithm.kl_coef > 0 and self.lora.r == 0), "algorithm.kl_coef",
              "a KL penalty needs a reference policy: with lora.r: 0 (full fine-tune) there is none; "
              "set lora.r > 0 or algorithm.kl_coef: 0")
        check(self.rollout.group_size >= 2 or self.algorithm.advantage == "gae", "rollout.group_size",
              f"must be >= 2 for group-relative advantages ({self.algorithm.advantage}); only PPO "
              f"(algorithm.advantage: gae) works with 1, got {self.rollout.group_size}")
        check(self.algorithm.overlong_buffer <= self.rollout.max_new_tokens, "algorithm.overlong_buffer",
              f"must be <= rollout.max_new_tokens ({self.rollout.max_new_tokens}), got "
              f"{self.algorithm.overlong_buffer}")
        check(not (self.algorithm.advantage == "gae" and self.distill.teacher), "distill.teacher",
              "on-policy distillation sets per-token advantages itself; it cannot be combined with "
              "PPO (advantage: gae). Use a group estimator (grpo, rloo, ...)")
        check(not (self.algorithm.dynamic_sampling and (self.rollout.group_size < 2 or self.distill.teacher
                                                        or self.reward.prm)), "algorithm.dynamic_sampling",
              "drops groups whose answers are all equally correct: it needs rollout.group_size >= 2 and no "
              "dense signal (distill.teacher or reward.prm give every group a per-token signal)")
        check(not (self.reward.prm and (self.algorithm.advantage == "gae" or self.distill.teacher)),
              "reward.prm", "PRM step rewards are wired into the group estimators (grpo, dr_grpo, "
              "rloo, reinforce_pp); PPO (gae) and on-policy distillation do not use them yet")
        check(not (self.reward.prm and self.algorithm.kl_mode == "reward" and self.algorithm.kl_coef > 0),
              "algorithm.kl_mode", "with reward.prm use kl_mode: loss (both set per-token advantages)")
        check(self.reward.prm is None or Path(self.reward.prm, "prm_config.json").is_file(), "reward.prm",
              f"'{self.reward.prm}' is not a saved PRM (no prm_config.json): train one with "
              "recipes/train_prm.py")
        check(not (self.distill.teacher and self.algorithm.kl_mode == "reward" and self.algorithm.kl_coef > 0),
              "algorithm.kl_mode", "on-policy distillation's reward is already a per-token KL (to the "
              "teacher); use kl_mode: loss for a KL to the reference")


# --------------------------------------------------------------------------- loading


def load_config(cls: type, path: str | Path | None = None, overrides: list[str] | None = None):
    """Build ``cls`` from a YAML file plus ``--key value`` / ``--key=value`` overrides.

    Returns the validated dataclass instance. Raises ``ConfigError`` naming the key for
    unknown keys (with the closest valid one), wrong types and out-of-range values.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file '{path}' does not exist: pass --config PATH.yaml")
        loaded = yaml.safe_load(p.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file '{path}' must hold a mapping of keys, got {type(loaded).__name__}")
        raw = loaded
    for key, value in parse_overrides(overrides or []):
        if key == "algorithm" and isinstance(raw.get("algorithm"), dict):
            key = "algorithm.preset"  # --algorithm ppo on top of a YAML algorithm section
        elif key.startswith("algorithm.") and isinstance(raw.get("algorithm"), str):
            raw["algorithm"] = {"preset": raw["algorithm"]}
        _set_dotted(raw, key, value)
    if "algorithm" in {f.name for f in dataclasses.fields(cls)}:
        raw = apply_algorithm_preset(raw)
    return from_dict(cls, raw)


def parse_overrides(argv: list[str]) -> list[tuple[str, Any]]:
    """``["--a.b", "3", "--c=x"]`` -> ``[("a.b", 3), ("c", "x")]`` (values parsed as YAML)."""
    pairs, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--"):
            raise ConfigError(f"unexpected argument '{arg}': overrides look like --key value or --key=value")
        key = arg[2:]
        if "=" in key:
            key, text = key.split("=", 1)
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            text, i = argv[i + 1], i + 1
        else:
            text = "true"  # a bare flag sets a boolean
        pairs.append((key.replace("-", "_"), yaml.safe_load(text) if text != "" else ""))
        i += 1
    return pairs


def _set_dotted(raw: dict, key: str, value: Any) -> None:
    node = raw
    *parents, leaf = key.split(".")
    for part in parents:
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"config key '{key}': '{part}' is a value, not a section")
        node = nxt
    node[leaf] = value


def all_keys(cls: type, prefix: str = "") -> list[str]:
    """Every dotted key a config class accepts (for suggestions and --help)."""
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        name = prefix + f.name
        if dataclasses.is_dataclass(hints[f.name]):
            keys += all_keys(hints[f.name], name + ".")
        else:
            keys.append(name)
    return keys


def from_dict(cls: type, raw: dict[str, Any], prefix: str = ""):
    """Build dataclass ``cls`` from a nested dict, coercing and validating every value."""
    if not isinstance(raw, dict):
        raise ConfigError(f"config key '{prefix.rstrip('.')}' must be a section (mapping), got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        full = prefix + str(key)
        if key not in names:
            valid = [prefix + n for n in names]
            close = difflib.get_close_matches(full, all_keys(cls, prefix) + valid, n=1, cutoff=0.5)
            hint = f" — did you mean '{close[0]}'?" if close else f"; valid keys: {sorted(valid)}"
            raise ConfigError(f"unknown config key '{full}'{hint}")
        kwargs[key] = _coerce(hints[key], value, full)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key + ".")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"config key '{key}': {value!r} is not one of {list(choices)}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"config key '{key}': bad value {value!r}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}': expected a list, got {value!r}")
        (item,) = typing.get_args(tp) or (Any,)
        return [_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}': expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads '1e-5' as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"config key '{key}': expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"config key '{key}': expected a string, got {value!r}")
    return value


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    from rl.io import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(to_dict(cfg), sort_keys=False))
