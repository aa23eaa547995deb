"""The PRM pipeline end to end on tiny-random, and a PRM as dense reward inside GRPO."""

import json

import pytest

from rl.config import load_config
from rl.trainer.config import TrainConfig
from rl.errors import ConfigError
from rl.run.io import read_jsonl


@pytest.fixture(scope="module")
def tiny_prm(tmp_path_factory, tiny_path):
    from rl.prm.config import PRMConfig
    from rl.prm.pipeline import run_prm

    out = tmp_path_factory.mktemp("prm")
    cfg = load_config(PRMConfig, "recipes/configs/prm_chain_math.yaml", [
        "--sampler", str(tiny_path), "--output_dir", str(out), "--num_tasks", "3", "--mc_k", "2",
        "--eval_tasks", "2", "--best_of_n", "2", "--rollout.engine", "hf", "--rollout.max_new_tokens", "16",
        "--dtype", "float32", "--device", "cpu", "--progress", "false"])
    return run_prm(cfg)


def test_prm_pipeline_writes_labels_prm_and_eval(tiny_prm):
    from datasets import load_from_disk

    labels = load_from_disk(str(tiny_prm / "labels"))
    for row in labels:
        assert len(row["labels"]) == len(row["completions"]) == len(row["soft_labels"]) == len(row["exact_labels"])
    summary = json.loads((tiny_prm / "summary.json").read_text())
    assert set(summary) == {"label", "train", "eval"} and summary["train"]["steps"] >= 1
    result = json.loads((tiny_prm / "eval" / "prm.json").read_text())
    assert {"prm", "position_baseline", "arithmetic_baseline", "best_of_n"} <= set(result)
    assert set(result["best_of_n"]) == {"n", "pass@1", "majority", "prm_min", "prm_last", "prm_product"}
    assert (tiny_prm / "eval" / "calibration.png").stat().st_size > 0


def test_grpo_with_a_prm_logs_step_scores(tiny_prm, tiny_path, tmp_path):
    from rl.trainer.loop import train

    cfg = load_config(TrainConfig, None, [
        "--model", str(tiny_path), "--output_dir", str(tmp_path / "run"), "--max_steps", "1",
        "--rollout.engine", "hf", "--rollout.prompts_per_step", "2", "--rollout.group_size", "2",
        "--rollout.max_new_tokens", "24", "--progress", "false", "--dtype", "float32",
        "--reward.prm", str(tiny_prm / "prm"), "--algorithm.drop_zero_advantage_groups", "true"])
    (row,) = read_jsonl(train(cfg) / "metrics.jsonl")
    assert row["errors/prm"] == 0.0 and 0.0 < row["prm/step_score_mean"] < 1.0
    assert row["train/samples"] == 4.0  # with step rewards no group is dropped as all-equal


def test_prm_scorer_failure_is_recorded_not_raised(tiny_prm):
    from rewards.prm.scorer import PRMScorer
    from rl.types import Completion, Episode, EpisodeGroup, Step, Task, Turn

    scorer = PRMScorer(str(tiny_prm / "prm"), device="cpu", dtype="float32")
    scorer.prm.step_scores = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("PRM exploded"))
    task = Task(id="t", messages=[{"role": "user", "content": "x"}], answer="1")
    episode = Episode(task=task, group_id=0, reward=1.0,
                      turns=[Turn([1], Completion([2], [0.0], "a", "stop"), steps=[Step("a", 0, 1)])])
    scorer.score([EpisodeGroup(task, [episode])])
    assert episode.step_rewards is None and episode.errors[0].kind == "prm"
    assert "PRM exploded" in episode.errors[0].message


def test_prm_scoring_is_split_over_data_parallel_ranks():
    """Two ranks holding the same groups each score their share once; after the gather both hold
    every episode's values (and a failed chunk's error), equal to one process scoring them all. The
    ranks are simulated in one process (a scripted gather); chunks here align with the shards, as a
    failed chunk's error covers the episodes of that chunk, which move with the world size."""
    from rewards.prm.scorer import PRMScorer
    from rl.trainer.distributed import World
    from rl.types import Completion, Episode, EpisodeGroup, Step, Task, Turn

    def groups():
        task = Task(id="t", messages=[{"role": "user", "content": "x"}], answer="1")
        def episode(e):  # e + 1 steps; the text of step j is "e.j"
            steps = [Step(f"{e}.{j}", j, j + 1) for j in range(e + 1)]
            return Episode(task=task, group_id=0, reward=1.0,
                           turns=[Turn([1], Completion([2] * (e + 1), [0.0] * (e + 1), "a", "stop"), steps=steps)])
        return [EpisodeGroup(task, [episode(e) for e in range(g * 3, g * 3 + 3)]) for g in range(2)]

    seen: list[str] = []

    class FakePRM:  # P(step right) = 0.1 * episode + 0.01 * step; the chunk holding episode 5 fails
        def step_scores(self, tokenizer, messages, steps, batch_size):
            seen.extend(s[0] for s in steps)
            if any(s[0] == "5.0" for s in steps):
                raise RuntimeError("PRM exploded")
            return [[int(t.split(".")[0]) / 10 + int(t.split(".")[1]) / 100 for t in s] for s in steps]

    sent: dict[int, list] = {0: [], 1: []}

    class TwoRanks(World):  # the gather returns what each rank has sent so far, in rank order
        def gather(self, local):
            sent[self.rank] = list(local)
            return [*sent[0], *sent[1]]

    scorer = PRMScorer.__new__(PRMScorer)
    scorer.prm, scorer.tokenizer, scorer.batch_size = FakePRM(), None, 3
    one = groups()
    scorer.score(one)
    assert len(seen) == 6
    seen.clear()
    scorer.score(groups(), world=TwoRanks(1, 2))  # rank 1 sends its half first
    assert seen == ["3.0", "4.0", "5.0"]  # rank 1 scored only its half
    seen.clear()
    rank0 = groups()
    scorer.score(rank0, world=TwoRanks(0, 2))
    assert seen == ["0.0", "1.0", "2.0"]  # and rank 0 only its own, yet holds every result
    rank1 = groups()
    scorer.score(rank1, world=TwoRanks(1, 2))  # rank 1 again, now that rank 0 has sent: it holds them all too
    for ranked in (rank0, rank1):
        for a, b in zip((e for g in one for e in g.episodes), (e for g in ranked for e in g.episodes)):
            assert a.step_rewards == b.step_rewards and [x.message for x in a.errors] == [x.message for x in b.errors]
    assert rank0[0].episodes[1].step_rewards == pytest.approx([0.1, 0.11])
    assert rank0[1].episodes[2].step_rewards is None and rank0[1].episodes[2].errors[0].kind == "prm"


def test_bad_prm_path_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="reward.prm.*not a saved PRM"):
        load_config(TrainConfig, None, ["--reward.prm", str(tmp_path)])
    with pytest.raises(ConfigError, match="reward.prm"):
        load_config(TrainConfig, None, ["--reward.prm", str(tmp_path), "--algorithm", "ppo",
                                       "--rollout.group_size", "1"])


def test_inspect_prm_recipe_prints_ranked_samples(tiny_prm, tiny_path, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "recipes" / "inspect_prm.py"
    spec = importlib.util.spec_from_file_location("inspect_prm", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--prm", str(tiny_prm / "prm"), "--sampler", str(tiny_path), "--tasks", "2", "--n", "3",
                        "--engine", "hf"]) == 0
    out = capsys.readouterr().out
    assert out.count("samples right)") == 2 and "#1 " in out and "min=" in out
