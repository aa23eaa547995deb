"""The algorithm table in the trainer: presets, dynamic sampling, KL in reward, PPO, REINFORCE++."""

import pytest
import torch

from rl.config import load_config
from rl.trainer.config import ALGORITHM_PRESETS, AlgorithmConfig, TrainConfig
from rl.errors import ConfigError
from rl.rollout.base import SamplingParams
from rl.run.io import read_jsonl
from rl.trainer.batch import TrainBatch
from rl.trainer.collect import collect, score
from rl.trainer.signals import GAE, GroupAdvantage, KLReward
from rl.types import Episode, EpisodeGroup, Sample, Task


def test_presets_fill_keys_and_explicit_keys_win(tmp_path):
    cfg = load_config(TrainConfig, None, ["--algorithm", "ppo", "--rollout.group_size", "1"])
    assert cfg.algorithm.preset == "ppo" and cfg.algorithm.advantage == "gae"
    assert cfg.algorithm.kl_mode == "reward" and cfg.algorithm.epochs == 2
    cfg = load_config(TrainConfig, None, ["--algorithm.preset", "dapo", "--algorithm.clip_high", "0.3"])
    assert cfg.algorithm.dynamic_sampling and cfg.algorithm.clip_high == 0.3
    assert cfg.algorithm.overlong_buffer == ALGORITHM_PRESETS["dapo"]["overlong_buffer"]
    yaml = tmp_path / "c.yaml"
    yaml.write_text("algorithm: gspo\n")
    assert load_config(TrainConfig, yaml).algorithm.ratio_level == "sequence"
    yaml.write_text("algorithm:\n  preset: grpo\n  kl_coef: 0.0\n")
    cfg = load_config(TrainConfig, yaml, ["--algorithm", "rloo"])  # CLI preset over a YAML section
    assert cfg.algorithm.advantage == "rloo" and cfg.algorithm.kl_coef == 0.0
    for name in ALGORITHM_PRESETS:  # every preset builds a valid config
        load_config(TrainConfig, None, ["--algorithm", name])


def test_incompatible_algorithm_options_are_refused():
    with pytest.raises(ConfigError, match="algorithm.preset.*not one of"):
        load_config(TrainConfig, None, ["--algorithm", "trpo"])
    with pytest.raises(ConfigError, match="rollout.group_size.*only PPO"):
        load_config(TrainConfig, None, ["--rollout.group_size", "1"])
    with pytest.raises(ConfigError, match="GSPO"):
        load_config(TrainConfig, None, ["--algorithm", "ppo", "--algorithm.ratio_level", "sequence"])
    with pytest.raises(ConfigError, match="vf_coef"):
        load_config(TrainConfig, None, ["--algorithm", "ppo", "--algorithm.vf_coef", "0"])
    with pytest.raises(ConfigError, match="overlong_buffer"):
        load_config(TrainConfig, None, ["--algorithm", "dapo", "--rollout.max_new_tokens", "16"])
    with pytest.raises(ConfigError, match="PPO"):
        load_config(TrainConfig, None, ["--algorithm", "ppo", "--distill.teacher", "tiny-random"])
    with pytest.raises(ConfigError, match="ratio is exactly 1"):
        load_config(TrainConfig, None, ["--algorithm", "gspo", "--algorithm.minibatches", "1"])
    with pytest.raises(ConfigError, match="dynamic_sampling"):
        load_config(TrainConfig, None, ["--algorithm", "dapo", "--distill.teacher", "tiny-random"])
    assert AlgorithmConfig.from_preset("ppo", epochs=4).advantage == "gae"


class _ScriptedRunner:
    """Each task's episodes get rewards from the task's number: informative iff it is odd."""

    def __init__(self):
        self.calls = []

    def run(self, tasks, group_size, params):
        self.calls.append([t.id for t in tasks])
        return [EpisodeGroup(t, [Episode(task=t, group_id=g) for _ in range(group_size)])
                for g, t in enumerate(tasks)]


class _Counter:
    def __init__(self):
        self.position = 0

    def sample(self, n):
        tasks = [Task(id=str(self.position + i), messages=[], answer="") for i in range(n)]
        self.position += n
        return tasks


