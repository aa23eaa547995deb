"""The main job: does RL lengthen the horizon? base eval -> distil -> GRPO past the traces -> eval,
against the control: the same extra minutes spent on more SFT.

    python recipes/long_horizon.py                       # what `make demo` runs (~87 min, 2 CPU cores)
    python recipes/long_horizon.py --preset quick        # tiny settings on SmolLM2 (~5 min)
    python recipes/long_horizon.py --seed 1 --output_dir runs/long_horizon_s1
    python recipes/long_horizon.py --resume              # continue where a killed run stopped
    python recipes/long_horizon.py --resume --redo '[rl, control]' --rl_minutes 30   # longer RL + its control
    python recipes/long_horizon.py --resume --redo '[eval]' --eval.tasks_per_horizon 200   # every target on more tasks

Stages (each skipped on ``--resume`` once done; ``state.json`` records them):

1. ``eval_base``: the base model's horizon curve on held-out tasks (``horizon eval``).
2. ``distill``: oracle traces (h 1..4) -> SFT of a LoRA (TRL) -> merged student in ``distill/model``;
   with ``--student_from DIR`` (another run's ``distill/`` or ``control/``) that SFT is the student.
   ``distill_more`` (when ``distill_more_steps`` > 0): a second SFT round from that model on fresh
   traces, a fresh cosine from ``distill.sft.lr`` (a warm restart), into ``distill_more/``: the student.
3. ``eval_sft``: the student's curve.
4. ``rl``: GRPO from the student for ``rl_minutes`` of loop time (the preset samples h 5-8,
   past the traces; ``rl.curriculum`` moves a window instead). With ``anchor_student_traces`` each
   update also takes the SFT loss on the student's own traces (``rl.anchor``).
5. ``eval_rl``: the RL checkpoint's curve.
6. ``control``: more SFT from the student on fresh oracle traces for the same seconds the RL loop
   used (the schedule sized from the first SFT's seconds per step).
7. ``eval_control`` and ``report``: ``report.md`` with the table (pass@1 per horizon with Wilson
   95 % intervals, h50), the plots and a few sampled traces with their exact per-step labels.

Every eval scores the same held-out tasks (the env's held-out split, disjoint from every
training stream by construction) of ``eval_env`` (``rl.env`` when unset; the preset sets it, so
``--rl.env.*`` changes what RL samples and not what the evals score: change ``eval_env`` too to
score another task). Where the env labels steps exactly, each curve also counts the completions
with every step right, and the report shows where the chains break (the step hazard). A second seed is a second output_dir;
``recipes/long_horizon_seeds.py DIR DIR ...`` pools their curves into one table.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "recipes"))  # the report helper beside this file

from rl.config import EnvConfig, EvalConfig, check  # noqa: E402
from rl.run.stages import Stages  # noqa: E402
from rl.distill.config import DistillConfig  # noqa: E402
from rl.trainer.config import TrainConfig  # noqa: E402

PRESETS = {"full": ROOT / "recipes" / "configs" / "long_horizon.yaml",
           "quick": ROOT / "recipes" / "configs" / "long_horizon_quick.yaml",
           "hard": ROOT / "recipes" / "configs" / "long_horizon_hard.yaml"}
STAGES = ("eval_base", "distill", "distill_more", "eval_sft", "rl", "eval_rl", "control", "eval_control", "report")
EVALS = ("eval_base", "eval_sft", "eval_rl", "eval_control")
# what --redo NAME forgets in state.json: a stage and its eval, or every eval
REDO = {"rl": ("rl", "eval_rl"), "control": ("control", "eval_control"), "eval": EVALS}
KEPT_ASIDE = ("control", "eval")  # a redo of these moves the old dir to <dir>.prev.N/ first


@dataclass
class LongHorizonConfig:
    """The recipe's keys (``--key value`` overrides any, dotted into the sections)."""

    model: str = "smollm2-135m-instruct"
    output_dir: str = "runs/long_horizon"
    seed: int = 0
    rl_minutes: float = 10.0  # GRPO loop time; the control gets the same seconds of SFT
    # the control's peak learning rate; None: distill.sft.lr (its cosine restarts there). From a
    # student whose own schedule has annealed, restarting at the distillation's peak costs the
    # control (measured: 6-step chains .51 -> .46 in 12 min, -> .35 in 30); a lower peak is the fairer
    # control there (3e-4, 30 min: .51 -> .49, two seeds; recipes/results/long_horizon_log.md)
    control_lr: float | None = None
    # RL also takes the SFT loss on the student's own distillation traces in every update
    # (rl.anchor.traces set to <student dir>/traces; rl.anchor.coef etc. still apply)
    anchor_student_traces: bool = False
    # a second SFT round before RL: this many steps from the distilled model on fresh oracle traces
    # (seed + 2000), a fresh cosine from distill.sft.lr; its model is the student. 0: none. 300 (~30 min
    # on 2 cores) makes the 46-min student (16 + a 30-min restart) in one run: RL from it gained more
    # than from the 16-min one in two runs (seeds 0, 1) and not in a third (seed 0 again; long_horizon_log.md)
    distill_more_steps: int = 0
    # start from an SFT made elsewhere instead of distilling: a distil output dir (model/, traces/,
    # summary.json), e.g. another run's distill/ or control/ ("RL after SFT has converged")
    student_from: str | None = None
    # the precision every target is scored in (the same for all, so the curves compare): bf16
    # would round the SFT and RL weight deltas differently
    eval_dtype: Literal["auto", "float32", "bfloat16"] = "float32"
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    # stages a resumed run does again: "rl" continues from its newest checkpoint up to the (raised)
    # rl_minutes; "control" trains afresh for the RL loop's seconds now (the old control/ is kept as
    # control.prev.N/); each one's eval is redone with it. E.g. --resume --redo '[rl, control]' --rl_minutes 30.
    # "eval" scores every target again into a fresh eval/ (the old one kept as eval.prev.N/), e.g. on
    # more held-out tasks: --resume --redo '[eval]' --eval.tasks_per_horizon 200 --eval.horizons '[6, 8]'.
    # One-shot: not written to the run's config.yaml; after a kill mid-redo, resume without it
    redo: list[str] = field(default_factory=list)
    # the env whose held-out tasks every eval scores; None: rl.env. Set it (the preset does) so that
    # an RL run sampling other horizons (--rl.env.min_horizon 5) is scored on the same tasks as the
    # student, in the same eval JSON, instead of re-scoring every target on a new env
    eval_env: EnvConfig | None = None
    eval: EvalConfig = field(default_factory=EvalConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    rl: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        check(self.distill_more_steps >= 0, "distill_more_steps",
              f"must be >= 0 (0: no second SFT round), got {self.distill_more_steps}")
        check(self.rl_minutes > 0, "rl_minutes", f"must be > 0, got {self.rl_minutes}")
        check(self.control_lr is None or self.control_lr > 0, "control_lr",
              f"must be > 0 (or null for distill.sft.lr), got {self.control_lr}")
        unknown = [s for s in self.stages if s not in STAGES]
        check(not unknown, "stages", f"unknown stage(s) {unknown}: choose from {list(STAGES)}")
        # a redone stage must be in stages itself (else it would be forgotten and never run again);
        # 'eval' needs any one eval stage
        runs = {name: (name,) if name in STAGES else stages for name, stages in REDO.items()}
        wrong = [s for s in self.redo if s not in runs or not set(runs[s]) & set(self.stages)]
        check(not wrong, "redo", f"{wrong}: choose from {list(REDO)}; 'rl' and 'control' must be in 'stages', "
              "'eval' needs an eval stage there")
        check(not (self.anchor_student_traces and self.rl.anchor.traces), "anchor_student_traces",
              f"anchors RL on the student's own traces, but rl.anchor.traces is also set ('{self.rl.anchor.traces}'): "
              "set one of the two")


def evaluate(cfg: LongHorizonConfig, out: Path, targets: dict[str, str]) -> dict:
    """Score each labelled target on the shared held-out tasks (resuming the shared JSON)."""
    from rl.eval_job import EvalJobConfig, run_eval_job

    job = EvalJobConfig(targets=list(targets.values()), labels=list(targets), output_dir=str(out / "eval"),
                        dtype=cfg.eval_dtype, env=cfg.eval_env or cfg.rl.env, eval=cfg.eval,
                        # no PRM in evals; pass@1 reads answers (the all-steps curve is reported beside it)
                        reward=replace(cfg.rl.reward, prm=None, outcome="answer"))
    run_eval_job(job, resume=True)
    return json.loads((out / "eval" / "horizon_curve.json").read_text())["curves"]


def student_summary(path: Path) -> dict:
    """The SFT summary (steps, seconds) of the distil output dir ``path``, checked to hold a merged
    model and its traces; raises ``ConfigError`` naming ``student_from`` otherwise."""
    from rl.errors import ConfigError

    missing = [p for p in ("model/config.json", "traces", "summary.json") if not (path / p).exists()]
    summary = json.loads((path / "summary.json").read_text()).get("sft") if "summary.json" not in missing else None
    if missing or not (isinstance(summary, dict) and summary.get("steps")):
        raise ConfigError(f"config key 'student_from': '{path}' is not a finished distil output dir (missing "
                          f"{missing or ['an sft entry in summary.json']}): name a run's distill/ or control/ dir")
    return summary


def run_sft(distill_cfg) -> dict:
    """Run (or resume) a distillation's stages; returns its SFT summary (steps, seconds)."""
    from rl.distill.pipeline import distill

    return json.loads((Path(distill(distill_cfg, resume=True)) / "summary.json").read_text())["sft"]


def sft_more(cfg: LongHorizonConfig, start: str, out_dir: Path, seed: int, steps: int,
             max_train_s: float | None, lr: float) -> dict:
    """More SFT from the merged model ``start`` on fresh oracle traces of ``distill.env`` (``seed``, one
    per sample: ``steps`` x the batch size), a fresh cosine peaking at ``lr``, into ``out_dir``
    (resumed if begun); returns its SFT summary (steps, seconds)."""
    more = replace(cfg.distill, model=start, output_dir=str(out_dir), seed=seed, stages=["traces", "sft"],
                   num_tasks=steps * cfg.distill.sft.batch_size,
                   sft=replace(cfg.distill.sft, max_steps=steps, max_train_s=max_train_s, lr=lr))
    return run_sft(more)


def check_student(cfg: LongHorizonConfig, stages) -> None:
    """Raise ``ConfigError`` (naming ``distill_more_steps``) where the key and the run disagree on who
    the student is: a resumed run whose student came out of ``distill_more`` (or did not) must be
    resumed with the same key, and a student that is yet to be made needs the stage in ``stages``."""
    from rl.errors import ConfigError

    made = stages.done("distill_more")
    used = [s for s in ("eval_sft", "rl", "control") if stages.done(s)]
    if made and not cfg.distill_more_steps:
        steps = stages.state["distill_more"]["value"]["steps"]
        raise ConfigError(f"config key 'distill_more_steps': this run's student is distill_more/ ({steps} steps), "
                          f"but the key is 0: resume with --distill_more_steps {steps}")
    if cfg.distill_more_steps and not made:
        if used:
            raise ConfigError(f"config key 'distill_more_steps': this run's stages {used} used a student made "
                              "without a second SFT round: resume without the key, or start a new --output_dir")
        if "distill_more" not in cfg.stages:
            raise ConfigError("config key 'distill_more_steps': the student is made by the stage 'distill_more', "
                              "which --stages leaves out: add it, or set the key to 0")


def redo_stages(redo: list[str], stages, out: Path) -> None:
    """Forget the ``redo`` stages and their evals in ``stages`` (the run's state.json), so that they run
    again. A redone control's or eval's old dir moves to ``<dir>.prev.N/`` (the first free N: nothing is
    deleted), so the control trains afresh and every target is scored anew. RL keeps its checkpoints:
    ``train`` resumes from the newest. Otherwise the evals re-score only a target whose checkpoint step
    or weights changed (``rl.eval_job.already_scored``)."""
    for name in redo:
        for stage in REDO[name]:
            stages.forget(stage)
        if name in KEPT_ASIDE and (out / name).exists():
            n = next(i for i in itertools.count(1) if not (out / f"{name}.prev.{i}").exists())
            (out / name).rename(out / f"{name}.prev.{n}")


def run(cfg: LongHorizonConfig, resume: bool) -> Path:
    from rl.errors import ConfigError
    from rl.models import check_model_available
    from rl.trainer.loop import train
    from long_horizon_report import write_report

    check_model_available(cfg.model)
    given = Path(cfg.student_from).resolve() if cfg.student_from else None
    given_summary = student_summary(given) if given else None
    out = Path(cfg.output_dir)
    if out.exists() and (out / "state.json").exists() and not resume:
        raise ConfigError(f"output_dir '{out}' already holds a run: pass --resume to continue it, "
                          "or choose a new --output_dir")
    stages = Stages(out)
    check_student(cfg, stages)  # before config.yaml is rewritten
    out.mkdir(parents=True, exist_ok=True)
    from rl.config import save_config

    save_config(replace(cfg, redo=[]), out / "config.yaml")  # a redo is one-shot, not part of the run
    redo_stages(cfg.redo, stages, out)
    want = set(cfg.stages)
    if not cfg.distill_more_steps:
        want.discard("distill_more")
    first_dir = given or out / "distill"
    sft_dir = out / "distill_more" if cfg.distill_more_steps else first_dir  # the student's distil dir
    student = str((sft_dir / "model").resolve())  # absolute: the RL run's config names it
    made = {"SFT": student, "RL": str(out / "rl"), "SFT-more": str(out / "control")}
    ready = {"SFT": lambda: (sft_dir / "model" / "config.json").exists(),
             "RL": lambda: any((out / "rl" / "checkpoints").glob("step_*")),
             "SFT-more": lambda: (out / "control" / "model" / "config.json").exists()}

    def targets() -> dict[str, str]:
        """The models made so far (a stage left out with --stages leaves its model out; the base
        model is scored only when ``eval_base`` is asked for or was done)."""
        base = {"base": cfg.model} if "eval_base" in want or stages.done("eval_base") else {}
        return {**base, **{k: v for k, v in made.items() if ready[k]()}}

    def stage(name: str, fn) -> None:
        if name in want and not stages.done(name):
            t0 = time.perf_counter()
            print(f"\n=== long_horizon: {name} ===", flush=True)
            value = fn()
            stages.record(name, {"value": value, "minutes": round((time.perf_counter() - t0) / 60, 2)})

    stage("eval_base", lambda: evaluate(cfg, out, targets())["base"]["h50"])
    distill_cfg = replace(cfg.distill, model=cfg.model, output_dir=str(out / "distill"), seed=cfg.seed,
                          stages=["traces", "sft"], env=cfg.distill.env)
    if given:  # the student is made already: its summary stands for the stage (the control's pace)
        want.add("distill")
    stage("distill", lambda: {**given_summary, "from": str(given)} if given else
          run_sft(distill_cfg))

    def distill_more() -> dict:
        steps, first = cfg.distill_more_steps, cfg.distill.sft
        guard = first.max_train_s and first.max_train_s * steps / first.max_steps  # the first's seconds a step
        return sft_more(cfg, str((first_dir / "model").resolve()), sft_dir, cfg.seed + 2000, steps, guard, first.lr)

    stage("distill_more", distill_more)
    stage("eval_sft", lambda: evaluate(cfg, out, targets())["SFT"]["h50"])

    anchor = cfg.rl.anchor
    if cfg.anchor_student_traces:
        anchor = replace(anchor, traces=str((sft_dir / "traces").resolve()))
    rl_cfg = replace(cfg.rl, model=student, output_dir=str(out / "rl"), seed=cfg.seed,
                     max_train_s=cfg.rl_minutes * 60, anchor=anchor)
    stage("rl", lambda: str(train(rl_cfg, resume=(out / "rl" / "metrics.jsonl").exists())))
    stage("eval_rl", lambda: evaluate(cfg, out, targets())["RL"]["h50"])

    def control() -> dict:
        from rl.run.io import read_jsonl

        before = ["distill", "rl"] + (["distill_more"] if cfg.distill_more_steps else [])
        if not all(stages.done(name) for name in before):
            raise ConfigError(f"stage 'control' needs the stages {before} done first (its budget is "
                              "the RL loop's seconds): add them to --stages")
        seconds = list(read_jsonl(out / "rl" / "metrics.jsonl"))[-1]["time/train_s"]
        sft = stages.state["distill"]["value"]
        pace_s = (sft.get("train_s") or sft["time_s"]) / max(1, sft["steps"])  # SFT loop seconds per step
        steps = max(1, round(seconds / pace_s))
        summary = sft_more(cfg, student, out / "control", cfg.seed + 1000, steps, seconds,
                           cfg.control_lr or cfg.distill.sft.lr)
        return {**summary, "budget_s": seconds}

    stage("control", control)
    stage("eval_control", lambda: evaluate(cfg, out, targets())["SFT-more"]["h50"])
    if "report" in want:
        path = write_report(cfg, out, stages.state)
        print(f"report: {path}")
    return out


def main(argv: list[str]) -> int:
    from rl.cli import run_staged_recipe

    return run_staged_recipe("long_horizon", __doc__, LongHorizonConfig, PRESETS, run, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
