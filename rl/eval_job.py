"""``horizon eval``: horizon curves of models, run checkpoints and distilled students, overlaid.

    horizon eval smollm2-135m-instruct runs/distill/model runs/grpo --eval.horizons [1,2,4,8]
    horizon eval runs/grpo/checkpoints/step_20 --eval.samples 8 --eval.k [1,8]

A target is a built-in model name, a Hugging Face model directory, a distillation output
directory (its ``model/``), a training run directory (its newest checkpoint; ``RUN@0`` is its
base model) or one checkpoint ``RUN/checkpoints/step_N``. Every target is scored on the same
held-out tasks; ``output_dir`` gets ``horizon_curve.json`` (one entry per target: pass@1,
pass@k, Wilson 95 % intervals, h50 with its interval) and ``horizon_curve.png`` (the overlay).
Without ``--env.*`` keys or a ``--config``, the env and reward of the first run target are used.
With ``--env.name needle`` the job scores the needle grid instead (``rl.needle_grid``: accuracy by
depth x length x hops, ``needle_grid.json`` + ``.png``). ``--rope_scaling.type yarn --rope_scaling.factor 2``
scores the model targets with their context extended zero-shot (``rl.config.RopeScalingConfig``).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rl.config import EnvConfig, EvalConfig, RewardConfig, RopeScalingConfig, check
from rl.errors import DataError


@dataclass
class EvalJobConfig:
    """What ``horizon eval`` scores and where it writes (targets come first on the command line)."""

    targets: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)  # names in the JSON and the plot (default: the targets)
    output_dir: str = "runs/eval"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    # context extension of the model targets (zero-shot); a run target uses its own run's rope_scaling
    rope_scaling: RopeScalingConfig = field(default_factory=RopeScalingConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    progress: bool = True  # a progress bar with an ETA per target

    def __post_init__(self) -> None:
        check(bool(self.targets), "targets", "name one or more models, model dirs, run dirs or checkpoints: "
              "horizon eval smollm2-135m-instruct runs/my_run")
        check(not self.labels or len(self.labels) == len(self.targets), "labels",
              f"give one label per target ({len(self.targets)}) or none, got {len(self.labels)}")
        # each name keys one curve in the JSON and one completions file: two targets must not share either
        names, key = (self.labels, "labels") if self.labels else (self.targets, "targets")
        seen: dict[str, str] = {}
        for name in names:
            check(names.count(name) == 1, key,
                  f"'{name}' is named twice; each target is scored once (drop the repeat, or give --labels)")
            other = seen.setdefault(_file_name(name), name)
            check(other == name, key, f"'{other}' and '{name}' would share one completions file "
                  f"({_file_name(name)}.jsonl); give --labels with distinct names")


@dataclass(frozen=True)
class Target:
    """A resolved target: ``kind`` is ``model`` (``path`` is a name or HF dir) or ``run``
    (``path`` is the run dir, ``step`` the checkpoint: None = newest, 0 = base model)."""

    label: str
    kind: Literal["model", "run"]
    path: str
    step: int | None = None


def resolve_target(text: str) -> Target:
    """Read one command-line target (see the module docstring); raises before any loading when
    it names nothing horizon can evaluate."""
    from rl.models import BUILTIN_MODELS

    base, at, step_text = text.rpartition("@")
    if not at or "/" in step_text or Path(text).exists():  # an @ inside an existing path is part of it
        base, step_text = text, ""
    step = None
    if step_text:
        check(step_text.isdigit(), "targets", f"'{text}': the part after @ is a checkpoint step, e.g. runs/x@20")
        step = int(step_text)
    path = Path(base)
    name = path.name.removeprefix("step_")
    if path.parent.name == "checkpoints" and path.name.startswith("step_") and name.isdigit() \
            and (path.parents[1] / "config.yaml").is_file():
        return Target(text, "run", str(path.parents[1]), int(name))
    if (path / "config.yaml").is_file() and (path / "checkpoints").is_dir():
        return Target(text, "run", str(path), step)
    check(step is None, "targets", f"'{text}': @STEP selects a checkpoint of a run dir; '{base}' is not one")
    if (path / "model" / "config.json").is_file():  # a distillation output dir
        return Target(text, "model", str(path / "model"))
    if base in BUILTIN_MODELS or (path / "config.json").is_file():
        return Target(text, "model", base)
    raise DataError(f"eval target '{text}' is neither a built-in model {list(BUILTIN_MODELS)}, a model dir "
                    "(config.json), a distillation output (model/), a run dir (config.yaml + checkpoints/) "
                    "nor a checkpoint (RUN/checkpoints/step_N)")


def env_of_first_run(targets: list[Target]) -> tuple[EnvConfig, RewardConfig, str] | None:
    """The env and reward sections of the first run target's config (None if there is no run)."""
    from rl.config import load_config
    from rl.trainer.config import TrainConfig

    for t in targets:
        if t.kind == "run":
            run_cfg = load_config(TrainConfig, Path(t.path) / "config.yaml")
            return run_cfg.env, run_cfg.reward, t.path
    return None


