"""The policy-gradient trainer: collect -> score -> advantages -> update -> sync -> log -> checkpoint.

One loop for the whole algorithm table (``algorithm.preset``: grpo, dr_grpo, dapo, gspo, rloo,
reinforce_pp, ppo) and for on-policy distillation (``distill.teacher``): the group estimators
give one advantage per episode; PPO (``advantage: gae``) adds a value head and per-token GAE
advantages; KL-in-reward and the teacher's reverse KL make advantages per token too.

Each stage is a named function; ``train(cfg)`` only calls them in order. The policy is a LoRA
adapter on a frozen base (peft); the reference for the KL is the same model with the adapter
disabled, so no second copy is held. Groups whose episodes could not be scored keep only the
scored episodes in their baseline; those episodes get no gradient and are counted in
``errors/verifier`` / ``errors/env``.

Determinism: the task stream is position-based, the engine's sampling seed is derived from
(seed, step) and the minibatch shuffles from a generator seeded the same way, so a resumed run
redraws exactly what an uninterrupted one would.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch

from rl.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint, seed_everything
from rl.components import build_engine, build_reward, build_task_source, sampling_params
from rl.config import GRPOConfig
from rl.models import check_model_available, load_policy
from rl.rollout.runner import Runner
from rl.run_dir import RunDir
from rl.errors import ConfigError, RunAborted
from rl.faults import maybe_fail
from rl.types import Episode, EpisodeGroup, Sample


def step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step * 7919) % 2**31


# ---------------------------------------------------------------- stages


def collect(runner: Runner, source, cfg: GRPOConfig, params, step: int, reward_fn) -> tuple[list, list, dict]:
    """Sample and score one step's groups; returns ``(groups, dropped_groups, metrics)``.

    With ``algorithm.dynamic_sampling`` (DAPO), groups whose scored episodes are all correct or
    all wrong are set aside and new prompts are drawn until ``prompts_per_step`` informative groups are kept
    or ``max_sampling_rounds`` rounds ran (then the step trains on what it has).
    """
    algo, want = cfg.algorithm, cfg.rollout.prompts_per_step
    kept, dropped, rounds = [], [], 0
    while len(kept) < want and rounds < (algo.max_sampling_rounds if algo.dynamic_sampling else 1):
        seed = step_seed(cfg.seed, step) + 104_729 * rounds
        groups = runner.run(source.sample(want - len(kept) if rounds else want), cfg.rollout.group_size,
                            params.with_seed(seed))
        score(groups, reward_fn, cfg)
        rounds += 1
        for group in groups:
            # DAPO keeps a group when 0 < #correct < G: shaping terms (format, length) alone do not count
            informative = len({bool(e.outcome.correct) for e in group.scored}) > 1
            (kept if informative or not algo.dynamic_sampling else dropped).append(group)
    metrics = {"dynamic/rounds": float(rounds), "dynamic/dropped_groups": float(len(dropped))} \
        if algo.dynamic_sampling else {}
    return kept, dropped, metrics


def score(groups: list[EpisodeGroup], reward_fn, cfg: GRPOConfig | None = None) -> None:
    """Score every episode; with ``algorithm.overlong_buffer`` add DAPO's soft length penalty."""
    from rl.algorithms.shaping import overlong_penalty

    for group in groups:
        for episode in group.episodes:
            reward_fn(episode)
    if cfg is None or cfg.algorithm.overlong_buffer == 0:
        return
    scored = [e for g in groups for e in g.scored]
    if scored:
        # per-turn budget: the last turn's length (an episode's total may span several turns)
        lengths = torch.tensor([len(e.turns[-1].completion.token_ids) if e.turns else 0 for e in scored])
        penalties = overlong_penalty(lengths, cfg.rollout.max_new_tokens, cfg.algorithm.overlong_buffer,
                                     cfg.algorithm.overlong_penalty)
        for episode, penalty in zip(scored, penalties.tolist()):
            episode.reward_terms["overlong"] = penalty
            episode.reward += penalty


def assign_advantages(groups: list[EpisodeGroup], estimator: str) -> None:
    """Set ``episode.advantage`` from its group's scored rewards (unscored episodes: None).

    ``reinforce_pp`` then whitens all the step's advantages together (REINFORCE++'s global
    normalisation); ``gae`` (PPO) leaves them unset: its advantages are per token, from GAE.
    """
    from rl.algorithms.advantages import ADVANTAGE_ESTIMATORS, normalize_batch

    if estimator == "gae":
        return
    fn = ADVANTAGE_ESTIMATORS[estimator]
    for group in groups:
        scored = group.scored
        if not scored:
            continue
        advantages_g = fn(torch.tensor([e.reward for e in scored], dtype=torch.float32))
        for episode, adv in zip(scored, advantages_g.tolist()):
            episode.advantage = adv
    if estimator == "reinforce_pp":
        scored = [e for g in groups for e in g.scored]
        if scored:
            normalised = normalize_batch(torch.tensor([e.advantage for e in scored]))
            for episode, adv in zip(scored, normalised.tolist()):
                episode.advantage = adv