def test_dynamic_sampling_refills_with_new_prompts():
    counts = {}

    def reward_fn(episode):  # odd task numbers: wrong, right, ...; even: all wrong (format differs)
        from rl.types import Outcome

        k = counts[episode.task.id] = counts.get(episode.task.id, -1) + 1
        correct = int(episode.task.id) % 2 == 1 and k % 2 == 1
        episode.outcome = Outcome(score=float(correct), correct=correct)
        episode.reward = float(correct) + 0.1 * (k % 2)  # a format term alone keeps no group

    cfg = load_config(TrainConfig, None, ["--algorithm", "dapo", "--rollout.prompts_per_step", "3",
                                         "--rollout.group_size", "2", "--algorithm.max_sampling_rounds", "3"])
    runner, source = _ScriptedRunner(), _Counter()
    groups, dropped, metrics = collect(runner, source, cfg, SamplingParams(), 1, reward_fn)
    # round 1: tasks 0,1,2 -> keeps 1; round 2: 3,4 -> keeps 3; round 3: 5 -> keeps 5
    assert runner.calls == [["0", "1", "2"], ["3", "4"], ["5"]]
    assert [g.task.id for g in groups] == ["1", "3", "5"]
    assert [g.task.id for g in dropped] == ["0", "2", "4"]
    assert metrics == {"dynamic/rounds": 3.0, "dynamic/dropped_groups": 3.0}
    # without dynamic sampling: one round, every group kept
    cfg = load_config(TrainConfig, None, ["--rollout.prompts_per_step", "3", "--rollout.group_size", "2"])
    groups, dropped, metrics = collect(_ScriptedRunner(), _Counter(), cfg, SamplingParams(), 1, reward_fn)
    assert len(groups) == 3 and dropped == [] and metrics == {}


TASK_L = Task(id="l", messages=[], answer="")


def _labelled_group(answers_right: bool, labels_g: list[list[int]]) -> EpisodeGroup:
    """One group whose episodes all have the same answer verdict and the given exact step labels."""
    from rl.types import Completion, Outcome, Step, Turn

    episodes = []
    for labels in labels_g:
        steps = [Step(f"s{j}", j, j + 1) for j in range(len(labels))]
        episode = Episode(task=TASK_L, group_id=0, turns=[Turn([], Completion([1] * len(labels), [0.0] * len(labels),
                                                                              "", "stop"), steps)])
        episode.outcome = Outcome(score=float(answers_right), correct=answers_right)
        episode.reward, episode.step_labels = float(answers_right), [bool(x) for x in labels]
        episodes.append(episode)
    return EpisodeGroup(TASK_L, episodes)


def test_dynamic_sampling_with_exact_step_labels_keeps_groups_whose_steps_get_credit():
    """All answers wrong in every group below, so DAPO alone drops them all. first_error credit,
    by hand: [1,1,0] vs [1,0,0]: step 0 both right (0); step 1 peers 1 and 0, baseline .5 -> +/-.5:
    kept. [0,1] vs [0,0]: step 0 both wrong (0), no peer reaches step 1: no credit, dropped.
    to_go credit (DeepSeekMath) normalises over all the group's step rewards, so it ranks steps within
    one episode too: [0,1] vs [0,0] (rewards [0,1,0,0]) and even two alike [1,0] get credit: kept;
    only when every step reward of the group is equal ([1,1] twice) is there none."""
    from rl.algorithms.process import first_error_advantages, process_advantages
    from rl.trainer.collect import informative
    from rl.trainer.signals import ProcessReward

    breaks_later, same_break, alike = ([[1, 1, 0], [1, 0, 0]], [[0, 1], [0, 0]], [[1, 0], [1, 0]])
    assert not informative(_labelled_group(False, breaks_later))  # DAPO's rule alone
    assert informative(_labelled_group(False, breaks_later), first_error_advantages)
    assert not informative(_labelled_group(False, same_break), first_error_advantages)
    assert not informative(_labelled_group(False, alike), first_error_advantages)
    assert informative(_labelled_group(False, same_break), process_advantages)
    assert informative(_labelled_group(False, alike), process_advantages)
    assert not informative(_labelled_group(True, [[1, 1], [1, 1]]), process_advantages)
    cfg = load_config(TrainConfig, None, ["--algorithm", "dapo", "--reward.prm", "exact",
                                         "--reward.process_credit", "first_error"])
    assert ProcessReward.collect_time_credit(cfg) is first_error_advantages
    assert ProcessReward.collect_time_credit(load_config(TrainConfig, None, ["--algorithm", "dapo"])) is None