def load_target(target: Target, cfg: EvalJobConfig):
    """``(policy, step)`` of one target: a run's checkpoint (its step) or a model (step None)."""
    from rl.models import load_policy

    if target.kind == "run":
        from rl.trainer.run_eval import load_run_policy

        policy, _, step = load_run_policy(target.path, target.step, device=cfg.device)
        return policy, step
    return load_policy(target.path, lora=None, dtype=cfg.dtype, device=cfg.device, trainable=False,
                       rope_scaling=cfg.rope_scaling), None


def evaluate_target(target: Target, cfg: EvalJobConfig, engine=None) -> dict[str, Any]:
    """``evaluate_policy``'s result for one target, with ``"target"``, (runs) ``"step"`` and
    ``"completions"`` (every greedy generation; ``run_eval_job`` writes them to their own file)."""
    from rl.evaluate import evaluate_policy

    policy, step = load_target(target, cfg)
    result = evaluate_policy(policy, cfg.env, cfg.eval, cfg.reward, engine=engine,
                             progress=target.label if cfg.progress else None, keep_completions=True)
    result.update(target=target.label, path=target.path, step=step)
    return result


def _step_now(target: Target) -> int | None:
    """The checkpoint step a target would load now (None for a plain model)."""
    if target.kind != "run":
        return None
    if target.step is not None:
        return target.step
    from rl.run.checkpoint import list_checkpoints

    found = list_checkpoints(Path(target.path) / "checkpoints")
    return int(found[-1].name.removeprefix("step_")) if found else None


def run_eval_job(cfg: EvalJobConfig, resume: bool = False) -> Path:
    """Score every target on the same held-out tasks; returns ``output_dir``. With ``resume``,
    targets already in ``horizon_curve.json`` (``already_scored``) are not scored again."""
    from rl.evaluate import plot_horizon_curves
    from rl.run.io import atomic_write_text

    targets = [resolve_target(t) for t in cfg.targets]  # every target checked before any model loads
    if cfg.rope_scaling.enabled:  # and the scaling against each model target's config
        from rl.models import check_model_available

        for t in targets:
            if t.kind == "model":
                check_model_available(t.path, cfg.rope_scaling)
    if cfg.labels:
        targets = [Target(label, t.kind, t.path, t.step) for label, t in zip(cfg.labels, targets)]
    if cfg.env.name == "needle":  # the needle env: accuracy by depth x length x hops, not a horizon curve
        from rl.needle_grid import run_grid_job

        return run_grid_job(cfg, targets, resume=resume)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "horizon_curve.json"
    doc = load_results(path, job_settings(cfg), "curves", resume)
    doc.pop("paired", None)  # recomputed below from the targets of this job
    for target in targets:
        how = scored_as(target, cfg)
        if already_scored(doc["curves"].get(target.label), target, how):
            continue  # the same weights at the same checkpoint, run the same way: scored already
        result = {**evaluate_target(target, cfg), **how}
        # every greedy generation beside the curve, not in it (the curve JSON stays small)
        atomic_write_text(completions_path(out, target.label),
                          "".join(json.dumps(row) + "\n" for row in result.pop("completions")))
        doc["curves"][target.label] = result
        atomic_write_text(path, json.dumps(doc, indent=1))
        print(format_curve(target.label, result))
    # each later target against the first, task by task on the same held-out tasks
    first, *others = [t.label for t in targets]
    doc["paired"] = {f"{label} vs {first}": table for label in others
                     if (table := paired_against(out, label, first)) is not None}
    for name, table in doc["paired"].items():
        print(format_paired(name, table))
    atomic_write_text(path, json.dumps(doc, indent=1))
    curves = doc["curves"]
    plot_horizon_curves({k: v["pass@1"] for k, v in curves.items()}, out / "horizon_curve.png",
                        title=f"held-out horizon curve ({cfg.env.name})",
                        intervals={k: v["pass@1_ci"] for k, v in curves.items()})
    return out


