"""Runner with a scripted engine (no model): turns, steps, masks and recorded env errors."""

from envs.base import SingleTurnEnv, StepResult
from rl.rollout.base import SamplingParams
from rl.rollout.runner import Runner, render_prompt
from rl.types import Completion, Task

TASKS = [Task(id=f"t{i}", messages=[{"role": "user", "content": f"q{i}"}], answer="1") for i in range(2)]


class ScriptedEngine:
    """Replays fixed texts (tokenised with the real tokenizer) and records every call."""

    name = "scripted"

    def __init__(self, tokenizer, texts):
        self.tokenizer, self.texts, self.calls = tokenizer, list(texts), []

    def generate(self, prompts, params, n=1):
        self.calls.append((len(prompts), n))
        out = []
        for _ in prompts:
            group = []
            for _ in range(n):
                ids = self.tokenizer(self.texts.pop(0), add_special_tokens=False)["input_ids"]
                ids.append(self.tokenizer.eos_token_id)
                group.append(Completion(ids, [-1.0] * len(ids), self.tokenizer.decode(ids, skip_special_tokens=True), "stop"))
            out.append(group)
        return out

    def update_weights(self, policy):
        pass

    def close(self):
        pass


def test_single_turn_one_engine_call_with_n_and_line_steps(tokenizer):
    engine = ScriptedEngine(tokenizer, ["3 + 4 = 7\n#### 7", "a\n\nb\n", "x", "y"])
    groups = Runner(engine, tokenizer, SingleTurnEnv).run(TASKS, group_size=2, params=SamplingParams())
    assert engine.calls == [(2, 2)]  # one call: 2 distinct prompts, 2 samples each
    first = groups[0].episodes[0]
    assert first.turns[0].context_ids == render_prompt(tokenizer, TASKS[0].messages)
    assert [s.text for s in first.steps] == ["3 + 4 = 7", "#### 7"]
    # step spans decode back to their lines; the EOS token is not part of the last step
    ids = first.turns[0].completion.token_ids
    assert [tokenizer.decode(ids[s.token_start:s.token_end]).strip() for s in first.steps] == ["3 + 4 = 7", "#### 7"]
    assert [s.text for s in groups[0].episodes[1].steps] == ["a", "b"]


class ToolEnv:
    """Two turns: replies with a tool message, then ends."""

    def __init__(self, task):
        self.task, self.turns = task, 0

    def reset(self):
        return list(self.task.messages)

    def step(self, action):
        self.turns += 1
        if self.turns == 1:
            return StepResult([{"role": "user", "content": "tool says 42"}], done=False)
        return StepResult(None, done=True)


def test_multi_turn_appends_observation_and_masks_env_tokens(tokenizer):
    engine = ScriptedEngine(tokenizer, ["call tool", "done"])
    (group,) = Runner(engine, tokenizer, ToolEnv, max_turns=3).run(TASKS[:1], 1, SamplingParams())
    ep = group.episodes[0]
    assert len(ep.turns) == 2 and ep.turns[0].observation[0]["content"] == "tool says 42"
    samples = ep.to_samples()
    policy_tokens = sum(s.num_policy_tokens for s in samples)
    assert policy_tokens == ep.num_policy_tokens  # env tokens never count as policy tokens
    second_context = tokenizer.decode(ep.turns[1].context_ids)
    assert "tool says 42" in second_context and "call tool" in second_context


class BrokenEnv(SingleTurnEnv):
    def step(self, action):
        raise KeyError("grader crashed")


def test_env_error_is_recorded_not_raised(tokenizer):
    engine = ScriptedEngine(tokenizer, ["a", "b"])
    (group,) = Runner(engine, tokenizer, BrokenEnv).run(TASKS[:1], 2, SamplingParams())
    for ep in group.episodes:
        assert ep.errors[0].kind == "env" and "grader crashed" in ep.errors[0].message


def test_max_turns_stops_an_env_that_never_finishes(tokenizer):
    class Endless(ToolEnv):
        def step(self, action):
            return StepResult([{"role": "user", "content": "more"}], done=False)

    engine = ScriptedEngine(tokenizer, ["1", "2", "3"])
    (group,) = Runner(engine, tokenizer, Endless, max_turns=3).run(TASKS[:1], 1, SamplingParams())
    assert len(group.episodes[0].turns) == 3 and engine.texts == []


class HangingEnv(SingleTurnEnv):
    def step(self, action):
        import time

        time.sleep(30)


def test_hanging_env_is_abandoned_and_recorded(tokenizer):
    engine = ScriptedEngine(tokenizer, ["a", "b"])
    runner = Runner(engine, tokenizer, HangingEnv, env_timeout_s=0.2)
    (group,) = runner.run(TASKS[:1], 2, SamplingParams())
    for ep in group.episodes:
        assert ep.errors[0].kind == "env" and "took over 0.2 s" in ep.errors[0].message
