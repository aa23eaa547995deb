"""A frozen PRM as a dense step reward inside the RL loop (process supervision).

``PRMScorer.score(groups)`` scores every step of every scored episode in batches and stores
the P(step correct) values in ``episode.step_rewards``; a batch that fails is recorded on its
episodes as a ``prm`` error (those episodes fall back to the outcome advantage, counted in
``errors/prm``), never as a silent 0. ``process_token_advantages`` then gives each sample its
per-token advantage: DeepSeekMath process advantages (``rl.algorithms.process``) mixed with
the episode's outcome advantage by ``reward.process_weight``.
"""

from __future__ import annotations

from rl.algorithms.process import mix_advantages, process_advantages, token_advantages_from_steps
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


def assign_process_values(groups: list[EpisodeGroup]) -> dict[int, list[float]]:
    """Per-episode (keyed by ``id``) to-go sums of group-normalised step rewards."""
    out: dict[int, list[float]] = {}
    for group in groups:
        rated = [e for e in group.scored if e.step_rewards]
        for episode, values in zip(rated, process_advantages([e.step_rewards for e in rated])):
            out[id(episode)] = values
    return out


def process_token_advantages(episode, sample, values_by_episode: dict[int, list[float]], weight: float):
    """The sample's per-token advantage; without PRM values (a PRM error, no steps, or a turn
    rendered as its own sample) the outcome share ``(1 - w) * A`` alone, so such samples do not
    outweigh their group-mates. Fallbacks are counted by ``count_fallbacks``."""
    values = values_by_episode.get(id(episode))
    if values is None or len(values) != len(sample.step_spans):
        return (1.0 - weight) * episode.advantage
    tokens = token_advantages_from_steps(sample.step_spans, values, len(sample), sample.loss_mask)
    return mix_advantages(episode.advantage, tokens, weight)
