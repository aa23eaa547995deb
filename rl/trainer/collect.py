"""Collect and score one step's episodes, and the metrics of what was sampled.

``collect`` samples the step's groups (with DAPO's dynamic sampling when asked), ``score``
applies the env's reward function (and DAPO's overlong penalty), ``rollout_metrics`` and
``failure_message`` read the scored episodes.
"""

from __future__ import annotations

import statistics
from collections import defaultdict

import torch

from rewards.prm.scorer import exact_step_rewards
from rl.rollout.runner import Runner
from rl.trainer.distributed import ONE, World
from rl.trainer.given_steps import give_oracle_steps
from rl.trainer.signals import ProcessReward
from rl.types import EpisodeGroup


def step_seed(seed: int, step: int) -> int:
    """The sampling / shuffling seed of ``step``: a resumed run redraws what an uninterrupted one would."""
    return (seed * 1_000_003 + step * 7919) % 2**31


def collect(runner: Runner, source, cfg, params, step: int, reward_fn, world: World = ONE) -> tuple[list, list, dict]:
    """Sample and score one step's groups; returns ``(groups, dropped_groups, metrics)``.

    With ``algorithm.dynamic_sampling`` (DAPO), groups that carry no signal (``informative``) are
    set aside and new prompts are drawn until ``prompts_per_step`` informative groups are kept or
    ``max_sampling_rounds`` rounds ran (then the step trains on what it has).

    With several ranks (``world``), every rank draws the same tasks, rolls out and scores its
    share, and gets every rank's scored groups back, in task order: all ranks return the same.
    """
    algo, want = cfg.algorithm, cfg.rollout.prompts_per_step
    kept, dropped, rounds = [], [], 0
    step_credit = ProcessReward.collect_time_credit(cfg) if algo.dynamic_sampling else None
    while len(kept) < want and rounds < (algo.max_sampling_rounds if algo.dynamic_sampling else 1):
        round_seed = step_seed(cfg.seed, step) + 104_729 * rounds
        seed = round_seed + 15_485_863 * world.rank
        tasks = source.sample(want - len(kept) if rounds else want)
        # the same draw on every rank (round_seed has no rank term): ranks shard one list
        tasks = give_oracle_steps(tasks, cfg.env.spec, cfg.rollout.given_steps, round_seed)
        groups = runner.run(world.shard(tasks), cfg.rollout.group_size, params.with_seed(seed))
        score(groups, reward_fn, cfg)
        if world.size > 1:
            groups = world.gather(groups)
            for gid, group in enumerate(groups):  # the numbering one process gives a round's groups
                for episode in group.episodes:
                    episode.group_id = gid
        rounds += 1
        for group in groups:
            (kept if not algo.dynamic_sampling or informative(group, step_credit) else dropped).append(group)
    metrics = {"dynamic/rounds": float(rounds), "dynamic/dropped_groups": float(len(dropped))} \
        if algo.dynamic_sampling else {}
    return kept, dropped, metrics


def informative(group: EpisodeGroup, step_credit=None) -> bool:
    """Whether dynamic sampling keeps ``group``: DAPO keeps it when 0 < #correct < G (shaping terms
    such as format or length alone do not count; with ``reward.outcome: all_steps`` "correct" is a
    paid outcome, so a lucky answer is not). Beyond DAPO, with exact step labels (``step_credit``,
    the process signal's credit function) a group whose answers are all alike is kept too when
    some step gets non-zero process credit: all wrong, but some break later than others."""
    if len({paid(e) for e in group.scored}) > 1:
        return True
    if step_credit is None:
        return False
    rewards = [r for r in map(exact_step_rewards, group.scored) if r is not None]
    return any(a != 0.0 for row in step_credit(rewards) for a in row)


def paid(episode) -> bool:
    """Whether the outcome term paid ``episode`` for its answer: right, and with ``reward.outcome:
    all_steps`` not zeroed for a wrong step."""
    return bool(episode.outcome.correct) and episode.reward_terms.get("outcome", 1.0) > 0


def score(groups: list[EpisodeGroup], reward_fn, cfg=None) -> None:
    """Score every episode; with ``algorithm.overlong_buffer`` add DAPO's soft length penalty."""
    from rl.algorithms.shaping import overlong_penalty

    episodes = [e for g in groups for e in g.episodes]
    if hasattr(reward_fn, "score_many"):
        reward_fn.score_many(episodes)  # one call: a verifier with a process pool runs them at once
    else:
        for episode in episodes:
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
        # right answers with every step right; correct/mean minus this is the lucky share
        from rl.evaluate import all_steps_right

        out["correct/all_steps"] = statistics.fmean(all_steps_right(e) for e in scored)
    return out


def failure_message(groups: list[EpisodeGroup], max_failed_frac: float, step: int) -> str | None:
    """Why the run must stop, when more than ``max_failed_frac`` of the step's episodes could not
    be scored; None otherwise."""
    episodes = [e for g in groups for e in g.episodes]
    failed = [e for e in episodes if e.reward is None]
    if not episodes or len(failed) / len(episodes) <= max_failed_frac:
        return None
    kinds = sorted({err.kind for e in failed for err in e.errors})
    example = next((err.message for e in failed for err in e.errors), "no error recorded")
    return (f"step {step}: {len(failed)}/{len(episodes)} episodes could not be scored ({', '.join(kinds)}; "
            f"e.g. {example!r}), more than max_failed_frac={max_failed_frac}: fix the verifier/env "
            "(see rollouts/step_N.jsonl) or raise max_failed_frac")