def job_settings(cfg: EvalJobConfig) -> dict[str, Any]:
    """The settings every result in one output JSON shares (tasks, scoring): a change starts the JSON
    afresh. Targets scored under other ``target_settings`` may sit side by side in it."""
    from rl.config import to_dict

    return {"env": cfg.env.to_raw(), "eval": to_dict(cfg.eval), "reward": to_dict(cfg.reward)}


def target_settings(target: Target, cfg: EvalJobConfig) -> dict[str, Any]:
    """How a model target's weights are run: ``cfg``'s precision and RoPE scaling (``load_target``).
    Stored with each result; ``--resume`` reuses it only when these match too, as a bf16 or a
    context-extended model scores differently from the same weights in float32 or at the native
    length. Empty for a run target: its own run config sets both, and its path and step name it."""
    from rl.config import to_dict

    if target.kind == "run":
        return {}
    return json.loads(json.dumps({"dtype": cfg.dtype, "rope_scaling": to_dict(cfg.rope_scaling)}))


def weights_digest(target: Target) -> str | None:
    """SHA-256 over the names and bytes of a local model dir's weight files (``*.safetensors``,
    ``*.bin``), so that a dir written again since it was scored (a stage rerun into the same output
    dir) is scored again. None for a built-in model name (its converted weights never change) and for
    a run target (its checkpoint step names the weights). Reading 0.5 GB takes about a second."""
    import hashlib

    if target.kind == "run" or not Path(target.path).is_dir():
        return None
    digest = hashlib.sha256()
    for file in sorted(f for f in Path(target.path).iterdir() if f.suffix in (".safetensors", ".bin")):
        digest.update(file.name.encode())
        with file.open("rb") as fh:
            digest.update(hashlib.file_digest(fh, "sha256").digest())
    return digest.hexdigest()


def scored_as(target: Target, cfg: EvalJobConfig) -> dict[str, Any]:
    """What a stored result keeps to tell whether it still stands: ``run_as`` (``target_settings``) and
    ``weights`` (``weights_digest``)."""
    return {"run_as": target_settings(target, cfg), "weights": weights_digest(target)}


def already_scored(done: dict | None, target: Target, how: dict[str, Any]) -> bool:
    """Whether ``done`` (a stored result) is this target, at the checkpoint it would load now, run the
    same way and with the same weights (``how``, from ``scored_as``). A result stored before weight
    digests were kept (no ``weights`` key) is trusted on its path."""
    return bool(done) and done.get("path") == target.path and done.get("step") == _step_now(target) \
        and done.get("run_as", {}) == how["run_as"] and done.get("weights", how["weights"]) == how["weights"]


def load_results(path: Path, settings: dict[str, Any], section: str, resume: bool) -> dict[str, Any]:
    """The stored results document at ``path`` when resuming with the same ``settings``; otherwise a
    fresh one, ``{"settings": settings, section: {}}``. A setting the stored document lacks matches
    when it is at its default now (``same_settings``): a field added to the config since the JSON was
    written, left at its default, scores as before and keeps the stored results."""
    now = json.loads(json.dumps(settings))
    doc = json.loads(path.read_text()) if resume and path.exists() else {}
    if not same_settings(doc.get("settings"), now, default_settings()):
        return {"settings": now, section: {}}
    return {**doc, "settings": now}