def training_samples(groups: list[EpisodeGroup], drop_zero_groups: bool, filter_truncated: bool = False,
                     per_token=None) -> tuple[list[Sample], list, list[float]]:
    """Flatten scored episodes into ``(samples, advantages, rewards)``.

    ``drop_zero_groups`` skips groups whose advantages are all 0 (no signal);
    ``filter_truncated`` leaves out episodes cut at the token limit (they stay in baselines);
    ``per_token(episode, sample)`` replaces the episode's scalar advantage (process rewards).
    """
    samples, advantages, rewards = [], [], []
    for group in groups:
        scored = group.scored
        if drop_zero_groups and all(e.advantage == 0.0 for e in scored):
            continue
        for episode in scored:
            if filter_truncated and episode.stop_reason == "length":
                continue
            for sample in episode.to_samples():
                samples.append(sample)
                advantage = episode.advantage if episode.advantage is not None else 0.0
                advantages.append(per_token(episode, sample) if per_token else advantage)
                rewards.append(episode.reward)
    return samples, advantages, rewards


def rollout_metrics(groups: list[EpisodeGroup], max_new_tokens: int) -> dict[str, float]:
    """Reward, correctness, length and error metrics of one step's episodes."""
    episodes = [e for g in groups for e in g.episodes]
    scored = [e for e in episodes if e.reward is not None]
    rewards = [e.reward for e in scored]
    lengths = [e.num_policy_tokens for e in episodes if e.turns]
    out: dict[str, float] = {
        "reward/mean": statistics.fmean(rewards) if rewards else float("nan"),
        "reward/std": statistics.pstdev(rewards) if len(rewards) > 1 else 0.0,
        "correct/mean": statistics.fmean(float(e.outcome.correct) for e in scored) if scored else float("nan"),
        "len/mean": statistics.fmean(lengths) if lengths else 0.0,
        "len/truncated_frac": statistics.fmean(e.stop_reason == "length" for e in episodes if e.turns)
        if lengths else 0.0,
        "errors/verifier": float(sum(e.has_error("verifier") for e in episodes)),
        "errors/env": float(sum(e.has_error("env") for e in episodes)),
        "errors/prm": float(sum(e.has_error("prm") for e in episodes)),
        "groups/zero_adv_frac": statistics.fmean(
            len({e.reward for e in g.scored}) == 1 for g in groups if g.scored
        ) if any(g.scored for g in groups) else 0.0,
    }
    for term in sorted({t for e in scored for t in e.reward_terms}):
        if term != "outcome":
            out[f"{term}/mean"] = statistics.fmean(e.reward_terms.get(term, 0.0) for e in scored)
    by_h: dict[int, list[float]] = defaultdict(list)
    for e in scored:
        if e.task.horizon is not None:
            by_h[e.task.horizon].append(float(e.outcome.correct))
    for h, values in sorted(by_h.items()):
        out[f"correct/h{h}"] = statistics.fmean(values)
    step_rewards = [r for e in scored if e.step_rewards for r in e.step_rewards]
    if step_rewards:
        out["prm/step_score_mean"] = statistics.fmean(step_rewards)
        out["prm/unscored_episodes"] = float(sum(not e.step_rewards for e in scored))
    labelled = [lab for e in scored if e.step_labels for lab in e.step_labels]
    if labelled:
        out["steps/correct_frac"] = statistics.fmean(labelled)
    return out


def check_failures(groups: list[EpisodeGroup], max_failed_frac: float, step: int) -> None:
    """Raise ``RunAborted`` when too many of the step's episodes could not be scored."""
    episodes = [e for g in groups for e in g.episodes]
    failed = [e for e in episodes if e.reward is None]
    if episodes and len(failed) / len(episodes) > max_failed_frac:
        kinds = sorted({err.kind for e in failed for err in e.errors})
        example = next((err.message for e in failed for err in e.errors), "no error recorded")
        raise RunAborted(
            f"step {step}: {len(failed)}/{len(episodes)} episodes could not be scored ({', '.join(kinds)}; "
            f"e.g. {example!r}), more than max_failed_frac={max_failed_frac}: fix the verifier/env "
            "(see rollouts/step_N.jsonl) or raise max_failed_frac"
        )


