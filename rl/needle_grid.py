"""Needle grid eval: accuracy by depth x length (x hops) of a policy on the ``needle`` env.

    horizon eval smollm2-135m-instruct --env.name needle --env.lengths [1024,2048,4096,8000] \\
        --eval.horizons [1,2] --eval.tasks_per_horizon 20 --eval.max_new_tokens 32

``horizon eval`` runs this instead of the horizon curve when ``env.name`` is ``needle``. The axes
are the env's ``lengths`` and ``depths`` and the eval's ``horizons`` (the hops); each cell holds
``eval.tasks_per_horizon`` held-out tasks (the needle env's split: the same task positions in
every cell, so cells differ only by the cell). Generation is ``rl.evaluate``'s: the engine of
``eval.engine`` (``rl.build.build_engine``, with vLLM's ``max_model_len`` and the transformers
batch sized for the longest prompt), the env's runner, greedy decoding, the env's verifier.

``output_dir`` gets ``needle_grid.json`` (per target: one entry per cell with n, correct,
accuracy and its Wilson 95 % interval, the mean prompt tokens the model saw, and the effective
context per hop count) and ``needle_grid.png`` (one heatmap per target and hop count: depth on
y, length on x, the lost-in-the-middle picture).

The *effective context* at threshold t (default ``EFFECTIVE_THRESHOLD`` = 0.5) is the longest
length L such that every depth has accuracy >= t at L and at every shorter length of the grid;
None when the shortest length already fails; ``censored`` when the longest length passes (the
model may do better beyond the grid).

Example::

    result = evaluate_grid(policy, EnvConfig(name="needle"), EvalConfig(horizons=[1], tasks_per_horizon=10),
                           RewardConfig())
    result["cells"][0]              # {"hops": 1, "length": 1024, "depth": 0.0, "n": 10, "correct": 9, ...}
    result["effective_context"]     # {1: 2048}
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from rl.config import EnvConfig, EvalConfig, RewardConfig, RolloutConfig, VLLMConfig
from rl.curve_stats import wilson_interval
from rl.errors import ConfigError
from rl.types import Task

EFFECTIVE_THRESHOLD = 0.5
# transformers engine: prompts per generate call = this // the longest prompt (1 at 8K: no padding mask)
TOKENS_PER_BATCH = 8192
Cell = tuple[int, float, int]  # (length, depth, hops)


def resolve_tokenizer_option(env: EnvConfig) -> EnvConfig:
    """``env`` with its ``tokenizer`` option as a local directory: a built-in model name
    (``rl.models.BUILTIN_MODELS``) is resolved (built on first use); a path is kept."""
    from rl.build import resolved_options

    return EnvConfig(name=env.name, timeout_s=env.timeout_s, isolation=env.isolation,
                     options=resolved_options(env.options))


def grid_tasks(env: EnvConfig, cfg: EvalConfig) -> dict[Cell, list[Task]]:
    """``cfg.tasks_per_horizon`` held-out tasks for every cell ``(length, depth, hops)`` of the
    env's ``lengths`` x ``depths`` x ``cfg.horizons`` (``rl.evaluate.eval_tasks`` on a one-cell env)."""
    from rl.evaluate import eval_tasks

    options = env.options
    if not all(hasattr(options, k) for k in ("lengths", "depths", "tokenizer")):
        raise ConfigError(f"config key 'env.name': the needle grid needs an env with lengths, depths and "
                          f"tokenizer options (env.name: needle), got '{env.name}'")
    out: dict[Cell, list[Task]] = {}
    for length in options.lengths:
        for depth in options.depths:
            cell_env = EnvConfig(name=env.name, timeout_s=env.timeout_s, isolation=env.isolation,
                                 options=dataclasses.replace(options, lengths=(length,), depths=(depth,)))
            try:
                by_hops = eval_tasks(cell_env, cfg)
            except ConfigError as e:
                raise ConfigError(f"config key 'eval.horizons' (the needle grid's hops, {cfg.horizons}): {e}") from e
            for hops, tasks in by_hops.items():
                out[(length, depth, hops)] = tasks
    return out


def effective_context(accuracy: dict[Cell, float], threshold: float = EFFECTIVE_THRESHOLD) -> dict[int, dict]:
    """Per hop count: ``{"length": L or None, "censored": bool}``, L the longest length whose every
    depth, and every depth of every shorter length, has accuracy >= ``threshold``."""
    out = {}
    for hops in sorted({h for _, _, h in accuracy}):
        lengths = sorted({L for L, _, h in accuracy if h == hops})
        best = None
        for length in lengths:
            if not all(acc >= threshold for (L, _, h), acc in accuracy.items() if h == hops and L == length):
                break
            best = length
        out[hops] = {"length": best, "censored": best is not None and best == lengths[-1]}
    return out


