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

    def score(self, groups: list[EpisodeGroup]) -> None:
        """Set ``step_rewards`` on every scored episode with at least one step."""
        episodes = [e for g in groups for e in g.scored if e.steps]
        for start in range(0, len(episodes), self.batch_size):
            chunk = episodes[start:start + self.batch_size]
            try:
                scores = self.prm.step_scores(self.tokenizer, [e.task.messages for e in chunk],
                                              [[s.text for s in e.steps] for e in chunk],
                                              batch_size=self.batch_size)
                for episode, values in zip(chunk, scores):
                    if len(values) != len(episode.steps):
                        raise ValueError(f"PRM gave {len(values)} scores for {len(episode.steps)} steps")
                    episode.step_rewards = values
            except Exception as e:  # noqa: BLE001 - recorded on the episodes, the step goes on
                for episode in chunk:
                    episode.step_rewards = None
                    episode.record_error("prm", f"{type(e).__name__}: {e}")