def _kl_in_reward(cfg: GRPOConfig) -> bool:
    return cfg.algorithm.kl_mode == "reward" and cfg.algorithm.kl_coef > 0


def dense_advantages(policy, value_head, samples, advantages, rewards, cfg: GRPOConfig):
    """Per-token advantages for PPO (GAE) or KL-in-reward; returns
    ``(advantages, returns | None, precomputed passes, metrics)``."""
    from rl.token_advantages import gae_targets, with_kl_reward
    from rl.update import needs_reference, reference_pass

    algo = cfg.algorithm
    precomputed = reference_pass(policy, samples, cfg.rollout.temperature, cfg.optim.micro_batch_size,
                                 need_old=True, need_ref=needs_reference(policy, algo), value_head=value_head)
    old, ref, values = precomputed
    if value_head is not None:
        advantages, returns, metrics = gae_targets(samples, rewards, old, ref, values, algo)
        return advantages, returns, precomputed, metrics
    advantages, metrics = with_kl_reward(samples, advantages, old, ref, algo)
    return advantages, None, precomputed, metrics


def _optimizer(policy, cfg: GRPOConfig, value_head=None):
    groups = [{"params": [p for p in policy.model.parameters() if p.requires_grad]}]
    if value_head is not None:  # a fresh head needs a far larger step than the LoRA weights
        groups.append({"params": list(value_head.parameters()), "lr": cfg.algorithm.value_lr})
    optimizer = torch.optim.AdamW(groups, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    warmup = cfg.optim.warmup_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / (warmup + 1)) if warmup else 1.0
    )
    return optimizer, scheduler


def _resume(run: RunDir, policy, optimizer, scheduler, source, extra=None) -> dict:
    """Restore the newest complete checkpoint; returns its state (``{"step": 0}`` if none)."""
    checkpoints = list_checkpoints(run.checkpoints)
    if not checkpoints:
        run.truncate_metrics_after(0)  # nothing to resume from: start the files over
        return {"step": 0}
    state = load_checkpoint(checkpoints[-1], policy, optimizer, scheduler, extra=extra)
    source.load_state_dict(state["source"])
    run.truncate_metrics_after(state["step"])
    return state


# ---------------------------------------------------------------- loop


