"""The policy-gradient trainer: collect -> score -> credit -> update -> sync -> log -> checkpoint.

One loop for the whole algorithm table (``algorithm.preset``: grpo, dr_grpo, dapo, gspo, rloo,
reinforce_pp, ppo) and for on-policy distillation (``distill.teacher``). Credit is one path:
the configured signals (``rl.trainer.credit``: group estimators, GAE, KL in the reward, PRM
process advantages, the teacher's reverse KL) each give per-token advantages, summed into the
batch the update trains on; ``train`` never branches on which signals they are. An SFT anchor
(``anchor.traces``, ``rl.trainer.anchor``) adds a supervised loss on fixed traces to each update.

The policy is a LoRA adapter on a frozen base (peft); the reference for the KL is the same
model with the adapter disabled, so no second copy is held. Groups whose episodes could not
be scored keep only the scored episodes in their baseline; those episodes get no gradient and
are counted in ``errors/verifier`` / ``errors/env``. ``rollouts/step_N.jsonl`` is written after
credit assignment: each episode's row carries the advantages the update used.

Determinism: the task stream is position-based, the engine's sampling seed is derived from
(seed, step) and the minibatch shuffles from a generator seeded the same way, so a resumed run
redraws exactly what an uninterrupted one would.

Data parallel (``accelerate launch --num_processes N``): ranks split each step's groups for
rollout and its micro-batches for the update, and sum their gradients (``rl.trainer.distributed``);
rank 0 writes the run directory. The task stream does not depend on the world size, so a run
resumes with any world size that divides ``rollout.prompts_per_step``.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from envs.curriculum import CurriculumSource
from rl.build import build_engine, build_reward, build_runner, build_task_source, sampling_params
from rl.errors import ConfigError, DataError, RunAborted
from rl.models import check_model_available, load_policy
from rl.run.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint, seed_everything
from rl.run.faults import maybe_fail
from rl.run.run_dir import RunDir
from rl.traces import load_traces
from rl.trainer.anchor import SFTAnchor
from rl.trainer.batch import TrainBatch
from rl.trainer.collect import collect, failure_message, rollout_metrics, step_seed
from rl.trainer.config import TrainConfig
from rl.trainer.credit import (assign_credit, build_signals, drop_zero_credit_groups, enabled_signals,
                               rollout_records, trainable_modules)
from rl.trainer.distributed import ONE, World
from rl.trainer.schedule import LRSchedule, budget_spent


def _optimizer(policy, cfg: TrainConfig, modules: dict):
    """``(optimizer, scheduler, schedule)``: the policy's (and a value head's) optimizer, the LambdaLR that
    counts updates and holds the base rates (both checkpointed), and the ``LRSchedule`` the loop sets each
    update's rate from."""
    groups = [{"params": [p for p in policy.model.parameters() if p.requires_grad]}]
    if "value_head" in modules:  # a fresh head needs a far larger step than the LoRA weights
        groups.append({"params": list(modules["value_head"].parameters()), "lr": cfg.algorithm.value_lr})
    o = cfg.optim
    if o.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    else:
        optimizer = torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.adam_betas), eps=o.adam_eps,
                                      weight_decay=o.weight_decay)
    # the scheduler counts the updates (checkpointed) and holds the base rates; the loop sets each
    # update's rate from them and the budget spent (LRSchedule.apply), which a step count alone cannot give
    schedule = LRSchedule(o)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: schedule.factor(s, 0.0))
    return optimizer, scheduler, schedule


def _resume(run: RunDir, policy, optimizer, scheduler, source, extra=None, world: World = ONE) -> dict:
    """Restore the newest complete checkpoint; returns its state (``{"step": 0}`` if none).
    Every rank loads the same checkpoint; rank 0 rewrites the metrics file."""
    checkpoints = list_checkpoints(run.checkpoints)
    if not checkpoints:
        if world.is_main:
            run.truncate_metrics_after(0)  # nothing to resume from: start the files over
        return {"step": 0}
    state = load_checkpoint(checkpoints[-1], policy, optimizer, scheduler, extra=extra)
    source.load_state_dict(state["source"])
    if world.is_main:
        run.truncate_metrics_after(state["step"])
    return state


# ---------------------------------------------------------------- loop


def _check_before_loading(cfg: TrainConfig, resume: bool, world: World = ONE) -> None:
    check_model_available(cfg.model, cfg.rope_scaling)
    if cfg.rollout.prompts_per_step % world.size:
        raise ConfigError(f"config key 'rollout.prompts_per_step': {cfg.rollout.prompts_per_step} prompts do not "
                          f"split over {world.size} processes: use a multiple of {world.size}, or launch a "
                          "number of processes that divides it")
    if cfg.curriculum.enabled:  # the env must accept every level the curriculum may reach
        build_task_source(cfg.env, cfg.seed).set_horizon(cfg.curriculum.min_level, cfg.curriculum.max_level)
    if cfg.anchor.traces:  # a missing or unusable dataset fails here, before the model loads
        try:
            load_traces(cfg.anchor.traces)
        except DataError as e:
            raise ConfigError(f"config key 'anchor.traces': {e}") from e
    for cls in enabled_signals(cfg):
        if hasattr(cls, "check_models"):
            cls.check_models(cfg)
    if not resume and (Path(cfg.output_dir) / "metrics.jsonl").exists():
        raise ConfigError(
            f"output_dir '{cfg.output_dir}' already holds a run: pass --resume to continue it, "
            "or choose a new --output_dir"
        )