def default_settings() -> dict[str, Any]:
    """``job_settings`` of a job left at every default: what a setting missing from an older JSON was."""
    return json.loads(json.dumps(job_settings(EvalJobConfig(targets=["default"]))))


def same_settings(stored: Any, now: Any, default: Any) -> bool:
    """Whether ``stored`` settings (read from a JSON) score like ``now``: equal, key by key, where a key
    only ``now`` has must hold its ``default`` (a field added later, left at its default). A key only
    ``stored`` has (a field since removed) does not match."""
    if not (isinstance(stored, dict) and isinstance(now, dict)):
        return stored == now
    default = default if isinstance(default, dict) else {}
    missing = object()
    for key in stored.keys() | now.keys():
        if key not in now:
            return False
        if key not in stored:
            if now[key] != default.get(key, missing):
                return False
        elif not same_settings(stored[key], now[key], default.get(key)):
            return False
    return True


def completions_path(eval_dir: Path, label: str) -> Path:
    """Where ``run_eval_job`` keeps the greedy completions of the target ``label`` under ``eval_dir``."""
    return eval_dir / "completions" / f"{_file_name(label)}.jsonl"


def load_completions(eval_dir: Path, label: str) -> list[dict] | None:
    """The greedy completion rows of ``label`` (``horizon``, ``task_id``, ``solved``, ...), or None
    when that target was scored before completions were kept."""
    path = completions_path(eval_dir, label)
    if not path.is_file():
        return None
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _file_name(label: str) -> str:
    """``label`` as a file name: path separators and other odd characters become ``_``."""
    return re.sub(r"[^A-Za-z0-9._@=-]+", "_", label).strip("_") or "target"


def paired_against(eval_dir: Path, label: str, base: str) -> dict[int, dict] | None:
    """``rl.curve_stats.paired_comparison`` of target ``label`` against ``base`` from their kept
    completions; None when either has none, or (with a warning on stderr) when they were not scored
    on the same tasks."""
    from rl.curve_stats import paired_comparison

    rows, base_rows = load_completions(eval_dir, label), load_completions(eval_dir, base)
    if rows is None or base_rows is None:
        return None
    try:
        return paired_comparison(rows, baseline=base_rows)
    except ValueError as e:
        print(f"horizon eval: {label} vs {base} not compared task by task: {e}", file=sys.stderr)
        return None


def format_paired(name: str, table: dict[int, dict]) -> str:
    """One line per comparison: per horizon, tasks gained / lost, the paired 95 % interval of the
    difference in points, and McNemar's exact p."""
    cells = "  ".join(f"h{h} {100 * c['diff']:+.0f} (+{c['gained']}/-{c['lost']}, "
                      f"[{100 * c['diff_ci'][0]:+.0f},{100 * c['diff_ci'][1]:+.0f}], p {c['p']:.2g})"
                      for h, c in table.items())
    return f"{name}, task by task: {cells}"


def format_curve(label: str, result: dict[str, Any]) -> str:
    """One readable line per target: pass@1 per horizon with intervals, and h50 (and a second line,
    pass@1 counting only chains right at every step, where the env labels steps)."""
    cells = "  ".join(f"h{h} {p:.2f} [{lo:.2f},{hi:.2f}]" for (h, p), (lo, hi)
                      in zip(result["pass@1"].items(), result["pass@1_ci"].values()))
    lo, hi = result["h50_ci"]
    h50 = "none" if result["h50"] is None else f"{result['h50']:.2f}"
    line = f"{label}: {cells}  h50 {h50} [{lo}, {hi}{'+' if result['h50_censored'] else ''}]"
    if "pass@1_all_steps" in result:  # an env with exact step labels: the chains that are right throughout
        h50_steps = result.get("h50_all_steps")
        line += ("\n  every step right: " + "  ".join(f"h{h} {p:.2f}" for h, p in result["pass@1_all_steps"].items())
                 + f"  h50 {'none' if h50_steps is None else f'{h50_steps:.2f}'}")
    return line
