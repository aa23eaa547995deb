"""Typed configs: the loader and the sections every job shares (model adapter, env, rollout,
reward, evaluation). Each job's top-level config lives with the job: ``rl.trainer.config``
(``TrainConfig``), ``rl.distill.config``, ``rl.prm.config``.

A config is a tree of dataclasses. ``load_config(Cls, path, overrides)`` reads the YAML file,
applies dotted overrides (``--rollout.engine vllm``, ``--max_steps 3``), coerces each value to
the field's annotated type and builds the tree; every dataclass checks its own ranges in
``__post_init__``. Unknown keys are errors that name the closest valid key. A section class may
take over its own parsing with ``from_raw(raw, prefix)`` / ``to_raw()`` (the env section, whose
keys are the chosen env's options; the algorithm section, which expands presets) and may name a
``SHORTHAND`` key set by a bare string (``algorithm: ppo``, ``env: chain_math``). Nothing here
imports torch, so ``horizon --help`` and config errors come back fast.

Example::

    cfg = load_config(TrainConfig, "recipes/configs/grpo_chain_math.yaml", ["--max_steps", "3"])
    save_config(cfg, run_dir / "config.yaml")
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

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


ROPE_TYPES = ("linear", "dynamic", "yarn")


@dataclass
class RopeScalingConfig:
    """Context extension by RoPE scaling, set through the model's transformers config
    (``rope_parameters``) when it loads and handed to vLLM as the same override (``hf_overrides``),
    so trainer and engine run one model. ``type: none`` (the default) leaves the model as it is.

    - ``linear``: position interpolation (Chen et al. 2023): every position divided by ``factor``.
    - ``dynamic``: dynamic NTK: the RoPE base grows with the sequence length past the native one.
      transformers rescales per sequence (unchanged up to the native length); vLLM uses the base of
      the full extended length at every length, so the two engines differ below it: prefer
      ``yarn``/``linear`` with vLLM rollouts, or ``rollout.engine: hf``.
    - ``yarn``: YaRN (Peng et al. 2023): per-frequency interpolation and an attention temperature.

    The native length is the model's ``max_position_embeddings`` (read from its config.json at
    load); the extended context is ``max_position_embeddings`` here, ``factor`` x native if unset.
    vLLM's ``max_model_len`` is raised to it. A model whose config.json already holds the same
    scaling (a student saved by a run with it) is left as it is.
    """

    type: Literal["none", "linear", "dynamic", "yarn"] = "none"  # none: off; linear, dynamic (NTK) or yarn
    factor: float = 1.0  # > 1 when a type is set: 2 doubles the context
    # the extended context in tokens (null: factor x the model's native max_position_embeddings)
    max_position_embeddings: int | None = None

    def __post_init__(self) -> None:
        check(self.type in ("none", *ROPE_TYPES), "rope_scaling.type",
              f"{self.type!r} is not a RoPE scaling type: use one of {list(ROPE_TYPES)} (or none: off)")
        if self.type == "none":
            return
        check(isinstance(self.factor, (int, float)) and not isinstance(self.factor, bool) and self.factor > 1,
              "rope_scaling.factor", f"must be > 1 for type {self.type} (2 doubles the context), got {self.factor!r}")
        check(self.max_position_embeddings is None or self.max_position_embeddings >= 64,
              "rope_scaling.max_position_embeddings",
              f"must be >= 64 tokens or null (factor x the native length), got {self.max_position_embeddings}")

    @property
    def enabled(self) -> bool:
        return self.type != "none"


ENV_KEYS = ("name", "timeout_s", "isolation")  # the env section's own keys; the rest are the env's options


@dataclass
class EnvConfig:
    """Which env to run (``name``: a built-in env or ``module:SPEC``) and its options.

    Every key of the ``env`` section besides ``name``, ``timeout_s`` and ``isolation`` is one of
    the env's own options (the fields of its spec's ``options`` dataclass, e.g. chain_math's
    ``min_horizon``), validated by that dataclass. In Python pass them as ``options``: a dict
    or the options dataclass itself.
    """

    SHORTHAND: ClassVar[str] = "name"

    name: str = "chain_math"
    timeout_s: float = 30.0  # wall-clock limit per env reset/step; a hung call marks its episode
    # "thread": envs run in the trainer's process (a hang is abandoned on a thread); "process":
    # in a worker process, so an env that crashes the interpreter costs only its episodes
    isolation: Literal["thread", "process"] = "thread"
    options: Any = None

    def __post_init__(self) -> None:
        check(self.timeout_s > 0, "env.timeout_s", f"must be > 0, got {self.timeout_s}")
        check(self.isolation in ("thread", "process"), "env.isolation",
              f"{self.isolation!r} is not one of ['thread', 'process']")
        options_cls = self.spec.options
        if self.options is None:
            self.options = options_cls()
        elif isinstance(self.options, dict):
            self.options = from_dict(options_cls, self.options, "env.", extra_keys=ENV_KEYS)
        check(isinstance(self.options, options_cls), "env",
              f"options for env '{self.name}' must be a {options_cls.__name__}, got {type(self.options).__name__}")

    @property
    def spec(self):
        """The env's ``EnvSpec`` (imported on first use)."""
        from envs.registry import load_spec

        return load_spec(self.name)

    @classmethod
    def from_raw(cls, raw: dict[str, Any], prefix: str = "env.") -> "EnvConfig":
        own = {k: v for k, v in raw.items() if k in ENV_KEYS}
        options = {k: v for k, v in raw.items() if k not in ENV_KEYS}
        return from_dict(cls, {**own, "options": options}, prefix)

    def to_raw(self) -> dict[str, Any]:
        return {"name": self.name, "timeout_s": self.timeout_s, "isolation": self.isolation,
                **dataclasses.asdict(self.options)}

    @classmethod
    def config_keys(cls, prefix: str = "env.") -> list[str]:
        return [prefix + k for k in ENV_KEYS] + all_keys(cls().spec.options, prefix)