def train(cfg: GRPOConfig, resume: bool = False) -> Path:
    """Run GRPO as configured; returns the run directory."""
    from rl.progress import Progress
    from rl.update import policy_update

    check_model_available(cfg.model)  # fail before any expensive work
    if cfg.distill.teacher:
        from rl.distill_online import check_same_tokenizer
        from rl.models import load_tokenizer

        check_model_available(cfg.distill.teacher)
        check_same_tokenizer(load_tokenizer(cfg.model), load_tokenizer(cfg.distill.teacher), cfg.distill.teacher)
    if not resume and (Path(cfg.output_dir) / "metrics.jsonl").exists():
        raise ConfigError(
            f"output_dir '{cfg.output_dir}' already holds a run: pass --resume to continue it, "
            "or choose a new --output_dir"
        )
    run = RunDir(cfg.output_dir)
    run.write_config(cfg)
    seed_everything(cfg.seed)
    source = build_task_source(cfg.env, cfg.seed)
    reward_fn = build_reward(cfg.env, cfg.reward)
    policy = load_policy(cfg.model, lora=cfg.lora, dtype=cfg.dtype, device=cfg.device)
    value_head = None
    if cfg.algorithm.advantage == "gae":
        from rl.value_head import build_value_head

        value_head = build_value_head(policy)
    extra = {"value_head": value_head} if value_head is not None else None
    optimizer, scheduler = _optimizer(policy, cfg, value_head)
    prm = None
    if cfg.reward.prm:
        from rl.process_rewards import PRMScorer

        prm = PRMScorer(cfg.reward.prm, device=cfg.device, dtype=cfg.dtype, batch_size=cfg.reward.prm_batch_size)
    teacher = None
    if cfg.distill.teacher:
        from rl.distill_online import TeacherScorer

        teacher = TeacherScorer(cfg.distill.teacher, policy.tokenizer, device=cfg.device, dtype=cfg.dtype)
    state = _resume(run, policy, optimizer, scheduler, source, extra) if resume else {"step": 0}
    start, nonfinite_streak = state["step"], state.get("nonfinite_streak", 0)
    train_s = state.get("train_s", 0.0)  # loop wall-clock so far, over every resume
    out_of_time = lambda: cfg.max_train_s is not None and train_s >= cfg.max_train_s  # noqa: E731
    engine = build_engine(cfg.rollout, policy, seed=cfg.seed)
    params = sampling_params(cfg.rollout, policy.tokenizer)
    make_env = source.make_env
    if cfg.env.isolation == "process":
        from rl.rollout.env_worker import ProcessEnvs

        make_env = ProcessEnvs(source.make_env, timeout_s=cfg.env.timeout_s)
    runner = Runner(engine, policy.tokenizer, make_env, env_timeout_s=cfg.env.timeout_s)
    try:
        with Progress(cfg.max_steps, start, enabled=cfg.progress) as progress:
            for step in range(start + 1, cfg.max_steps + 1):
                if out_of_time():
                    break  # the budget is spent (after the last step, or before a resume)
                t_step = time.perf_counter()
                groups, dropped, sampling_metrics = collect(runner, source, cfg, params, step, reward_fn)
                t_rollout = time.perf_counter() - t_step
                assign_advantages(groups, cfg.algorithm.advantage)
                per_token = None
                if prm is not None:
                    from rl.process_rewards import assign_process_values, process_token_advantages

                    prm.score(groups)
                    values = assign_process_values(groups)
                    per_token = lambda ep, sample: process_token_advantages(  # noqa: E731
                        ep, sample, values, cfg.reward.process_weight)
                run.write_rollouts(step, [e.to_record(step) for g in groups + dropped for e in g.episodes])
                check_failures(groups + dropped, cfg.max_failed_frac, step)
                # with a teacher every sample carries a dense signal: keep all-equal-reward groups
                samples, advantages, rewards = training_samples(
                    groups, cfg.algorithm.drop_zero_advantage_groups and teacher is None
                    and value_head is None and prm is None, cfg.algorithm.filter_truncated, per_token)
                dense_metrics, precomputed, returns = {}, None, None
                if teacher is not None and samples:
                    advantages, dense_metrics = teacher.advantages(
                        policy, samples, advantages, cfg.distill.coef, cfg.distill.outcome_coef,
                        cfg.rollout.temperature, cfg.optim.micro_batch_size)
                elif samples and (value_head is not None or _kl_in_reward(cfg)):
                    advantages, returns, precomputed, dense_metrics = dense_advantages(
                        policy, value_head, samples, advantages, rewards, cfg)
                generator = torch.Generator().manual_seed(step_seed(cfg.seed, step))
                update = policy_update(policy, optimizer, scheduler, samples, advantages,
                                       cfg.algorithm, cfg.optim, cfg.rollout.temperature,
                                       cfg.rollout.max_new_tokens, generator, value_head=value_head,
                                       returns=returns, precomputed=precomputed)
                maybe_fail("after_update", step)
                nonfinite_streak = nonfinite_streak + 1 if update.get("update/skipped_nonfinite") else 0
                if nonfinite_streak >= cfg.optim.max_nonfinite_streak:
                    raise RunAborted(
                        f"step {step}: {nonfinite_streak} updates in a row had a NaN/Inf gradient and "
                        "were skipped; lower optim.lr, check rewards in rollouts/, or resume from the "
                        "last checkpoint"
                    )
                engine.update_weights(policy)
                # every sampled episode counts in the rollout metrics, including groups that
                # dynamic sampling set aside (else DAPO's reward curve would only show kept ones)
                n_tokens = sum(e.num_policy_tokens for g in groups + dropped for e in g.episodes)
                metrics = {
                    **rollout_metrics(groups + dropped, cfg.rollout.max_new_tokens),
                    **update,
                    **dense_metrics,
                    **sampling_metrics,
                    "engine": engine.name,
                    "time/rollout_s": t_rollout,
                    "tokens_per_s/rollout": n_tokens / t_rollout if t_rollout > 0 else 0.0,
                    "train/samples": float(len(samples)),
                }
                metrics["time/step_s"] = time.perf_counter() - t_step
                train_s += metrics["time/step_s"]
                metrics["time/train_s"] = train_s
                row = run.log_metrics(step, metrics)
                if step % cfg.save_every == 0 or step == cfg.max_steps or out_of_time():
                    save_checkpoint(run.checkpoints, step, policy, optimizer, scheduler,
                                    {"source": source.state_dict(), "seed": cfg.seed,
                                     "nonfinite_streak": nonfinite_streak, "train_s": train_s},
                                    keep_last=cfg.keep_last, extra=extra)
                    maybe_fail("after_checkpoint", step)
                progress.advance(row)
    finally:
        engine.close()
        if cfg.env.isolation == "process":
            make_env.close()
    return run.path
