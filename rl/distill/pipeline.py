"""Offline distillation: teacher traces -> verifier filter -> SFT of the student -> evaluation.

``distill(cfg)`` runs the stages in ``cfg.stages`` and writes under ``cfg.output_dir``::

    traces/                    the accepted traces, a Hugging Face ``datasets`` dataset whose
                               ``info.description`` holds the provenance (JSON)
    traces_preview.jsonl       the first accepted rows, readable
    traces_rejected.jsonl      every rejected trace with the verifier's verdict
    provenance.json            teacher, sampling, verifier, acceptance rate (overall, by horizon)
    sft/                       TRL checkpoints (``--resume`` continues from the newest)
    adapter/                   the student's LoRA adapter
    model/                     the merged student: use it as ``model:`` of a training / PRM run
    eval/{before,after}.json   greedy pass@1 per horizon; eval/horizon_curve.png

Rejection sampling is the whole filter: a trace is kept only if the task's verifier accepts
its final answer (the same ``RewardFunction`` the RL trainer uses, so a teacher whose answers
are wrong, including a buggy oracle, contributes nothing).
"""

from __future__ import annotations

import json
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from rl.distill.config import DistillConfig
from rl.errors import ConfigError, DataError
from rl.run.io import atomic_write_dir, atomic_write_text
from rl.traces import REQUIRED_COLUMNS, load_traces
from rl.types import Completion, Episode, Task, Turn

PREVIEW_ROWS = 20


def verify_text(task: Task, text: str, reward_fn) -> Episode:
    """Score a teacher's ``text`` for ``task`` as a one-turn episode (tokens are not needed)."""
    episode = Episode(task=task, group_id=0,
                      turns=[Turn(context_ids=[], completion=Completion([], [], text, "stop"))])
    reward_fn(episode)
    return episode


def generate_traces(teacher, source, reward_fn, num_tasks: int, k: int,
                    exclude_prompts: set[str] = frozenset(), chunk: int = 256):
    """Draw ``num_tasks`` tasks (skipping ``exclude_prompts``), sample k traces each, verify.

    Returns ``(accepted_rows, rejected_rows, stats)``; rows are TRL prompt/completion
    conversational rows plus ``task_id``, ``horizon``, ``answer``, ``sample_index``, ``score``,
    ``correct`` and ``verifier_error``.
    """
    accepted, rejected = [], []
    drawn, skipped = 0, 0
    while drawn < num_tasks:
        tasks = []
        for task in source.sample(min(chunk, num_tasks - drawn)):
            if task.messages[-1]["content"] in exclude_prompts:
                skipped += 1
                continue
            tasks.append(task)
        drawn += len(tasks)
        for task, texts in zip(tasks, _solve(teacher, tasks, k)):
            for i, text in enumerate(texts):
                if isinstance(text, Exception):  # the teacher failed on this task: recorded, not fatal
                    error, episode = f"teacher: {type(text).__name__}: {text}", None
                else:
                    episode = verify_text(task, text, reward_fn)
                    error = next((e.message for e in episode.errors), None)
                ok = error is None and episode.outcome is not None and episode.outcome.correct
                (accepted if ok else rejected).append({
                    "prompt": [dict(m) for m in task.messages],
                    "completion": [{"role": "assistant", "content": text if isinstance(text, str) else ""}],
                    "task_id": task.id, "horizon": task.horizon, "answer": task.answer,
                    "sample_index": i,
                    "score": None if error else episode.outcome.score,
                    "correct": bool(ok), "verifier_error": error,
                })
    teacher_failed = [r for r in rejected if str(r["verifier_error"]).startswith("teacher:")]
    stats = {"tasks": drawn, "skipped_eval_overlap": skipped, "traces": len(accepted) + len(rejected),
             "accepted": len(accepted), "rejected": len(rejected), "teacher_errors": len(teacher_failed),
             "verifier_errors": sum(r["verifier_error"] is not None for r in rejected) - len(teacher_failed)}
    stats["acceptance_rate"] = stats["accepted"] / max(stats["traces"], 1)
    by_h: dict[Any, list[bool]] = defaultdict(list)
    for row in accepted + rejected:
        by_h[row["horizon"]].append(row["correct"])
    stats["acceptance_by_horizon"] = {str(h): statistics.fmean(v) for h, v in sorted(by_h.items())}
    return accepted, rejected, stats


def _solve(teacher, tasks: list[Task], k: int) -> list[list]:
    """``teacher.solve`` on a chunk; if the chunk fails, task by task, an exception standing in
    for the texts of a task that still fails (so one bad request loses one task, not the run)."""
    try:
        return teacher.solve(tasks, k)
    except Exception:  # noqa: BLE001 - retried per task below
        out = []
        for task in tasks:
            try:
                out.append(teacher.solve([task], k)[0])
            except Exception as e:  # noqa: BLE001 - recorded as a rejected trace
                out.append([e])
        return out


