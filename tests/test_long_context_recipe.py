"""The long_context recipe end to end on tiny-random (native 2048, YaRN x2 -> 4096): zero-shot grids
with and without YaRN, SFT with YaRN on, GRPO from the student, their grids, the report, resume."""

import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "recipes"))

TINY = ["--model", "tiny-random", "--stages", "[eval_base, eval_yarn, distill, eval_sft, rl, eval_rl, report]",
        "--grid.tokenizer", "tiny-random", "--grid.lengths", "[128, 256]", "--eval.max_new_tokens", "8",
        "--distill.env.tokenizer", "tiny-random", "--distill.env.lengths", "[128]", "--distill.num_tasks", "4",
        "--distill.eval.tasks_per_horizon", "2", "--distill.sft.max_steps", "2", "--distill.sft.max_length", "384",
        "--distill.progress", "false",
        "--rl.env.tokenizer", "tiny-random", "--rl.env.lengths", "[128]", "--rl.max_steps", "2",
        "--rl.progress", "false", "--rl.rollout.engine", "hf", "--rl.rollout.prompts_per_step", "2",
        "--rl.rollout.group_size", "2", "--rl.rollout.max_new_tokens", "8"]


def test_long_context_recipe_end_to_end_and_resume(tmp_path, capsys, monkeypatch):
    import long_context

    import rl.models

    loaded = []  # (model, rope type asked for) of every policy the evals and the trainer load
    real_load = rl.models.load_policy

    def spy(name, **kwargs):
        rope = kwargs.get("rope_scaling")
        loaded.append((Path(name).name, getattr(rope, "type", None)))
        return real_load(name, **kwargs)

    monkeypatch.setattr(rl.models, "load_policy", spy)
    out = tmp_path / "lc"
    assert long_context.main(["--preset", "quick", "--output_dir", str(out), *TINY]) == 0
    state = json.loads((out / "state.json").read_text())
    assert list(state) == ["eval_base", "eval_yarn", "distill", "eval_sft", "rl", "eval_rl"]
    assert state["eval_base"]["value"]["rope_scaling"] == "none"
    assert state["eval_yarn"]["value"]["rope_scaling"] == "yarn"
    assert ("tiny-random", "none") in loaded and ("tiny-random", "yarn") in loaded
    assert state["distill"]["value"]["steps"] == 2

    # the student keeps YaRN in its config.json; the RL run records it and loads it unchanged
    student = json.loads((out / "distill" / "model" / "config.json").read_text())
    assert student["rope_parameters"]["rope_type"] == "yarn" and student["rope_parameters"]["factor"] == 2.0
    assert student["rope_parameters"]["original_max_position_embeddings"] == 2048
    assert student["max_position_embeddings"] == 4096
    run_cfg = yaml.safe_load((out / "rl" / "config.yaml").read_text())
    assert run_cfg["rope_scaling"]["type"] == "yarn" and run_cfg["optim"]["gradient_checkpointing"] is True
    assert len((out / "rl" / "metrics.jsonl").read_text().splitlines()) == 2

    grids = json.loads((out / "eval" / "needle_grid.json").read_text())["grids"]
    assert list(grids) == ["base", "base+yarn", "yarn+SFT", "yarn+SFT+RL"]
    for g in grids.values():
        assert {(c["length"], c["n"]) for c in g["cells"]} == {(128, 1), (256, 1)}
    assert grids["yarn+SFT+RL"]["step"] == 2
    report = (out / "report.md").read_text()
    assert all(f"| {label} |" in report for label in grids) and "acc @ 256" in report
    assert (out / "eval" / "needle_grid.png").stat().st_size > 0

    # a second run resumes: nothing is redone; a run without --resume refuses the directory
    capsys.readouterr()
    assert long_context.main(["--preset", "quick", "--output_dir", str(out), *TINY, "--resume"]) == 0
    assert "=== long_context:" not in capsys.readouterr().out
    assert long_context.main(["--preset", "quick", "--output_dir", str(out), *TINY]) == 2
    assert "pass --resume" in capsys.readouterr().err


def test_recipe_config_errors_name_the_key(tmp_path, capsys):
    import long_context

    assert long_context.main(["--preset", "quick", "--output_dir", str(tmp_path / "x"),
                              "--rope_scaling.type", "none"]) == 2
    assert "rope_scaling.type" in capsys.readouterr().err
    assert long_context.main(["--preset", "quick", "--rope_scaling.factor", "1"]) == 2
    assert "rope_scaling.factor" in capsys.readouterr().err
    assert long_context.main(["--preset", "nope"]) == 2
