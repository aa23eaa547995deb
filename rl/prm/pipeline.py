"""``horizon prm``: sample solutions, label their steps, train a PRM, evaluate it against the truth.

Stages (``cfg.stages``), writing under ``cfg.output_dir``:

- ``label``: the sampler writes ``samples_per_task`` solutions per training task (vLLM when
  installed); every step prefix gets ``mc_k`` continuations (Math-Shepherd: soft label =
  fraction reaching the right answer, hard = any), one batched engine call. The env's exact
  step labels (its spec's ``step_labels``) are stored beside them, and the MC labels are scored against them
  (``labels/quality.json``). Output: ``labels/`` (a ``datasets`` dataset in TRL's stepwise
  format plus ``soft_labels`` / ``exact_labels``).
- ``train``: a PRM (trunk + LoRA + 2-way head at step ends) trained on ``cfg.labels``; saved
  to ``prm/`` (use it as ``reward.prm`` of a training run).
- ``eval``: on held-out tasks, N = ``best_of_n`` samples each: step AUC (all steps and up to the
  first error), first-error accuracy, false alarms and calibration of the PRM, next to the
  position-only and arithmetic-check baselines (``eval/prm.json``, ``eval/calibration.png``);
  best-of-N by PRM (min / last / product) vs majority vote vs pass@1.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from pathlib import Path
from typing import Any

from rl.run.io import atomic_write_dir, atomic_write_text
from rl.prm.config import PRMConfig


def sample_solutions(engine, tokenizer, tasks, n: int, params) -> list[list[str]]:
    """``n`` sampled completion texts per task."""
    from rl.rollout.chat import render_prompt

    groups = engine.generate([render_prompt(tokenizer, t.messages) for t in tasks], params, n=n)
    return [[c.text for c in group] for group in groups]


def _steps(cfg: PRMConfig, text: str) -> list[str]:
    """The env's reasoning steps of ``text`` (its spec's separator)."""
    from rl.types import split_steps

    return split_steps(text, cfg.env.spec.step_separator)


def _exact_labeler(cfg: PRMConfig):
    """The env's exact step labeller; PRM metrics are measured against it."""
    from rl.errors import ConfigError

    labeler = cfg.env.spec.step_labels
    if labeler is None:
        raise ConfigError(f"config key 'env.name': env '{cfg.env.name}' has no exact step labels (its spec's "
                          "step_labels), which the PRM job measures labels and PRMs against")
    return labeler


def label_stage(cfg: PRMConfig, out: Path, engine, tokenizer, params) -> dict[str, Any]:
    from rewards.prm.labeling import build_label_dataset
    from rewards.prm.metrics import evaluate_scores
    from rl.build import build_task_source

    t0 = time.perf_counter()
    tasks = build_task_source(cfg.env, cfg.seed).sample(cfg.num_tasks)
    texts = sample_solutions(engine, tokenizer, tasks, cfg.samples_per_task, params)
    solutions = [(t, _steps(cfg, x)) for t, xs in zip(tasks, texts) for x in xs]
    solutions = [(t, s) for t, s in solutions if s]
    if cfg.mc_temperature is not None:
        params = dataclasses.replace(params, temperature=cfg.mc_temperature)
    dataset = build_label_dataset(engine, tokenizer, solutions, k=cfg.mc_k, params=params,
                                  exact_labels=_exact_labeler(cfg))
    atomic_write_dir(out / "labels", lambda tmp: dataset.save_to_disk(str(tmp)))
    exact = [row["exact_labels"] for row in dataset]
    quality = {"solutions": len(solutions), "steps": sum(len(s) for _, s in solutions),
               "exact_step_correct_frac": statistics.fmean(y for ys in exact for y in ys),
               "mc_soft_vs_exact": evaluate_scores([row["soft_labels"] for row in dataset], exact),
               "mc_hard_vs_exact": evaluate_scores([[float(v) for v in row["labels"]] for row in dataset], exact),
               "time_s": time.perf_counter() - t0}
    atomic_write_text(out / "labels" / "quality.json", json.dumps(quality, indent=2))
    return quality


def train_stage(cfg: PRMConfig, out: Path) -> dict[str, Any]:
    from datasets import load_from_disk

    from rewards.prm.model import build_prm
    from rewards.prm.train import train_prm, until_first_error

    dataset = load_from_disk(str(out / "labels"))
    key = {"mc_soft": "soft_labels", "mc_hard": "labels", "exact": "exact_labels"}[cfg.labels]
    if cfg.train_until_first_error:
        error_key = "exact_labels" if cfg.labels == "exact" else "labels"
        dataset = dataset.map(lambda row: until_first_error(row, error_key))
    if cfg.labels == "exact":
        dataset = dataset.map(lambda row: {"exact_labels": [float(v) for v in row["exact_labels"]]})
    prm, tokenizer = build_prm(cfg.prm_base or cfg.sampler, lora=cfg.lora, dtype=cfg.dtype, device=cfg.device,
                               seed=cfg.seed)
    result = train_prm(prm, tokenizer, dataset, label_key=key, epochs=cfg.train_epochs, lr=cfg.train_lr,
                       batch_size=cfg.train_batch_size, seed=cfg.seed)
    # a crash mid-save must not leave a readable prm_config.json beside a partial adapter
    atomic_write_dir(out / "prm", lambda tmp: prm.save(tmp, tokenizer=tokenizer))
    return {k: v for k, v in result.items() if k != "losses"}