def save_traces(out_dir: Path, accepted: list[dict], rejected: list[dict], provenance: dict) -> Path:
    """Write the dataset (atomically: temp dir + rename), preview, rejects and provenance."""
    from datasets import Dataset

    if not accepted:
        raise DataError(
            f"the teacher ({provenance.get('teacher')}) wrote no trace the verifier accepted "
            f"(0 of {len(rejected)}): see {out_dir / 'traces_rejected.jsonl'}; check the teacher's "
            "answer format or raise teacher.samples_per_task")
    out_dir.mkdir(parents=True, exist_ok=True)
    dataset = Dataset.from_list(accepted)
    dataset.info.description = json.dumps(provenance)
    final = out_dir / "traces"
    atomic_write_dir(final, lambda tmp: dataset.save_to_disk(str(tmp)))
    jsonl = lambda rows: "".join(json.dumps(r) + "\n" for r in rows)  # noqa: E731
    atomic_write_text(out_dir / "traces_preview.jsonl", jsonl(accepted[:PREVIEW_ROWS]))
    atomic_write_text(out_dir / "traces_rejected.jsonl", jsonl(rejected))
    atomic_write_text(out_dir / "provenance.json", json.dumps(provenance, indent=2))
    return final


# ---------------------------------------------------------------- SFT


def build_sft_trainer(cfg: DistillConfig, dataset, out_dir: Path):
    """TRL ``SFTTrainer`` for the student: LoRA, completion-only loss, bf16 autocast where native.

    Prompt/completion conversational rows are used because SmolLM2's chat template has no
    ``{% generation %}`` markers (so ``assistant_only_loss`` cannot find the reply tokens).
    """
    import torch
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from rl.models import load_causal_lm, load_tokenizer, pick_autocast_dtype, pick_device

    device = pick_device(cfg.device)
    autocast = pick_autocast_dtype(cfg.dtype, device)
    tokenizer = load_tokenizer(cfg.model)
    model, _, _ = load_causal_lm(cfg.model, cfg.rope_scaling)  # the saved student keeps the RoPE scaling
    s = cfg.sft
    args = SFTConfig(
        output_dir=str(out_dir / "sft"), max_steps=s.max_steps, per_device_train_batch_size=s.batch_size,
        learning_rate=s.lr, warmup_steps=s.warmup_ratio,  # a float < 1 is a ratio of max_steps
        lr_scheduler_type=s.lr_scheduler,
        logging_steps=s.logging_steps, save_strategy="steps", save_steps=s.save_every, save_total_limit=2,
        max_length=s.max_length, completion_only_loss=True, seed=cfg.seed, data_seed=cfg.seed,
        bf16=autocast == torch.bfloat16, fp16=autocast == torch.float16, use_cpu=device.type == "cpu",
        report_to=[], disable_tqdm=not cfg.progress, gradient_checkpointing=s.gradient_checkpointing,
        dataloader_num_workers=0, dataset_num_proc=None,
    )
    peft_config = None
    if cfg.lora.r > 0:
        peft_config = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                                 target_modules=cfg.lora.target_modules, task_type="CAUSAL_LM")
    callbacks = [time_budget_callback(s.max_train_s)] if s.max_train_s else []
    return SFTTrainer(model=model, args=args, processing_class=tokenizer, peft_config=peft_config,
                      train_dataset=dataset.select_columns(list(REQUIRED_COLUMNS)), callbacks=callbacks)