def train(cfg: TrainConfig, resume: bool = False) -> Path:
    """Run policy-gradient training as configured; returns the run directory."""
    from rl.run.progress import Progress
    from rl.trainer.update import policy_update

    world = World.from_env()  # one process, or the ranks `accelerate launch` started
    _check_before_loading(cfg, resume, world)  # fail before any expensive work
    run = RunDir(cfg.output_dir, report_to=cfg.report_to, config=cfg)  # trackers open on rank 0's first log
    if world.is_main:
        run.write_config(cfg)
    seed_everything(cfg.seed)
    source = build_task_source(cfg.env, cfg.seed)
    if cfg.curriculum.enabled:
        source = CurriculumSource(source, cfg.curriculum, cfg.seed)
    reward_fn = build_reward(cfg.env, cfg.reward)
    policy = load_policy(cfg.model, lora=cfg.lora, dtype=cfg.dtype, device=cfg.device, rope_scaling=cfg.rope_scaling,
                         gradient_checkpointing=cfg.optim.gradient_checkpointing)
    anchor = SFTAnchor.load(cfg.anchor, policy.tokenizer) if cfg.anchor.traces else None
    signals = build_signals(cfg, policy)
    modules = trainable_modules(signals)  # PPO's value head: optimised and checkpointed with the policy
    value_head = modules.get("value_head")
    optimizer, scheduler, schedule = _optimizer(policy, cfg, modules)
    state = _resume(run, policy, optimizer, scheduler, source, modules or None, world) if resume else {"step": 0}
    start, nonfinite_streak = state["step"], state.get("nonfinite_streak", 0)
    train_s = state.get("train_s", 0.0)  # loop wall-clock so far, over every resume
    out_of_time = lambda: cfg.max_train_s is not None and train_s >= cfg.max_train_s  # noqa: E731
    engine, close_envs = None, (lambda: None)
    try:
        engine = build_engine(cfg.rollout, policy, seed=cfg.seed)
        params = sampling_params(cfg.rollout, policy.tokenizer)
        runner, close_envs = build_runner(cfg.env, engine, policy.tokenizer, source)
        show = cfg.progress and world.is_main
        with Progress(cfg.max_steps, start, enabled=show, budget_s=cfg.max_train_s) as progress:
            for step in range(start + 1, cfg.max_steps + 1):
                if out_of_time():
                    break  # the budget is spent (after the last step, or before a resume)
                t_step = time.perf_counter()
                groups, dropped, sampling_metrics = collect(runner, source, cfg, params, step, reward_fn, world)
                t_rollout = time.perf_counter() - t_step
                if cfg.curriculum.enabled:  # before the checkpoint below, which saves the level
                    sampling_metrics.update(source.observe(groups + dropped))
                batch = TrainBatch.from_groups(groups, policy, cfg.rollout.temperature, cfg.optim.micro_batch_size,
                                               value_head, cfg.algorithm.filter_truncated, cfg.optim.share_prompt,
                                               world)
                failure = failure_message(groups + dropped, cfg.max_failed_frac, step)
                if failure and world.is_main:  # the evidence goes to disk first
                    run.write_rollouts(step, [e.to_record(step) for g in groups + dropped for e in g.episodes])
                if failure:
                    raise RunAborted(failure)
                credit = assign_credit(batch, signals)
                dropped_zero = 0
                if cfg.algorithm.drop_zero_advantage_groups:
                    batch, credit, dropped_zero = drop_zero_credit_groups(batch, credit)
                if world.is_main:
                    run.write_rollouts(step, rollout_records(step, batch, credit, dropped))
                generator = torch.Generator().manual_seed(step_seed(cfg.seed, step))
                schedule.apply(optimizer, scheduler.base_lrs, scheduler.last_epoch,
                               budget_spent(step - 1, cfg.max_steps, train_s, cfg.max_train_s))
                update = policy_update(policy, optimizer, scheduler, batch, credit.advantages, cfg.algorithm,
                                       cfg.optim, cfg.rollout.max_new_tokens, generator, returns=credit.returns,
                                       anchor=anchor, world=world)
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
                    **credit.metrics,
                    **sampling_metrics,
                    "engine": engine.name,
                    "time/rollout_s": t_rollout,
                    "tokens_per_s/rollout": n_tokens / t_rollout if t_rollout > 0 else 0.0,
                    "train/samples": float(len(batch)),
                    "groups/dropped_zero_credit": float(dropped_zero),
                }
                # the slowest rank's time: every rank must count the same budget, or they would stop apart
                metrics["time/step_s"] = world.max(time.perf_counter() - t_step)
                train_s += metrics["time/step_s"]
                metrics["time/train_s"] = train_s
                row = run.log_metrics(step, metrics) if world.is_main else metrics
                if world.is_main and (step % cfg.save_every == 0 or step == cfg.max_steps or out_of_time()):
                    save_checkpoint(run.checkpoints, step, policy, optimizer, scheduler,
                                    {"source": source.state_dict(), "seed": cfg.seed,
                                     "nonfinite_streak": nonfinite_streak, "train_s": train_s},
                                    keep_last=cfg.keep_last, extra=modules or None)
                    maybe_fail("after_checkpoint", step)
                progress.advance(row)
    finally:
        if engine is not None:
            engine.close()
        close_envs()
        run.close()
    return run.path