def eval_stage(cfg: PRMConfig, out: Path, engine, tokenizer, params) -> dict[str, Any]:
    from rewards.math import extract_answer
    from rewards.prm.labeling import answer_is_correct
    from rewards.prm.metrics import (arithmetic_check_baseline, calibration_plot, evaluate_scores,
                                     position_baseline)
    from rewards.prm.model import load_prm
    from rewards.prm.search import best_of_n, majority_vote
    from rl.build import build_task_source

    t0 = time.perf_counter()
    tasks = build_task_source(cfg.env, cfg.eval_seed, split="eval").sample(cfg.eval_tasks)
    texts = sample_solutions(engine, tokenizer, tasks, cfg.best_of_n, params)
    prm, prm_tok = load_prm(out / "prm", cfg.device, dtype=cfg.dtype)
    flat = [(t, x, _steps(cfg, x)) for t, xs in zip(tasks, texts) for x in xs]
    with_steps = [i for i, (_, _, s) in enumerate(flat) if s]
    step_scores = prm.step_scores(prm_tok, [flat[i][0].messages for i in with_steps], [flat[i][2] for i in with_steps])
    scores_by_flat = {i: sc for i, sc in zip(with_steps, step_scores)}
    scored = [flat[i] for i in with_steps]
    exact = _exact_labeler(cfg)
    labels = [exact(t, s) for t, _, s in scored]
    # metrics over every held-out sample with steps (N per task: more steps, tighter AUCs)
    result: dict[str, Any] = {
        "prm": evaluate_scores(step_scores, labels),
        "position_baseline": evaluate_scores([position_baseline(len(s)) for _, _, s in scored], labels),
        "arithmetic_baseline": evaluate_scores([arithmetic_check_baseline(s) for _, _, s in scored], labels),
    }
    calibration_plot([x for s in step_scores for x in s], [y for ys in labels for y in ys],
                     out / "eval" / "calibration.png", title=f"PRM calibration, held-out {cfg.env.name} steps")
    # best-of-N: per task, choose among its N samples
    # every one of the N samples takes part (a sample without steps scores 0 for the PRM)
    by_task: dict[str, list[int]] = {}
    for i, (t, _, _) in enumerate(flat):
        by_task.setdefault(t.id, []).append(i)
    bon = {"pass@1": [], "majority": [], **{f"prm_{how}": [] for how in ("min", "last", "product")}}
    for task in tasks:
        ids = by_task.get(task.id, [])
        if not ids:
            for v in bon.values():
                v.append(0.0)
            continue
        correct = [answer_is_correct(task, flat[i][1]) for i in ids]
        bon["pass@1"].append(statistics.fmean(correct))
        vote = majority_vote([extract_answer(flat[i][1]) for i in ids])
        bon["majority"].append(float(vote is not None and answer_is_correct(task, f"#### {vote}")))
        for how in ("min", "last", "product"):
            chosen = best_of_n([flat[i][1] for i in ids], [scores_by_flat.get(i, [0.0]) for i in ids], how)
            bon[f"prm_{how}"].append(float(correct[chosen]))
    result["best_of_n"] = {"n": cfg.best_of_n, **{k: statistics.fmean(v) for k, v in bon.items()}}
    result["time_s"] = time.perf_counter() - t0
    atomic_write_text(out / "eval" / "prm.json", json.dumps(result, indent=2))
    return result


def run_prm(cfg: PRMConfig, resume: bool = False) -> Path:
    """Run the configured stages; returns the output directory (``resume`` is accepted for a
    uniform CLI: stages are picked with ``stages``)."""
    from rl.build import build_engine
    from rl.config import save_config
    from rl.models import check_model_available, load_policy
    from rl.rollout.base import SamplingParams

    check_model_available(cfg.sampler)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    summary_path = out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}

    def record(key, value):
        summary[key] = value
        atomic_write_text(summary_path, json.dumps(summary, indent=2))
        print(f"horizon prm: {key}: {json.dumps(value)[:600]}")

    engine = policy = None
    needs_engine = any(s in cfg.stages for s in ("label", "eval"))
    if needs_engine:
        policy = load_policy(cfg.sampler, lora=None, dtype=cfg.dtype, device=cfg.device, trainable=False)
        engine = build_engine(cfg.rollout, policy, seed=cfg.seed)
    params = SamplingParams(max_new_tokens=cfg.rollout.max_new_tokens, temperature=cfg.rollout.temperature,
                            seed=cfg.seed, stop_token_ids=(policy.tokenizer.eos_token_id,) if policy else ())
    try:
        if "label" in cfg.stages:
            record("label", label_stage(cfg, out, engine, policy.tokenizer, params))
        if "train" in cfg.stages:
            record("train", train_stage(cfg, out))
        if "eval" in cfg.stages:
            record("eval", eval_stage(cfg, out, engine, policy.tokenizer, params))
    finally:
        if engine is not None:
            engine.close()
    return out
