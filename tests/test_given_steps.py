"""rollout.given_steps: training tasks whose answer starts with the oracle's first k steps."""

import pytest

from envs.chain_math import ChainMathConfig, ChainMathSource, oracle_solution, step_labels
from envs.registry import load_spec as get_spec
from rl.config import EnvConfig, RewardConfig, load_config
from rl.errors import ConfigError
from rl.rollout.base import SamplingParams
from rl.rollout.chat import render_prompt
from rl.rollout.runner import Runner
from rl.trainer.config import TrainConfig
from rl.trainer.given_steps import give_oracle_steps, with_given_steps
from rl.types import split_steps
from test_runner import ScriptedEngine


def _tasks(n=40, low=1, high=6, seed=3):
    return ChainMathSource(ChainMathConfig(min_horizon=low, max_horizon=high), seed=seed).sample(n)


def test_given_steps_are_an_oracle_prefix_that_never_holds_the_answer():
    spec, tasks = get_spec("chain_math"), _tasks()
    given = give_oracle_steps(tasks, spec, max_given=8, seed=11)
    counts = set()
    for plain, task in zip(tasks, given):
        steps = split_steps(oracle_solution(plain))  # h lines then "#### answer"
        k = len(task.given_steps)
        counts.add(k)
        assert 0 <= k <= len(steps) - 1 and task.given_steps == steps[:k]
        if k:
            assert task.messages[:-1] == plain.messages and task.id == f"{plain.id}#given{k}"
            assert task.messages[-1] == {"role": "assistant", "content": "\n".join(steps[:k]) + "\n"}
            assert not any(s.startswith("####") for s in task.given_steps)
        else:
            assert task is plain
    assert len(counts) >= 4  # the draw spreads over positions
    # a cap, a fixed draw per seed, and 0 = off
    assert max(len(t.given_steps) for t in give_oracle_steps(tasks, spec, 2, seed=11)) == 2
    assert [t.id for t in give_oracle_steps(tasks, spec, 8, seed=11)] == [t.id for t in given]
    assert [t.id for t in give_oracle_steps(tasks, spec, 8, seed=12)] != [t.id for t in given]
    assert give_oracle_steps(tasks, spec, 0, seed=11) is tasks


def test_a_final_assistant_message_is_continued_not_closed(tokenizer):
    task = _tasks(1, 3, 3)[0]
    given = with_given_steps(task, split_steps(oracle_solution(task))[:2])
    ids = render_prompt(tokenizer, given.messages)
    plain = render_prompt(tokenizer, task.messages)
    assert ids[:len(plain)] == plain  # the same chat, the assistant header, then the given lines
    assert tokenizer.decode(ids[len(plain):]) == given.messages[-1]["content"]


def test_runner_prompts_with_the_given_steps_and_labels_count_them_first(tokenizer):
    from rl.build import build_reward

    task = _tasks(1, 4, 4, seed=5)[0]
    lines = split_steps(oracle_solution(task))  # 4 lines + answer
    given = with_given_steps(task, lines[:2])
    wrong_third = lines[2].rsplit("=", 1)[0] + "= 1000"
    engine = ScriptedEngine(tokenizer, ["\n".join(lines[2:]), "\n".join([wrong_third, *lines[3:]])])
    group = Runner(engine, tokenizer, get_spec("chain_math").make_source(ChainMathConfig(), 0).make_env).run(
        [given], group_size=2, params=SamplingParams())[0]
    assert group.episodes[0].turns[0].context_ids == render_prompt(tokenizer, given.messages)
    reward_fn = build_reward(EnvConfig(), RewardConfig(verifier_timeout_s=0))
    for episode in group.episodes:
        reward_fn(episode)
    right, wrong = group.episodes
    # labels of the completion's own steps only: lines 3, 4 and the answer
    assert right.step_labels == [True, True, True] and right.outcome.correct
    assert wrong.step_labels == step_labels(task, [*lines[:2], wrong_third, *lines[3:]])[2:] == [False, True, True]


def test_given_steps_need_an_env_with_an_oracle():
    cfg = load_config(TrainConfig, None, ["--rollout.given_steps", "4"])
    assert cfg.rollout.given_steps == 4
    with pytest.raises(ConfigError, match="rollout.given_steps"):
        load_config(TrainConfig, None, ["--rollout.given_steps", "-1"])
    with pytest.raises(ConfigError, match="rollout.given_steps.*no oracle"):
        load_config(TrainConfig, None, ["--rollout.given_steps", "2", "--env.name", "reasoning_gym"])