@dataclass
class VLLMConfig:
    """vLLM engine settings. ``None`` means: pick for the device (CPU or CUDA)."""

    # auto: the trainer's autocast dtype (bf16 where native), but float32 for a merged LoRA,
    # whose small deltas bf16 would round away
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    kv_cache_gib: float = 1.0  # CPU: KV cache size (the default would take a share of all RAM)
    gpu_memory_utilization: float = 0.3  # CUDA: share of GPU memory for weights + KV cache
    max_model_len: int = 2048
    enforce_eager: bool | None = None  # None: eager on CPU (15 s start vs ~60 s compile), graphs on CUDA
    cpu_threads: str | None = None  # CPU cores vLLM binds (VLLM_CPU_OMP_THREADS_BIND); None: all
    # how a LoRA policy reaches vLLM: "adapter" (LoRARequest per update), "merged" (W + BA
    # reloaded in place), "auto" (merged on CPU, where vLLM-cpu's LoRA kernels sampled 6x
    # slower than the plain model; adapter on CUDA)
    lora_sync: Literal["auto", "adapter", "merged"] = "auto"
    # vLLM's own parallelism for GPU users: GPUs per engine (under `accelerate launch`, one engine
    # per rank, so each rank needs this many GPUs)
    tensor_parallel_size: int = 1
    # any other vllm.LLM argument, passed as given (over horizon's own choices), e.g.
    # {max_num_seqs: 256, swap_space: 8}
    engine_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check(self.tensor_parallel_size >= 1, "rollout.vllm.tensor_parallel_size", "must be >= 1")
        check(isinstance(self.engine_kwargs, dict), "rollout.vllm.engine_kwargs",
              f"must be a mapping of vllm.LLM arguments, got {self.engine_kwargs!r}")
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
    # training starts from states along the env's oracle solution (rl/trainer/given_steps.py): each
    # task's answer begins with its first k oracle steps, k uniform in 0..min(given_steps, steps - 1);
    # 0 = off. Needs an env with an oracle; evaluation never gives steps
    given_steps: int = 0
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
        check(self.given_steps >= 0, "rollout.given_steps", f"must be >= 0 (0 = off), got {self.given_steps}")


@dataclass
class RewardConfig:
    """Weighted reward terms. Every term is computed and logged, even at weight 0."""

    outcome_weight: float = 1.0
    # what the outcome term pays for: "answer" (the verifier's verdict on the final answer) or
    # "all_steps" (the same, only when every step is labelled right by the env's exact labels, e.g.
    # chain_math: a right answer through a wrong step, two slips that cancel, scores 0)
    outcome: Literal["answer", "all_steps"] = "answer"
    format_weight: float = 0.1
    # wall-clock limit per verifier call, run in a worker process; 0 = call it in-process
    verifier_timeout_s: float = 10.0
    # dense step rewards: a PRM saved by `horizon prm` / recipes/train_prm.py, or "exact" for the
    # env's exact step labels (envs whose spec has step_labels, e.g. chain_math)
    prm: str | None = None
    process_weight: float = 0.5  # advantage = (1 - w) * outcome + w * process (DeepSeekMath)
    # how step rewards become step advantages: "to_go" (DeepSeekMath: group-normalised rewards summed
    # over the step and every later one) or "first_error" (each step against the group's episodes
    # with the same passed prefix, nothing after an episode's first failed step: rl.algorithms.process)
    process_credit: Literal["to_go", "first_error"] = "to_go"
    prm_batch_size: int = 16

    def __post_init__(self) -> None:
        check(0 <= self.process_weight <= 1, "reward.process_weight",
              f"must be in [0, 1], got {self.process_weight}")
        check(self.outcome in ("answer", "all_steps"), "reward.outcome",
              f"{self.outcome!r} is not one of ['answer', 'all_steps']")
        check(self.process_credit in ("to_go", "first_error"), "reward.process_credit",
              f"{self.process_credit!r} is not one of ['to_go', 'first_error']")
        check(self.verifier_timeout_s >= 0, "reward.verifier_timeout_s",
              f"must be >= 0 (0 = no isolation), got {self.verifier_timeout_s}")