def time_budget_callback(budget_s: float):
    """A transformers ``TrainerCallback`` that ends training after the first optimizer step at
    which ``budget_s`` seconds of training have passed (the Trainer saves its final state then).
    The clock starts with each ``train()`` call: a resumed SFT gets the whole budget again.
    transformers has step and epoch budgets but no wall-clock one, hence this."""
    from transformers import TrainerCallback

    class _TimeBudget(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if time.perf_counter() - self.t0 >= budget_s:
                control.should_training_stop = True
                control.should_save = True  # so --resume finds the state the budget stopped at

    return _TimeBudget()


def sft_student(cfg: DistillConfig, dataset, out_dir: Path, resume: bool = False) -> dict[str, Any]:
    """Fine-tune the student on ``dataset``; save ``adapter/`` and the merged ``model/``.

    Returns ``{"model", "adapter", "steps", "loss_first", "loss_last", "time_s", "train_s"}``
    (losses are TRL's logged training losses over the first and last logging windows; ``train_s``
    is the training loop's own seconds in this call, ``time_s`` adds loading and saving).
    """
    t0 = time.perf_counter()
    trainer = build_sft_trainer(cfg, dataset, out_dir)
    has_checkpoint = any((out_dir / "sft").glob("checkpoint-*"))
    output = trainer.train(resume_from_checkpoint=True if resume and has_checkpoint else None)
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    model = trainer.model
    tokenizer = trainer.processing_class
    adapter_dir = out_dir / "adapter"
    if cfg.lora.r > 0:
        atomic_write_dir(adapter_dir, lambda tmp: model.save_pretrained(tmp))
        model = model.merge_and_unload()
    model_dir = out_dir / "model"

    def save_model(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    atomic_write_dir(model_dir, save_model)
    return {"model": str(model_dir), "adapter": str(adapter_dir) if cfg.lora.r > 0 else None,
            "steps": trainer.state.global_step, "loss_first": losses[0] if losses else None,
            "loss_last": losses[-1] if losses else None, "time_s": time.perf_counter() - t0,
            "train_s": output.metrics.get("train_runtime")}


# ---------------------------------------------------------------- pipeline


def _qualname(obj) -> str:
    """``module.Name`` of a function or class, or of an instance's class (for provenance)."""
    named = obj if hasattr(obj, "__qualname__") else type(obj)
    return f"{named.__module__}.{named.__qualname__}"


def _evaluate(model: str, cfg: DistillConfig) -> dict[str, Any]:
    from rl.evaluate import evaluate_policy
    from rl.models import load_policy

    policy = load_policy(model, lora=None, dtype=cfg.dtype, device=cfg.device, trainable=False,
                         rope_scaling=cfg.rope_scaling)
    label = Path(model).name if cfg.progress else None  # the eval's progress bar
    result = evaluate_policy(policy, cfg.env, cfg.eval, cfg.reward, progress=label)
    result["model"] = model
    return result


def distill(cfg: DistillConfig, resume: bool = False) -> Path:
    """Run ``cfg.stages`` in order; returns the output directory (see the module docstring)."""
    from rl.build import build_reward, build_task_source
    from rl.config import save_config, to_dict
    from rl.evaluate import eval_prompts, plot_horizon_curves
    from rl.models import check_model_available
    from rl.distill.teachers import build_teacher

    check_model_available(cfg.model, cfg.rope_scaling)  # fail before any expensive work
    out = Path(cfg.output_dir)
    if not resume and (out / "provenance.json").exists() and "traces" in cfg.stages:
        raise ConfigError(f"output_dir '{out}' already holds a distillation run: pass --resume to "
                          "continue it, drop 'traces' from stages to reuse its traces, or choose a new "
                          "--output_dir")
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    summary_path = out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}

    def record(key: str, value: Any) -> None:
        summary[key] = value
        atomic_write_text(summary_path, json.dumps(summary, indent=2))
        print(f"horizon distill: {key}: {json.dumps(value)[:400]}")

    if "traces" in cfg.stages and not (resume and (out / "traces").exists()):
        t0 = time.perf_counter()
        teacher = build_teacher(cfg.teacher, cfg.env, device=cfg.device, seed=cfg.seed)
        try:
            accepted, rejected, stats = generate_traces(
                teacher, build_task_source(cfg.env, cfg.seed), build_reward(cfg.env, cfg.reward),
                cfg.num_tasks, cfg.teacher.samples_per_task, eval_prompts(cfg.env, cfg.eval))
        finally:
            teacher.close()
        provenance = {"teacher": teacher.name, "teacher_config": to_dict(cfg.teacher),
                      "verifier": _qualname(cfg.env.spec.verifier), "env": to_dict(cfg.env), "seed": cfg.seed,
                      "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **stats,
                      "time_s": time.perf_counter() - t0}
        save_traces(out, accepted, rejected, provenance)
        record("traces", {k: v for k, v in provenance.items() if k not in ("teacher_config", "env")})
    if "eval_before" in cfg.stages and not (resume and "eval_before" in summary):
        before = _evaluate(cfg.model, cfg)
        atomic_write_text(out / "eval" / "before.json", json.dumps(before, indent=2))
        record("eval_before", {"pass@1": before["pass@1"], "h50": before["h50"], "h50_ci": before["h50_ci"]})
    if "sft" in cfg.stages and not (resume and "sft" in summary):
        dataset, _ = load_traces(out / "traces")
        record("sft", sft_student(cfg, dataset, out, resume=resume))
    if "eval_after" in cfg.stages:
        if not (out / "model").exists():
            raise DataError(f"no fine-tuned student in '{out / 'model'}': run the 'sft' stage first")
        after = _evaluate(str(out / "model"), cfg)
        atomic_write_text(out / "eval" / "after.json", json.dumps(after, indent=2))
        record("eval_after", {"pass@1": after["pass@1"], "h50": after["h50"], "h50_ci": after["h50_ci"]})
        curves, intervals = {"after SFT": after["pass@1"]}, {"after SFT": after["pass@1_ci"]}
        if (out / "eval" / "before.json").exists():
            before = json.loads((out / "eval" / "before.json").read_text())
            curves, intervals["base"] = {"base": before["pass@1"], **curves}, before["pass@1_ci"]
        plot_horizon_curves(curves, out / "eval" / "horizon_curve.png", title=f"distilled {cfg.model}",
                            intervals=intervals)
    return out
