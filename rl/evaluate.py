"""Held-out evaluation: greedy pass@1 per horizon (the horizon curve) and ``h50``.

The eval tasks come from the env's task stream under ``eval.seed`` (a stream separate from
training), ``tasks_per_horizon`` per horizon. ``eval_prompts`` lets data generation leave
these exact prompts out of training sets, so a trained model is never scored on a problem it
was fine-tuned on.

Example::

    result = evaluate_policy(policy, EnvConfig(), EvalConfig(horizons=[1, 2]), RewardConfig())
    result["pass@1"]      # {"1": 0.95, "2": 0.75}
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from rl.config import EnvConfig, EvalConfig, RewardConfig, RolloutConfig
from rl.types import Task


def eval_tasks(env: EnvConfig, cfg: EvalConfig) -> dict[int, list[Task]]:
    """``tasks_per_horizon`` held-out tasks for each horizon in ``cfg.horizons``."""
    from rl.build import build_task_source

    out = {}
    for h in cfg.horizons:
        source = build_task_source(env, cfg.seed)
        source.set_horizon(h, h)
        out[h] = source.sample(cfg.tasks_per_horizon)
    return out


def eval_prompts(env: EnvConfig, cfg: EvalConfig) -> set[str]:
    """The user-message texts of every eval task (to keep them out of training data)."""
    return {t.messages[-1]["content"] for tasks in eval_tasks(env, cfg).values() for t in tasks}


def h50(pass_at_1: dict[int, float]) -> int | None:
    """The longest horizon solved at >= 50%, counting up from the shortest (None if none)."""
    best = None
    for h in sorted(pass_at_1):
        if pass_at_1[h] < 0.5:
            break
        best = h
    return best


def evaluate_policy(policy, env: EnvConfig, cfg: EvalConfig, reward: RewardConfig,
                    engine=None) -> dict[str, Any]:
    """Greedy pass@1 of ``policy`` per horizon on held-out tasks.

    Returns ``{"pass@1": {h: rate}, "h50", "n_per_horizon", "verifier_errors", "engine",
    "time_s", "examples": {h: first completion}}``. Episodes whose verifier failed count as
    not solved and are reported in ``verifier_errors`` (never silently).
    ``engine``: reuse an open engine; otherwise one is built from ``cfg.engine`` and closed.
    """
    from rl.build import build_engine, build_reward, build_runner, build_task_source
    from rl.rollout.base import SamplingParams

    t0 = time.perf_counter()
    own_engine = engine is None
    if own_engine:
        engine = build_engine(RolloutConfig(engine=cfg.engine), policy)
    reward_fn = build_reward(env, reward)
    source = build_task_source(env, cfg.seed)
    runner, close_envs = build_runner(env, engine, policy.tokenizer, source)
    params = SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=0.0,
                            stop_token_ids=(policy.tokenizer.eos_token_id,))
    result: dict[str, Any] = {"pass@1": {}, "n_per_horizon": cfg.tasks_per_horizon,
                              "verifier_errors": 0, "engine": engine.name, "examples": {}}
    try:
        for h, tasks in eval_tasks(env, cfg).items():
            episodes = [g.episodes[0] for g in runner.run(tasks, 1, params)]
            for e in episodes:
                reward_fn(e)
            result["verifier_errors"] += sum(e.has_error("verifier") for e in episodes)
            result["pass@1"][h] = statistics.fmean(
                float(e.outcome is not None and e.outcome.correct and not e.has_error()) for e in episodes)
            result["examples"][h] = {"prompt": tasks[0].messages[-1]["content"],
                                     "completion": episodes[0].final_text, "answer": tasks[0].answer}
    finally:
        close_envs()
        if own_engine:
            engine.close()
    result["h50"] = h50(result["pass@1"])
    result["time_s"] = time.perf_counter() - t0
    return result


def plot_horizon_curves(curves: dict[str, dict[int, float]], path, title: str = "") -> None:
    """One line per labelled curve of pass@1 against horizon, saved as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, curve in curves.items():
        hs = sorted(int(h) for h in curve)
        ax.plot(hs, [curve[h] if h in curve else curve[str(h)] for h in hs], marker="o", label=label)
    ax.set_xlabel("horizon (dependent steps)")
    ax.set_ylabel("pass@1 (greedy)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xscale("log", base=2)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
