"""Configs of ``horizon distill``: teacher and student SFT (shared sections: rl/config.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from rl.config import EnvConfig, EvalConfig, LoraConfig, RewardConfig, RopeScalingConfig, check


@dataclass
class TeacherConfig:
    """Who writes the traces a student is fine-tuned on.

    ``kind``: ``oracle`` (the env spec's exact solver, e.g. chain_math's), ``model`` (a built-in name or
    local HF directory sampled by a rollout engine) or ``openai`` (any OpenAI-compatible
    endpoint: ``base_url`` + ``model``; the key is read from the env var ``api_key_env``).
    """

    kind: Literal["oracle", "model", "openai"] = "oracle"
    model: str | None = None
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    engine: Literal["hf", "vllm", "auto"] = "auto"  # kind: model
    samples_per_task: int = 1  # k traces per task; the verifier keeps the correct ones
    temperature: float = 0.7
    max_new_tokens: int = 256

    def __post_init__(self) -> None:
        check(self.samples_per_task >= 1, "teacher.samples_per_task", "must be >= 1")
        check(self.temperature >= 0, "teacher.temperature", "must be >= 0 (0 = greedy)")
        check(self.max_new_tokens >= 1, "teacher.max_new_tokens", "must be >= 1")
        check(not (self.temperature == 0 and self.samples_per_task > 1), "teacher.samples_per_task",
              "greedy decoding (teacher.temperature: 0) gives k identical traces: set it to 1 or raise "
              "the temperature")
        if self.kind in ("model", "openai"):
            check(bool(self.model), "teacher.model",
                  f"teacher.kind: {self.kind} needs a model (a built-in name / local directory, or the "
                  "endpoint's model name)")
        if self.kind == "openai":
            check(bool(self.base_url), "teacher.base_url",
                  "teacher.kind: openai needs base_url, e.g. http://localhost:8000/v1")


@dataclass
class SFTSectionConfig:
    """Student fine-tuning on the accepted traces (TRL ``SFTTrainer``, completion-only loss)."""

    max_steps: int = 80
    batch_size: int = 16
    lr: float = 2.0e-4
    warmup_ratio: float = 0.05
    lr_scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    max_length: int = 512
    logging_steps: int = 5
    save_every: int = 40  # TRL checkpoints in <output_dir>/sft/, used by --resume
    # wall-clock budget of the SFT in seconds: training stops after the first step that reaches it
    # (max_steps still sets the learning-rate schedule). None: max_steps alone
    max_train_s: float | None = None
    # recompute each decoder layer in the backward (HF gradient checkpointing, through TRL): long
    # traces fit in memory for ~1/3 more compute
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        check(self.max_steps >= 1, "sft.max_steps", "must be >= 1")
        check(self.batch_size >= 1, "sft.batch_size", "must be >= 1")
        check(self.lr > 0, "sft.lr", f"must be > 0, got {self.lr}")
        check(0 <= self.warmup_ratio < 1, "sft.warmup_ratio", "must be in [0, 1)")
        check(self.max_length >= 32, "sft.max_length", "must be >= 32")
        check(self.logging_steps >= 1 and self.save_every >= 1, "sft.save_every", "must be >= 1")
        check(self.max_train_s is None or self.max_train_s > 0, "sft.max_train_s",
              f"must be > 0 seconds, got {self.max_train_s}; or leave it unset for a step budget only")


@dataclass
class DistillConfig:
    """``horizon distill``: teacher traces -> verifier filter -> SFT of the student -> eval."""

    model: str = "tiny-random"  # the student
    output_dir: str = "runs/distill"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    num_tasks: int = 1600  # tasks drawn from the env for traces
    stages: list[str] = field(default_factory=lambda: ["traces", "eval_before", "sft", "eval_after"])
    progress: bool = True
    env: EnvConfig = field(default_factory=EnvConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    # the student's context extension (SFT and its evals); the saved model/ keeps it in its config.json
    rope_scaling: RopeScalingConfig = field(default_factory=RopeScalingConfig)
    sft: SFTSectionConfig = field(default_factory=SFTSectionConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    STAGES = ("traces", "eval_before", "sft", "eval_after")

    def __post_init__(self) -> None:
        check(self.num_tasks >= 1, "num_tasks", "must be >= 1")
        check(bool(self.model), "model", "must name a built-in model or a local directory")
        unknown = [s for s in self.stages if s not in self.STAGES]
        check(not unknown and bool(self.stages), "stages",
              f"unknown stage(s) {unknown}: choose from {list(self.STAGES)}")