def test_dynamic_sampling_refuses_a_learned_prm(tmp_path):
    """A learned PRM scores steps at train time, after collect has chosen the groups."""
    (tmp_path / "prm_config.json").write_text("{}")
    with pytest.raises(ConfigError, match="config key 'algorithm.dynamic_sampling'.*reward.prm: exact"):
        load_config(TrainConfig, None, ["--algorithm", "dapo", "--reward.prm", str(tmp_path)])


def test_overlong_penalty_is_a_logged_reward_term():
    from rl.types import Completion, Turn

    cfg = load_config(TrainConfig, None, ["--algorithm", "dapo", "--rollout.max_new_tokens", "40",
                                         "--algorithm.overlong_buffer", "20"])
    task = Task(id="t", messages=[], answer="")
    episodes = [Episode(task=task, group_id=0, turns=[Turn([], Completion([1] * n, [0.0] * n, "", "stop"))])
                for n in (10, 30, 45)]

    def reward_fn(e):
        e.reward, e.reward_terms = 1.0, {"outcome": 1.0}

    score([EpisodeGroup(task, episodes)], reward_fn, cfg)
    # 10 <= 40 - 20: no penalty; 30: (20 - 30) / 20 = -0.5; 45 > 40: -1
    assert [e.reward_terms["overlong"] for e in episodes] == [0.0, -0.5, -1.0]
    assert [e.reward for e in episodes] == [1.0, 0.5, 0.0]


def test_reinforce_pp_whitens_across_the_batch():
    task = Task(id="t", messages=[], answer="")
    groups = []
    for rewards in ([1.0, 0.0], [3.0, 1.0]):
        episodes = [Episode(task=task, group_id=0) for _ in rewards]
        for e, r in zip(episodes, rewards):
            e.reward = r
        groups.append(EpisodeGroup(task, episodes))
    by_episode = GroupAdvantage("reinforce_pp").episode_advantages(groups)
    # group-centred: [0.5, -0.5, 1, -1]; batch mean 0, population std sqrt(0.625)
    expected = torch.tensor([0.5, -0.5, 1.0, -1.0]) / 0.625 ** 0.5
    got = torch.tensor([by_episode[(g, e)] for g in range(2) for e in range(2)])
    assert torch.allclose(got, expected, atol=1e-6)


def _sample(n_prompt, n_policy):
    return Sample([0] * (n_prompt + n_policy), [0] * n_prompt + [1] * n_policy, [0.0] * (n_prompt + n_policy), [])


def _batch(samples, rewards, **passes):
    """A batch of one-sample episodes with the given rewards and precomputed passes (no model)."""
    task = Task(id="t", messages=[], answer="")
    episodes = [Episode(task=task, group_id=0, reward=r) for r in rewards]
    return TrainBatch(samples, [(0, e) for e in range(len(samples))], [EpisodeGroup(task, episodes)],
                      policy=None, temperature=1.0, micro_batch_size=8, _passes=passes)


def test_kl_in_reward_worked_example():
    old = [torch.tensor([0.0, -1.0, -2.0, -1.0])]
    ref = [torch.tensor([9.0, -1.5, -2.0, -0.5])]  # position 0 is a prompt token: ignored
    # k1 = old - ref on policy tokens: [., 0.5, 0, -0.5]; x 0.1 = [., 0.05, 0, -0.05]
    # reward-to-go: t1: 0.05 + 0 - 0.05 = 0; t2: -0.05; t3: -0.05; A_t = -to-go
    out = KLReward(kl_coef=0.1, estimator="k1")(_batch([_sample(1, 3)], [1.0], old=old, ref=ref))
    assert out.advantages[0].tolist() == pytest.approx([0.0, 0.0, 0.05, 0.05])
    assert out.metrics["kl_reward/mean"] == pytest.approx(0.0)


