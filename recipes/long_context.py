"""Context extension: SmolLM2 with YaRN x2 past its native length, SFT then GRPO on the needle env,
scored on the needle grid (accuracy by length x depth) against the base with and without YaRN.

    python recipes/long_context.py                     # SmolLM2-135M, 8192 -> 16384 (~2 h, 2 CPU cores, estimate)
    python recipes/long_context.py --preset quick      # tiny settings on SmolLM2 (~10 min): the pipeline, not a result
    python recipes/long_context.py --resume            # continue where a killed run stopped
    python recipes/long_context.py --stages [eval_base,eval_yarn]   # only the zero-shot grids

Stages (each skipped on ``--resume`` once done; ``state.json`` records them):

1. ``eval_base``: the needle grid of the base model, unscaled, also past its native length.
2. ``eval_yarn``: the same grid with ``rope_scaling`` (YaRN x2) applied zero-shot.
3. ``distill``: oracle traces on needle documents (``distill.env``) -> LoRA SFT (TRL) of the base
   with ``rope_scaling`` on; the merged student ``distill/model`` keeps it in its config.json.
4. ``eval_sft`` (not in the default list): the student's grid.
5. ``rl``: GRPO from the student on the needle env (``rl.env``) for ``rl_minutes`` of loop time.
6. ``eval_rl``: the RL checkpoint's grid.
7. ``report``: ``report.md``: effective context and accuracy by length per model.

Every grid scores the same held-out needle tasks (``grid``: lengths x depths, ``eval.horizons`` as
hops; ``eval.tasks_per_horizon`` per cell) with greedy decoding; transformers generates by default
(``eval.engine: hf``): vLLM will not run the unscaled base past its native length. What to read:
``base`` vs ``base+YaRN`` past 8192 is the zero-shot effect of YaRN; ``YaRN+SFT+RL`` vs
``base+YaRN`` adds the answer format and the task (the base rarely writes ``#### code``), at the
training lengths and, past them, how far training at shorter lengths carries.
CPU sizing: training runs on documents of up to 4096 tokens (a 16K-token forward+backward of
SmolLM2 costs minutes on 2 cores); both trainers use gradient checkpointing.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[1]

from rl.config import EnvConfig, EvalConfig, RopeScalingConfig, check  # noqa: E402
from rl.run.stages import Stages  # noqa: E402
from rl.distill.config import DistillConfig  # noqa: E402
from rl.trainer.config import TrainConfig  # noqa: E402

PRESETS = {"full": ROOT / "recipes" / "configs" / "long_context.yaml",
           "quick": ROOT / "recipes" / "configs" / "long_context_quick.yaml"}
STAGES = ("eval_base", "eval_yarn", "distill", "eval_sft", "rl", "eval_rl", "report")
DEFAULT_STAGES = [s for s in STAGES if s != "eval_sft"]


@dataclass
class LongContextConfig:
    """The recipe's keys (``--key value`` overrides any, dotted into the sections). ``model`` and
    ``rope_scaling`` are copied into the distill and rl sections; ``grid`` and ``eval`` are the
    needle grid every eval stage scores."""

    model: str = "smollm2-135m-instruct"
    output_dir: str = "runs/long_context"
    seed: int = 0
    rope_scaling: RopeScalingConfig = field(default_factory=lambda: RopeScalingConfig(type="yarn", factor=2.0))
    rl_minutes: float = 15.0  # GRPO loop time
    stages: list[str] = field(default_factory=lambda: list(DEFAULT_STAGES))
    grid: EnvConfig = field(default_factory=lambda: EnvConfig(name="needle"))
    eval: EvalConfig = field(default_factory=lambda: EvalConfig(horizons=[1], tasks_per_horizon=2, engine="hf"))
    distill: DistillConfig = field(default_factory=DistillConfig)
    rl: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        check(self.rl_minutes > 0, "rl_minutes", f"must be > 0, got {self.rl_minutes}")
        unknown = [s for s in self.stages if s not in STAGES]
        check(not unknown, "stages", f"unknown stage(s) {unknown}: choose from {list(STAGES)}")
        check(self.rope_scaling.enabled, "rope_scaling.type",
              "the recipe extends the context: set a type (yarn, linear or dynamic) and a factor > 1")
        check(self.grid.name == "needle", "grid.name", f"the grid is the needle env's, got '{self.grid.name}'")


def grid(cfg: LongContextConfig, out: Path, label: str, target: str, rope: RopeScalingConfig) -> dict:
    """Score one labelled target on the shared needle grid (``eval/needle_grid.json``, resumed);
    returns its effective context per hop count and the rope scaling it ran with."""
    from rl.eval_job import EvalJobConfig, run_eval_job

    job = EvalJobConfig(targets=[target], labels=[label], output_dir=str(out / "eval"), rope_scaling=rope,
                        env=cfg.grid, reward=replace(cfg.rl.reward, prm=None), eval=cfg.eval)
    run_eval_job(job, resume=True)
    result = json.loads((out / "eval" / "needle_grid.json").read_text())["grids"][label]
    return {"effective_context": result["effective_context"], "rope_scaling": rope.type,
            "time_s": result["time_s"]}


def run(cfg: LongContextConfig, resume: bool) -> Path:
    from rl.config import save_config
    from rl.distill.pipeline import distill
    from rl.errors import ConfigError
    from rl.models import check_model_available
    from rl.trainer.loop import train

    check_model_available(cfg.model, cfg.rope_scaling)  # the scaling checked against the model's config
    out = Path(cfg.output_dir)
    if (out / "state.json").exists() and not resume:
        raise ConfigError(f"output_dir '{out}' already holds a run: pass --resume to continue it, "
                          "or choose a new --output_dir")
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    stages, want = Stages(out), set(cfg.stages)
    student = str((out / "distill" / "model").resolve())  # absolute: the RL run's config names it
    off = RopeScalingConfig()

    def stage(name: str, fn) -> None:
        if name in want and not stages.done(name):
            t0 = time.perf_counter()
            print(f"\n=== long_context: {name} ===", flush=True)
            value = fn()
            stages.record(name, {"value": value, "minutes": round((time.perf_counter() - t0) / 60, 2)})

    def need(path: Path, stage_name: str) -> None:
        if not path.exists():
            raise ConfigError(f"'{path}' is missing: run the '{stage_name}' stage first (add it to --stages)")

    stage("eval_base", lambda: grid(cfg, out, "base", cfg.model, off))
    stage("eval_yarn", lambda: grid(cfg, out, f"base+{cfg.rope_scaling.type}", cfg.model, cfg.rope_scaling))
    distill_cfg = replace(cfg.distill, model=cfg.model, output_dir=str(out / "distill"), seed=cfg.seed,
                          stages=["traces", "sft"], rope_scaling=cfg.rope_scaling)
    stage("distill", lambda: json.loads((distill(distill_cfg, resume=True) / "summary.json").read_text())["sft"])

    def eval_sft() -> dict:
        need(Path(student) / "config.json", "distill")
        return grid(cfg, out, f"{cfg.rope_scaling.type}+SFT", student, cfg.rope_scaling)

    stage("eval_sft", eval_sft)
    rl_cfg = replace(cfg.rl, model=student, output_dir=str(out / "rl"), seed=cfg.seed,
                     rope_scaling=cfg.rope_scaling, max_train_s=cfg.rl_minutes * 60)

    def rl() -> str:
        need(Path(student) / "config.json", "distill")
        return str(train(rl_cfg, resume=(out / "rl" / "metrics.jsonl").exists()))

    stage("rl", rl)

    def eval_rl() -> dict:
        need(out / "rl" / "config.yaml", "rl")
        return grid(cfg, out, f"{cfg.rope_scaling.type}+SFT+RL", str(out / "rl"), off)  # the run's own scaling

    stage("eval_rl", eval_rl)
    if "report" in want:
        print(f"report: {write_report(cfg, out)}")
    return out


def write_report(cfg: LongContextConfig, out: Path) -> Path:
    """``report.md``: per model, the effective context (every depth >= the threshold) and the
    accuracy by length (mean over depths and hops), from ``eval/needle_grid.json``."""
    from rl.run.io import atomic_write_text

    doc = json.loads((out / "eval" / "needle_grid.json").read_text())
    grids = doc["grids"]
    lengths = sorted({c["length"] for g in grids.values() for c in g["cells"]})
    lines = [f"# long_context: {cfg.model} with {cfg.rope_scaling.type} x{cfg.rope_scaling.factor:g}", "",
             f"Needle grid: lengths {lengths}, depths {doc['settings']['env']['depths']}, hops {cfg.eval.horizons}, "
             f"{cfg.eval.tasks_per_horizon} held-out task(s) per cell, greedy. Effective context: the longest length "
             f"at which every depth, there and at every shorter length, reaches {doc['settings']['threshold']}.", "",
             "| model | effective context | " + " | ".join(f"acc @ {n}" for n in lengths) + " |",
             "|---|---|" + "---|" * len(lengths)]
    for label, g in grids.items():
        eff = ", ".join(f"{h} hop: {v['length']}{'+' if v['censored'] else ''}"
                        for h, v in g["effective_context"].items())
        accs = []
        for n in lengths:
            cells = [c for c in g["cells"] if c["length"] == n]
            accs.append(f"{sum(c['correct'] for c in cells) / max(1, sum(c['n'] for c in cells)):.2f}")
        lines.append(f"| {label} | {eff} | " + " | ".join(accs) + " |")
    lines += ["", "Heatmaps: `eval/needle_grid.png`. Stage minutes: "
              + ", ".join(f"{k} {v['minutes']}" for k, v in Stages(out).state.items()), ""]
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path


def main(argv: list[str]) -> int:
    from rl.cli import run_staged_recipe

    return run_staged_recipe("long_context", __doc__, LongContextConfig, PRESETS, run, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
