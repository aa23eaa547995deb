"""A frozen PRM scoring the steps of sampled episodes (dense step rewards for RL).

``PRMScorer.score(groups)`` scores every step of every scored episode in batches and stores
the P(step correct) values in ``episode.step_rewards``; a batch that fails is recorded on its
episodes as a ``prm`` error (counted in ``errors/prm``; the trainer's process signal then gives
them no process credit), never as a silent 0. The trainer turns the step rewards into
per-token advantages (``rl.trainer.signals.ProcessReward``).
"""

from __future__ import annotations

from rl.types import EpisodeGroup


class PRMScorer:
    def __init__(self, path: str, device: str = "auto", dtype: str = "auto", batch_size: int = 16):
        from rewards.prm.model import load_prm

        self.prm, self.tokenizer = load_prm(path, device, dtype=dtype)
        self.batch_size = batch_size
        self.name = str(path)

    def score(self, groups: list[EpisodeGroup], world=None) -> None:
        """Set ``step_rewards`` on every scored episode with at least one step. With several
        data-parallel ranks (``world``, an ``rl.trainer.distributed.World``; every rank holds the same
        gathered groups) each rank scores its contiguous share and the values, or a chunk's error,
        are gathered, so every rank ends with all of them, each scored once."""
        episodes = [e for g in groups for e in g.scored if e.steps]
        mine = world.shard(range(len(episodes))) if world else range(len(episodes))
        results: list[tuple[int, list[float] | str]] = []  # (episode index, its values or the error)
        for start in range(0, len(mine), self.batch_size):
            index = list(mine[start:start + self.batch_size])
            chunk = [episodes[i] for i in index]
            try:
                scores = self.prm.step_scores(self.tokenizer, [e.task.messages for e in chunk],
                                              [[s.text for s in e.steps] for e in chunk],
                                              batch_size=self.batch_size)
                for episode, values in zip(chunk, scores):
                    if len(values) != len(episode.steps):
                        raise ValueError(f"PRM gave {len(values)} scores for {len(episode.steps)} steps")
                results += [(i, [float(v) for v in values]) for i, values in zip(index, scores)]
            except Exception as e:  # noqa: BLE001 - recorded on the episodes, the step goes on
                results += [(i, f"{type(e).__name__}: {e}") for i in index]
        for i, got in (world.gather(results) if world else results):  # gather: every rank's, in rank order
            if isinstance(got, str):
                episodes[i].step_rewards = None
                episodes[i].record_error("prm", got)
            else:
                episodes[i].step_rewards = got


class ExactLabelScorer:
    """The env's exact step labels as step rewards (1.0 a correct step, 0.0 a wrong one): a PRM
    that is never wrong, for envs that know their labels (``reward.prm: exact``). It bounds what
    a learned PRM can add, and is the dense signal itself where labels are free (synthetic tasks)."""

    name = "exact"

    def score(self, groups: list[EpisodeGroup], world=None) -> None:
        """Set ``step_rewards`` from ``step_labels`` (set by the reward function) on every scored
        episode whose labels cover its steps; others keep none (the signal then gives them no
        process credit and counts them in ``prm/fallback_samples``). Free, so every rank of a
        data-parallel ``world`` reads them all."""
        for group in groups:
            for episode in group.scored:
                episode.step_rewards = exact_step_rewards(episode)


def exact_step_rewards(episode) -> list[float] | None:
    """``episode``'s exact step labels as step rewards (1.0 right, 0.0 wrong); None when it has no
    labels or they do not cover its steps."""
    labels = episode.step_labels
    return [float(x) for x in labels] if labels and len(labels) == len(episode.steps) else None