def evaluate_grid(policy, env: EnvConfig, cfg: EvalConfig, reward: RewardConfig, engine=None,
                  threshold: float = EFFECTIVE_THRESHOLD) -> dict[str, Any]:
    """The depth x length x hops grid of ``policy`` (greedy pass@1 per cell).

    Returns ``{"cells": [{"hops", "length", "depth", "n", "correct", "accuracy", "ci": [lo, hi],
    "prompt_tokens", "context_tokens", "depth_actual", "verifier_errors", "example"}],
    "effective_context": {hops: {"length", "censored"}}, "threshold", "lengths", "depths", "hops",
    "verifier_errors", "engine", "time_s", "time_s_by_length": {L: s}}``. Episodes whose verifier
    failed count as wrong and are counted in ``verifier_errors``. ``engine``: reuse an open engine;
    otherwise one is built from ``cfg.engine`` and closed.
    """
    from rl.build import build_engine, build_reward, build_runner, build_task_source
    from rl.evaluate import solved
    from rl.rollout.base import SamplingParams
    from rl.rollout.chat import render_prompt

    if cfg.samples:
        raise ConfigError(f"config key 'eval.samples': the needle grid scores greedy pass@1 only; "
                          f"set eval.samples 0 (got {cfg.samples})")
    t0 = time.perf_counter()
    env = resolve_tokenizer_option(env)
    cells = grid_tasks(env, cfg)
    longest = max(len(render_prompt(policy.tokenizer, t.messages)) for ts in cells.values() for t in ts)
    own_engine = engine is None
    if own_engine:
        rollout = RolloutConfig(engine=cfg.engine, batch_size=max(1, min(64, TOKENS_PER_BATCH // longest)),
                                vllm=VLLMConfig(max_model_len=max(2048, longest + cfg.max_new_tokens)))
        engine = build_engine(rollout, policy)
    reward_fn = build_reward(env, reward)
    runner, close_envs = build_runner(env, engine, policy.tokenizer, build_task_source(env, cfg.seed, "eval"))
    greedy = SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=0.0,
                            stop_token_ids=(policy.tokenizer.eos_token_id,))
    results: list[dict[str, Any]] = []
    time_by_length: dict[int, float] = {}
    try:
        for length in sorted({L for L, _, _ in cells}):
            keys = [c for c in cells if c[0] == length]
            tasks = [t for c in keys for t in cells[c]]
            t_len = time.perf_counter()
            episodes = [g.episodes[0] for g in runner.run(tasks, 1, greedy)]
            time_by_length[length] = round(time.perf_counter() - t_len, 2)
            for e in episodes:
                reward_fn(e)
            at = 0
            for cell in keys:
                eps, at = episodes[at: at + len(cells[cell])], at + len(cells[cell])
                results.append(_cell_result(cell, eps, solved))
            print(f"needle grid: length {length}: {len(episodes)} episodes in {time_by_length[length]:.0f} s",
                  file=sys.stderr)
    finally:
        close_envs()
        if own_engine:
            engine.close()
    results.sort(key=lambda r: (r["hops"], r["length"], r["depth"]))
    accuracy = {(r["length"], r["depth"], r["hops"]): r["accuracy"] for r in results}
    options = env.options
    return {"lengths": list(options.lengths), "depths": list(options.depths), "hops": list(cfg.horizons),
            "n_per_cell": cfg.tasks_per_horizon, "threshold": threshold, "cells": results,
            "effective_context": effective_context(accuracy, threshold),
            "verifier_errors": sum(r["verifier_errors"] for r in results), "engine": engine.name,
            "time_s": round(time.perf_counter() - t0, 2), "time_s_by_length": time_by_length}


def _cell_result(cell: Cell, episodes, solved) -> dict[str, Any]:
    """One cell's entry of ``evaluate_grid``'s ``cells``."""
    length, depth, hops = cell
    n, correct = len(episodes), sum(solved(e) for e in episodes)
    first = episodes[0] if episodes else None
    return {
        "hops": hops, "length": length, "depth": depth, "n": n, "correct": correct,
        "accuracy": correct / n if n else 0.0, "ci": [round(x, 4) for x in wilson_interval(correct, n)],
        "prompt_tokens": _mean(len(e.turns[0].context_ids) for e in episodes if e.turns),
        "context_tokens": _mean(e.task.meta["context_tokens"] for e in episodes),
        "depth_actual": _mean(e.task.meta["depth_actual"] for e in episodes),
        "verifier_errors": sum(e.has_error("verifier") for e in episodes),
        "example": None if first is None else {"task_id": first.task.id, "answer": first.task.answer,
                                               "completion": first.final_text[:300]},
    }


def _mean(values) -> float | None:
    values = list(values)
    return round(statistics.fmean(values), 3) if values else None


def plot_grids(grids: dict[str, dict], path) -> None:
    """Heatmaps of accuracy, one row per labelled grid and one panel per hop count: depth on y
    (0 at the top), length on x, the effective context marked by a dashed line; saved at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    hops = sorted({h for g in grids.values() for h in g["hops"]})
    fig, axes = plt.subplots(len(grids), len(hops), squeeze=False, layout="constrained",
                             figsize=(1.4 + 3.4 * len(hops), 0.6 + 3.0 * len(grids)))
    image = None
    for row, (label, grid) in enumerate(grids.items()):
        lengths, depths = grid["lengths"], grid["depths"]
        for col, h in enumerate(hops):
            ax = axes[row][col]
            acc = np.full((len(depths), len(lengths)), np.nan)
            for c in grid["cells"]:
                if c["hops"] == h:
                    acc[depths.index(c["depth"]), lengths.index(c["length"])] = c["accuracy"]
            image = ax.imshow(acc, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
            for (i, j), v in np.ndenumerate(acc):
                if not np.isnan(v):
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7)
            eff = grid["effective_context"].get(h) or {}
            if eff.get("length") is not None:
                ax.axvline(lengths.index(eff["length"]) + 0.5, color="black", ls="--", lw=1)
            ax.set_xticks(range(len(lengths)), [f"{L // 1024}K" if L % 1024 == 0 else str(L) for L in lengths])
            ax.set_yticks(range(len(depths)), [f"{d:g}" for d in depths])
            if row == len(grids) - 1:
                ax.set_xlabel("context length (tokens)")
            if col == 0:
                ax.set_ylabel("needle depth")
            eff_text = "none" if eff.get("length") is None else f"{eff['length']}{'+' if eff.get('censored') else ''}"
            ax.set_title(f"{label}: {h} hop{'s' if h > 1 else ''}, effective {eff_text}", fontsize=8)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="accuracy (greedy)")
    fig.savefig(path, dpi=120)
    plt.close(fig)


def format_grid(label: str, result: dict[str, Any]) -> str:
    """A readable block per target: accuracy by length (rows: depth) for each hop count."""
    lines = []
    for h in result["hops"]:
        eff = result["effective_context"][h]
        lines.append(f"{label}, {h} hop(s): effective context {eff['length']}{'+' if eff['censored'] else ''} "
                     f"(every depth >= {result['threshold']})")
        lines.append("  depth " + " ".join(f"{L:>7}" for L in result["lengths"]))
        for d in result["depths"]:
            row = {c["length"]: c["accuracy"] for c in result["cells"] if c["hops"] == h and c["depth"] == d}
            lines.append(f"  {d:5.2f} " + " ".join(f"{row.get(L, float('nan')):7.2f}" for L in result["lengths"]))
    return "\n".join(lines)


def run_grid_job(cfg, targets, resume: bool = False, threshold: float = EFFECTIVE_THRESHOLD) -> Path:
    """``horizon eval`` for the needle env: the grid of every target (``rl.eval_job.Target``s) on the
    same held-out tasks; returns ``output_dir``. With ``resume``, targets already in
    ``needle_grid.json`` (``already_scored``) are not scored again."""
    from rl.eval_job import already_scored, job_settings, load_results, load_target, scored_as
    from rl.run.io import atomic_write_text

    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "needle_grid.json"
    doc = load_results(path, {**job_settings(cfg), "threshold": threshold}, "grids", resume)
    for target in targets:
        how = scored_as(target, cfg)
        if already_scored(doc["grids"].get(target.label), target, how):
            continue
        policy, step = load_target(target, cfg)
        result = evaluate_grid(policy, cfg.env, cfg.eval, cfg.reward, threshold=threshold)
        result.update(target=target.label, path=target.path, step=step, **how)
        doc["grids"][target.label] = json.loads(json.dumps(result))
        atomic_write_text(path, json.dumps(doc, indent=1))
        print(format_grid(target.label, result))
    grids = {label: {**g, "hops": [int(h) for h in g["hops"]],
                     "effective_context": {int(h): v for h, v in g["effective_context"].items()}}
             for label, g in doc["grids"].items()}
    plot_grids(grids, out / "needle_grid.png")
    return out