@dataclass
class EvalConfig:
    """The horizon curve on held-out tasks: greedy pass@1 per horizon, and with ``samples: n``
    also pass@k (k in ``k``, up to n) from n samples per task at ``temperature``."""

    horizons: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    tasks_per_horizon: int = 50
    seed: int = 987_654  # the eval stream's seed; its tasks are the env's held-out split in any case
    max_new_tokens: int = 256
    engine: Literal["hf", "vllm", "auto"] = "auto"
    samples: int = 0  # n sampled completions per task for pass@k (0: greedy pass@1 only)
    k: list[int] = field(default_factory=lambda: [1, 4, 8])
    temperature: float = 1.0  # of the pass@k samples

    def __post_init__(self) -> None:
        check(bool(self.horizons) and all(1 <= h <= 64 for h in self.horizons), "eval.horizons",
              f"must be a non-empty list of horizons in 1..64, got {self.horizons}")
        check(self.tasks_per_horizon >= 1, "eval.tasks_per_horizon", "must be >= 1")
        check(self.samples >= 0, "eval.samples", f"must be >= 0 (0: greedy only), got {self.samples}")
        check(bool(self.k) and all(k >= 1 for k in self.k), "eval.k", f"must be a list of k >= 1, got {self.k}")
        check(self.samples == 0 or self.temperature > 0, "eval.temperature",
              "pass@k samples need a temperature > 0 (greedy samples are all the same)")


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
        _set_dotted(raw, key, value, cls)
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


def _section_type(cls: type, parts: list[str]) -> type | None:
    """The dataclass type of the section at dotted ``parts`` below ``cls`` (None if not a section)."""
    for part in parts:
        if not dataclasses.is_dataclass(cls):
            return None
        hints = typing.get_type_hints(cls)
        if part not in hints:
            return None
        cls = hints[part]
    return cls if dataclasses.is_dataclass(cls) else None


def _expand_shorthand(section: type | None, value: Any) -> Any:
    """``algorithm: ppo`` -> ``{preset: ppo}`` for a section class with a ``SHORTHAND`` key."""
    shorthand = getattr(section, "SHORTHAND", None)
    return {shorthand: value} if shorthand and isinstance(value, str) else value


def _set_dotted(raw: dict, key: str, value: Any, cls: type | None = None) -> None:
    node = raw
    *parents, leaf = key.split(".")
    for depth, part in enumerate(parents):
        section = _section_type(cls, parents[: depth + 1]) if cls else None
        node[part] = _expand_shorthand(section, node.get(part, {}))
        nxt = node[part]
        if not isinstance(nxt, dict):
            raise ConfigError(f"config key '{key}': '{part}' is a value, not a section")
        node = nxt
    section = _section_type(cls, parents + [leaf]) if cls else None
    if section is not None and isinstance(value, str) and isinstance(node.get(leaf), dict):
        node[leaf][section.SHORTHAND] = value  # --algorithm ppo on top of a YAML algorithm section
    else:
        node[leaf] = value


def all_keys(cls: type, prefix: str = "") -> list[str]:
    """Every dotted key a config class accepts (for suggestions and --help)."""
    if hasattr(cls, "config_keys"):
        return cls.config_keys(prefix)
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        name = prefix + f.name
        if dataclasses.is_dataclass(hints[f.name]):
            keys += all_keys(hints[f.name], name + ".")
        else:
            keys.append(name)
    return keys


def from_dict(cls: type, raw: dict[str, Any], prefix: str = "", extra_keys: tuple[str, ...] = ()):
    """Build dataclass ``cls`` from a nested dict, coercing and validating every value.

    ``extra_keys``: keys valid beside ``cls``'s own (they only widen the did-you-mean hints).
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"config key '{prefix.rstrip('.')}' must be a section (mapping), got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        full = prefix + str(key)
        if key not in names:
            valid = [prefix + n for n in [*names, *extra_keys]]
            close = difflib.get_close_matches(full, all_keys(cls, prefix) + valid, n=1, cutoff=0.5)
            hint = f" — did you mean '{close[0]}'?" if close else f"; valid keys: {sorted(valid)}"
            raise ConfigError(f"unknown config key '{full}'{hint}")
        kwargs[key] = _coerce(hints[key], value, full)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        value = _expand_shorthand(tp, value)
        if hasattr(tp, "from_raw"):
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{key}' must be a section (mapping), got {value!r}")
            return tp.from_raw(value, key + ".")
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
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}': expected a list, got {value!r}")
        args = typing.get_args(tp)
        items = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(items) != len(value):
            raise ConfigError(f"config key '{key}': expected {len(items)} values, got {value!r}")
        return tuple(_coerce(item, v, f"{key}[{i}]") for i, (item, v) in enumerate(zip(items, value)))
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


def to_dict(cfg: Any) -> Any:
    """The config as plain data, in the shape ``load_config`` reads back (sections with
    ``to_raw`` write their own)."""
    if hasattr(cfg, "to_raw"):
        return to_dict(cfg.to_raw())
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    return cfg


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    from rl.run.io import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(to_dict(cfg), sort_keys=False))