def test_gae_targets_put_the_outcome_on_the_last_token():
    algo = AlgorithmConfig(advantage="gae", gamma=1.0, lam=1.0, whiten_advantages=False, kl_coef=0.0)
    values = [torch.tensor([0.0, 0.2, 0.4, 0.6]), torch.tensor([0.0, 0.0, 0.5])]
    out = GAE(algo, value_head=None)(_batch([_sample(1, 3), _sample(1, 2)], [1.0, -1.0], values=values))
    # gamma = lam = 1: A_t = R - V_t with R the episode's reward at every policy token
    assert out.advantages[0].tolist() == pytest.approx([0.0, 0.8, 0.6, 0.4])
    assert out.advantages[1].tolist() == pytest.approx([0.0, -1.0, -1.5])
    assert out.returns[0].tolist() == pytest.approx([0.0, 1.0, 1.0, 1.0])
    assert "value/explained_var" in out.metrics


SMALL = ["--rollout.engine", "hf", "--rollout.prompts_per_step", "2", "--rollout.max_new_tokens", "8",
         "--progress", "false", "--dtype", "float32", "--optim.micro_batch_size", "4", "--save_every", "1"]


def _length_reward(episode):
    """A reward tiny-random can earn: it varies with the completion, so values have a target."""
    from rl.types import Outcome

    episode.outcome = Outcome(score=0.0, correct=False)
    episode.reward_terms = {"outcome": 0.0}
    episode.reward = float(episode.num_policy_tokens % 3)


def test_ppo_trains_a_value_head_and_resumes_it(tmp_path, tiny_path, monkeypatch):
    import rl.trainer.loop
    from rl.trainer.loop import train

    monkeypatch.setattr(rl.trainer.loop, "build_reward", lambda env, reward: _length_reward)

    args = ["--model", str(tiny_path), "--output_dir", str(tmp_path / "run"), "--algorithm", "ppo",
            "--rollout.group_size", "2", "--rollout.temperature", "2.0", *SMALL]
    cfg = load_config(TrainConfig, None, [*args, "--max_steps", "2"])
    run = train(cfg)
    rows = list(read_jsonl(run / "metrics.jsonl"))
    assert all("value/loss" in r and "value/explained_var" in r and "kl_reward/mean" in r for r in rows)
    head = torch.load(run / "checkpoints" / "step_2" / "value_head.pt")
    assert set(head) == {"linear.weight", "linear.bias"} and head["linear.weight"].abs().sum() > 0
    # resuming puts the trained head (not a fresh zero one) back
    from rl.trainer.loop import _optimizer, _resume
    from rl.models import load_policy
    from rl.run.run_dir import RunDir
    from rl.trainer.value_head import build_value_head
    from rl.build import build_task_source

    policy = load_policy(str(tiny_path), lora=cfg.lora, dtype="float32", device="cpu")
    fresh = build_value_head(policy)
    optimizer, scheduler, _ = _optimizer(policy, cfg, {"value_head": fresh})
    _resume(RunDir(run), policy, optimizer, scheduler, build_task_source(cfg.env, cfg.seed), {"value_head": fresh})
    assert torch.equal(fresh.linear.weight, head["linear.weight"].to(fresh.linear.weight.dtype))
    cfg = load_config(TrainConfig, None, [*args, "--max_steps", "3"])
    rows = list(read_jsonl(train(cfg, resume=True) / "metrics.jsonl"))
    assert [r["step"] for r in rows] == [1, 2, 3]


@pytest.mark.parametrize("prm", [[], ["--reward.prm", "exact", "--reward.process_credit", "first_error"]])
def test_dapo_gives_up_after_max_rounds_of_uninformative_groups(tmp_path, tiny_path, prm):
    from rl.trainer.loop import train

    cfg = load_config(TrainConfig, None, [
        "--model", str(tiny_path), "--output_dir", str(tmp_path / "run"), "--algorithm", "dapo",
        "--rollout.group_size", "2", "--reward.format_weight", "0", "--algorithm.overlong_buffer", "0",
        "--algorithm.max_sampling_rounds", "2", "--max_steps", "1", *prm, *SMALL])
    (row,) = read_jsonl(train(cfg) / "metrics.jsonl")
    # tiny-random never answers correctly and never writes a right first step: every group is
    # all-zero (and, with exact labels, has no step credit), both rounds are spent
    assert row["dynamic/rounds"] == 2.0 and row["dynamic/dropped_groups"] == 4.0
    assert row["update/skipped_empty"] == 1.0
