"""Run many episodes at once: render prompts, call the engine once per turn, feed the envs.

Single-turn tasks take one engine call for all ``len(tasks) * group_size`` samples. Multi-turn
envs loop: each turn gathers the live episodes, renders their chats with the chat template,
calls the engine once for all of them, and feeds each env its completion. An env that raises
ends its episode with the error recorded on it (never a silent reward of 0).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from rl.rollout.base import RolloutEngine, SamplingParams
from rl.rollout.chat import render_prompt
from rl.rollout.steps import StepSplitter
from rl.types import Episode, EpisodeGroup, Message, Task, Turn


@dataclass
class _Live:
    episode: Episode
    env: object
    messages: list[Message]


class Runner:
    def __init__(self, engine: RolloutEngine, tokenizer, make_env, max_turns: int = 1,
                 step_splitter=None, env_timeout_s: float | None = 30.0):
        self.engine = engine
        self.tokenizer = tokenizer
        self.make_env = make_env
        self.max_turns = max_turns
        self.split_steps = step_splitter or StepSplitter(tokenizer)
        self.env_timeout_s = env_timeout_s

    def run(self, tasks: list[Task], group_size: int, params: SamplingParams) -> list[EpisodeGroup]:
        """Sample ``group_size`` episodes per task; returns one ``EpisodeGroup`` per task."""
        groups = [EpisodeGroup(task, []) for task in tasks]
        live: list[_Live] = []
        for gid, group in enumerate(groups):
            for _ in range(group_size):
                episode = Episode(task=group.task, group_id=gid)
                group.episodes.append(episode)
                try:
                    env = self.make_env(group.task)
                    live.append(_Live(episode, env, list(self._call(env.reset))))
                except Exception as e:  # noqa: BLE001 - recorded on the episode
                    episode.record_error("env", f"reset: {type(e).__name__}: {e}")
        for turn_index in range(self.max_turns):
            if not live:
                break
            contexts = [render_prompt(self.tokenizer, item.messages) for item in live]
            if turn_index == 0 and group_size > 1:
                # every live episode of a group shares its first prompt: sample n at once
                completions = self._first_turn(live, contexts, params, group_size)
            else:
                completions = [g[0] for g in self.engine.generate(contexts, params, n=1)]
            still_live = []
            for item, context, completion in zip(live, contexts, completions):
                turn = Turn(context, completion, self.split_steps(completion.token_ids))
                item.episode.turns.append(turn)
                try:
                    result = self._call(item.env.step, completion.text)
                except Exception as e:  # noqa: BLE001 - recorded on the episode
                    item.episode.record_error("env", f"step: {type(e).__name__}: {e}")
                    continue
                if result.done or turn_index + 1 == self.max_turns:
                    continue
                turn.observation = result.observation or []
                item.messages += [{"role": "assistant", "content": completion.text}, *turn.observation]
                still_live.append(item)
            live = still_live
        return groups

    def _call(self, fn, *args):
        """``fn(*args)`` with a wall-clock limit. In-process envs cannot be killed: a call that
        times out is abandoned on a daemon thread (its episode is marked, the step goes on);
        envs that run untrusted code must sandbox it themselves (subprocess + rlimits)."""
        if self.env_timeout_s is None:
            return fn(*args)
        box: dict = {}

        def target():
            try:
                box["value"] = fn(*args)
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
                box["error"] = e

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        thread.join(self.env_timeout_s)
        if thread.is_alive():
            raise TimeoutError(f"env call {getattr(fn, '__name__', fn)} took over {self.env_timeout_s:g} s")
        if "error" in box:
            raise box["error"]
        return box["value"]

    def _first_turn(self, live, contexts, params, group_size):
        # group live episodes by task so each distinct prompt is sent once with n samples
        order: dict[int, list[int]] = {}
        for i, item in enumerate(live):
            order.setdefault(item.episode.group_id, []).append(i)
        gids = list(order)
        results = self.engine.generate([contexts[order[g][0]] for g in gids], params, n=group_size)
        completions = [None] * len(live)
        for gid, samples in zip(gids, results):
            for i, completion in zip(order[gid], samples):
                completions[i] = completion
        return completions
