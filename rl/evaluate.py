"""Held-out evaluation: the horizon curve (pass@1 and pass@k per horizon, 95 % intervals) and ``h50``.

The eval tasks are the env's held-out split (``envs.base.SplitSource``): a task is held out by
a hash of its prompt, and every training stream of every job drops held-out tasks, so a
trained model is never scored on a problem it was trained on, whatever the seeds. Per horizon,
``tasks_per_horizon`` distinct tasks are drawn from the eval stream (``eval.seed``).

Example::

    result = evaluate_policy(policy, EnvConfig(), EvalConfig(horizons=[1, 2]), RewardConfig())
    result["pass@1"]      # {1: 0.95, 2: 0.75}           greedy
    result["pass@1_ci"]   # {1: [0.83, 0.99], 2: [...]}  Wilson 95 %
    result["h50"]         # 2.6 (interpolated), result["h50_ci"] == [2.1, 3.4]
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from rl.config import EnvConfig, EvalConfig, RewardConfig, RolloutConfig
from rl.curve_stats import h50_summary, pass_at_k, wilson_interval
from rl.types import Task


def eval_tasks(env: EnvConfig, cfg: EvalConfig) -> dict[int, list[Task]]:
    """``tasks_per_horizon`` distinct held-out tasks for each horizon in ``cfg.horizons``
    (fewer, with a warning, when the env's held-out split at that horizon has fewer)."""
    import sys

    from rl.build import build_task_source

    out = {}
    for h in cfg.horizons:
        source = build_task_source(env, cfg.seed, split="eval")
        source.set_horizon(h, h)
        seen: dict[str, Task] = {}
        for _ in range(20):  # a few rounds of redraws to replace duplicates of small task spaces
            for task in source.sample(cfg.tasks_per_horizon - len(seen)):
                seen.setdefault(task.messages[-1]["content"], task)
            if len(seen) == cfg.tasks_per_horizon:
                break
        if len(seen) < cfg.tasks_per_horizon:
            print(f"horizon eval: horizon {h} has only {len(seen)} distinct held-out tasks "
                  f"(asked for {cfg.tasks_per_horizon})", file=sys.stderr)
        out[h] = list(seen.values())
    return out


def eval_prompts(env: EnvConfig, cfg: EvalConfig) -> set[str]:
    """The user-message texts of every eval task (a second guard for data built outside horizon)."""
    return {t.messages[-1]["content"] for tasks in eval_tasks(env, cfg).values() for t in tasks}


def solved(episode) -> bool:
    """Whether ``episode`` counts as solved: the verifier said correct and nothing failed."""
    return episode.outcome is not None and bool(episode.outcome.correct) and not episode.has_error()


def all_steps_right(episode) -> bool:
    """Whether ``episode`` is solved with every step labelled right by the env's exact labeler
    (chain_math: line i holds the value after operation i, the last line the answer); False when
    it has no labels. A right answer reached through a wrong step (two slips that cancel, a
    skipped ``+3`` beside a ``-3``) is solved but not this: at long horizons, where few chains are
    right, such lucky answers can be most of pass@1."""
    return solved(episode) and bool(episode.step_labels) and all(episode.step_labels)


def evaluate_policy(policy, env: EnvConfig, cfg: EvalConfig, reward: RewardConfig, engine=None,
                    progress: str | None = None, keep_completions: bool = False) -> dict[str, Any]:
    """The horizon curve of ``policy`` on held-out tasks.

    Returns ``{"pass@1": {h: rate}, "pass@1_ci": {h: [lo, hi]}, "n_per_horizon": {h: n},
    "h50", "h50_ci": [lo, hi], "h50_censored", "verifier_errors", "engine", "time_s",
    "examples": {h: {prompt, completion, answer}}}``; with ``cfg.samples = n > 0`` also
    ``"pass@k": {k: {h: rate}}`` and ``"pass@k_ci"`` (unbiased estimator over n samples at
    ``cfg.temperature``, k in ``cfg.k`` up to n). pass@1 is greedy. Where the env labels steps
    exactly, also ``"pass@1_all_steps"``, ``"pass@1_all_steps_ci"``, ``"h50_all_steps"`` and
    ``"h50_all_steps_ci"``: the same greedy curve counting only completions whose every step is
    right (``all_steps_right``). Episodes whose verifier
    failed count as not solved and are reported in ``verifier_errors`` (never silently).
    ``engine``: reuse an open engine; otherwise one is built from ``cfg.engine`` and closed.
    ``progress``: a label for a progress bar over the generations (with an ETA); None: no bar.
    ``keep_completions``: also return ``"completions"``, one record per greedy generation
    (horizon, task_id, prompt, completion, answer, solved, all_steps_right), for reading what the
    model got wrong.
    """
    from rl.build import build_engine, build_reward, build_runner, build_task_source
    from rl.rollout.base import SamplingParams
    from rl.run.progress import WorkBar

    t0 = time.perf_counter()
    own_engine = engine is None
    if own_engine:
        engine = build_engine(RolloutConfig(engine=cfg.engine), policy)
    reward_fn = build_reward(env, reward)
    runner, close_envs = build_runner(env, engine, policy.tokenizer, build_task_source(env, cfg.seed, "eval"))
    stop = (policy.tokenizer.eos_token_id,)
    greedy = SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=0.0, stop_token_ids=stop)
    sampled = SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, seed=cfg.seed,
                             stop_token_ids=stop)
    ks = [k for k in cfg.k if k <= cfg.samples]
    result: dict[str, Any] = {"pass@1": {}, "pass@1_ci": {}, "n_per_horizon": {}, "verifier_errors": 0,
                              "engine": engine.name, "examples": {}}
    if keep_completions:
        result["completions"] = []
    if ks:
        result.update({"samples": cfg.samples, "temperature": cfg.temperature,
                       "pass@k": {k: {} for k in ks}, "pass@k_ci": {k: {} for k in ks}})
    counts: dict[int, tuple[int, int]] = {}
    steps_counts: dict[int, tuple[int, int]] = {}  # the all-steps-right curve, where the env labels steps

    def score(episodes) -> int:
        """Score ``episodes`` in place, count verifier failures; returns how many were solved."""
        reward_fn.score_many(episodes)  # one call: a verifier with a process pool runs them at once
        result["verifier_errors"] += sum(e.has_error("verifier") for e in episodes)
        return sum(solved(e) for e in episodes)

    labelled = reward_fn.step_labeler is not None  # the env labels steps exactly (chain_math)
    by_horizon = eval_tasks(env, cfg)
    # a generation's cost grows with the horizon (one line per step): weigh each task by h
    work = {h: len(tasks) * max(1, h if isinstance(h, int) else 1) for h, tasks in by_horizon.items()}
    total = sum(w * (1 + cfg.samples) for w in work.values())
    with WorkBar(f"eval {progress}", total, enabled=progress is not None) as bar:
        try:
            for h, tasks in by_horizon.items():
                episodes = [g.episodes[0] for g in runner.run(tasks, 1, greedy)]
                bar.advance(work[h], f"h={h} greedy")
                n_solved = score(episodes)
                counts[h] = (n_solved, len(episodes))
                result["n_per_horizon"][h] = len(episodes)
                result["pass@1"][h] = n_solved / len(episodes)
                result["pass@1_ci"][h] = [round(x, 4) for x in wilson_interval(n_solved, len(episodes))]
                chains = [all_steps_right(e) if labelled else None for e in episodes]
                if labelled:
                    steps_counts[h] = (sum(chains), len(episodes))
                    result.setdefault("pass@1_all_steps", {})[h] = sum(chains) / len(episodes)
                    result.setdefault("pass@1_all_steps_ci", {})[h] = [
                        round(x, 4) for x in wilson_interval(sum(chains), len(episodes))]
                result["examples"][h] = {"prompt": tasks[0].messages[-1]["content"],
                                         "completion": episodes[0].final_text, "answer": tasks[0].answer}
                if keep_completions:
                    result["completions"] += [{"horizon": h, "task_id": e.task.id,
                                               "prompt": e.task.messages[-1]["content"],
                                               "completion": e.final_text, "answer": e.task.answer,
                                               "solved": solved(e), "all_steps_right": right}
                                              for e, right in zip(episodes, chains)]
                if ks:
                    groups = runner.run(tasks, cfg.samples, sampled.with_seed(cfg.seed + h))
                    bar.advance(work[h] * cfg.samples, f"h={h} sampled")
                    correct = [(len(g.episodes), score(g.episodes)) for g in groups]
                    for k in ks:
                        rate = statistics.fmean(pass_at_k(n, c, k) for n, c in correct)
                        result["pass@k"][k][h] = rate
                        result["pass@k_ci"][k][h] = [round(x, 4)
                                                     for x in wilson_interval(rate * len(correct), len(correct))]
        finally:
            close_envs()
            if own_engine:
                engine.close()
    summary = h50_summary(counts)
    result.update(h50=summary["h50"], h50_ci=[summary["low"], summary["high"]], h50_censored=summary["censored"])
    if steps_counts:
        summary = h50_summary(steps_counts)
        result.update(h50_all_steps=summary["h50"], h50_all_steps_ci=[summary["low"], summary["high"]])
    result["time_s"] = time.perf_counter() - t0
    return result


def plot_horizon_curves(curves: dict[str, dict], path, title: str = "",
                        intervals: dict[str, dict] | None = None) -> None:
    """One line per labelled curve of pass@1 against horizon (with 95 % error bars where
    ``intervals[label]`` gives ``{h: [lo, hi]}``), saved as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    all_hs: set[int] = set()
    for label, curve in curves.items():
        rate = {int(h): v for h, v in curve.items()}
        hs = sorted(rate)
        all_hs.update(hs)
        ys = [rate[h] for h in hs]
        ci = {int(h): v for h, v in ((intervals or {}).get(label) or {}).items()}
        if ci and all(h in ci for h in hs):
            err = [[y - ci[h][0] for h, y in zip(hs, ys)], [ci[h][1] - y for h, y in zip(hs, ys)]]
            ax.errorbar(hs, ys, yerr=err, marker="o", capsize=3, label=label)
        else:
            ax.plot(hs, ys, marker="o", label=label)
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("horizon (dependent steps)")
    ax.set_ylabel("held-out pass@1 (greedy)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(all_hs), [str(h) for h in sorted(all_hs)])
    ax.minorticks_off()
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
