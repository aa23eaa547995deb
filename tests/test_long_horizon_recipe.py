"""The main-job recipe end to end on tiny-random (2 RL steps), and ``horizon eval`` on its outputs."""

import json
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "recipes"))

TINY = ["--model", "tiny-random", "--rl_minutes", "5", "--rl.max_steps", "2", "--rl.progress", "false",
        "--rl.rollout.engine", "hf", "--rl.rollout.prompts_per_step", "2", "--rl.rollout.group_size", "2",
        "--rl.rollout.max_new_tokens", "8", "--rl.curriculum.min_episodes", "2",
        "--eval.engine", "hf", "--eval.horizons", "[1, 2]", "--eval.tasks_per_horizon", "3",
        "--eval.max_new_tokens", "8", "--distill.num_tasks", "8", "--distill.sft.max_steps", "2",
        "--distill.sft.batch_size", "4", "--distill.progress", "false"]


def test_long_horizon_recipe_end_to_end_and_resume(tmp_path, capsys):
    import long_horizon

    out = tmp_path / "lh"
    assert long_horizon.main(["--preset", "quick", "--output_dir", str(out), *TINY,
                              "--anchor_student_traces", "true"]) == 0
    state = json.loads((out / "state.json").read_text())
    assert list(state) == ["eval_base", "distill", "eval_sft", "rl", "eval_rl", "control", "eval_control"]
    assert state["distill"]["value"]["steps"] == 2
    # the control trained for the RL loop's seconds, with a schedule sized from the first SFT's pace
    rl_rows = [json.loads(line) for line in (out / "rl" / "metrics.jsonl").read_text().splitlines()]
    assert len(rl_rows) == 2 and "curriculum/level" in rl_rows[-1]
    # every RL update also took the SFT loss on the student's own traces
    assert all(r["anchor/nll"] > 0 for r in rl_rows)
    assert str((out / "distill" / "traces").resolve()) in (out / "rl" / "config.yaml").read_text()
    assert state["control"]["value"]["budget_s"] == pytest.approx(rl_rows[-1]["time/train_s"])
    curves = json.loads((out / "eval" / "horizon_curve.json").read_text())["curves"]
    assert list(curves) == ["base", "SFT", "RL", "SFT-more"]
    for curve in curves.values():
        assert set(curve["pass@1"]) == {"1", "2"} and curve["n_per_horizon"] == {"1": 3, "2": 3}
        assert all(lo <= curve["pass@1"][h] <= hi for h, (lo, hi) in curve["pass@1_ci"].items())
    assert curves["RL"]["step"] == 2
    report = (out / "report.md").read_text()
    assert "| RL |" in report and "RL vs SFT" in report and (out / "rl_training.png").stat().st_size > 0
    assert report.count("tasks, paired [") >= 4  # every comparison pairs the two models' completions
    assert "step hazard" in report and "| SFT-more | " in report.split("step hazard")[1]  # per model
    assert "| model, every step right |" in report and all("pass@1_all_steps" in c for c in curves.values())
    assert (out / "eval" / "horizon_curve.png").stat().st_size > 0

    # a second run resumes: nothing is redone, and a run without --resume refuses the directory
    capsys.readouterr()
    assert long_horizon.main(["--preset", "quick", "--output_dir", str(out), *TINY, "--resume"]) == 0
    assert "=== long_horizon:" not in capsys.readouterr().out
    assert long_horizon.main(["--preset", "quick", "--output_dir", str(out), *TINY]) == 2
    assert "pass --resume" in capsys.readouterr().err

    # --redo: RL continues from its checkpoint to the raised budget, the control trains afresh for
    # the RL loop's seconds now (the old one kept aside); only their evals are redone
    assert long_horizon.main(["--preset", "quick", "--output_dir", str(out), *TINY, "--resume",
                              "--redo", "[rl, control]", "--rl.max_steps", "3"]) == 0
    redone = json.loads((out / "state.json").read_text())
    rl_rows = [json.loads(line) for line in (out / "rl" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rl_rows] == [1, 2, 3]
    assert redone["control"]["value"]["budget_s"] == pytest.approx(rl_rows[-1]["time/train_s"])
    assert (out / "control.prev.1" / "model" / "config.json").exists()
    assert "redo: []" in (out / "config.yaml").read_text()  # one-shot: a resume from the saved config redoes nothing
    assert {k: redone[k] for k in ("eval_base", "distill", "eval_sft")} == \
        {k: state[k] for k in ("eval_base", "distill", "eval_sft")}
    again = json.loads((out / "eval" / "horizon_curve.json").read_text())["curves"]
    assert again["RL"]["step"] == 3 and again["SFT"] == curves["SFT"] and again["base"] == curves["base"]
    printed = capsys.readouterr().out
    assert "=== long_horizon: rl ===" in printed and "=== long_horizon: distill ===" not in printed

    # --redo '[eval]': every target scored anew on more tasks, the old eval/ kept aside, nothing trained
    assert long_horizon.main(["--preset", "quick", "--output_dir", str(out), *TINY, "--resume",
                              "--redo", "[eval]", "--rl.max_steps", "3", "--eval.tasks_per_horizon", "4"]) == 0
    printed = capsys.readouterr().out
    assert "=== long_horizon: eval_sft ===" in printed and "=== long_horizon: rl ===" not in printed
    kept = json.loads((out / "eval.prev.1" / "horizon_curve.json").read_text())["curves"]
    assert kept["RL"]["step"] == 3 and kept["SFT"]["n_per_horizon"] == {"1": 3, "2": 3}
    more = json.loads((out / "eval" / "horizon_curve.json").read_text())["curves"]
    assert list(more) == ["base", "SFT", "RL", "SFT-more"]
    assert all(c["n_per_horizon"] == {"1": 4, "2": 4} for c in more.values()) and more["RL"]["step"] == 3
    assert "(tasks per horizon: {\"1\": 4, \"2\": 4})" in (out / "report.md").read_text()

    # horizon eval on the run's checkpoint and its base (RUN@0), env taken from the run
    from rl.cli import main

    assert main(["eval", str(out / "rl"), f"{out / 'rl'}@0", "--output_dir", str(tmp_path / "ev"),
                 "--eval.engine", "hf", "--eval.horizons", "[1]", "--eval.tasks_per_horizon", "2",
                 "--eval.max_new_tokens", "4", "--eval.samples", "3", "--eval.k", "[1, 2]"]) == 0
    doc = json.loads((tmp_path / "ev" / "horizon_curve.json").read_text())
    run_curve = doc["curves"][str(out / "rl")]
    assert run_curve["step"] == 3 and doc["curves"][f"{out / 'rl'}@0"]["step"] == 0
    assert set(run_curve["pass@k"]) == {"1", "2"} and doc["settings"]["env"]["max_horizon"] == 8
    assert run_curve["samples"] == 3 and run_curve["path"] == str(out / "rl")
    for k in ("1", "2"):
        lo, hi = run_curve["pass@k_ci"][k]["1"]
        assert lo <= run_curve["pass@k"][k]["1"] <= hi
    # every greedy generation is kept beside the curve, one file per target, and agrees with it
    files = sorted((tmp_path / "ev" / "completions").glob("*.jsonl"))
    assert len(files) == 2 and "completions" not in run_curve
    for f in files:
        rows = [json.loads(line) for line in f.read_text().splitlines()]
        assert [r["horizon"] for r in rows] == [1, 1] and all(r["prompt"] and "answer" in r for r in rows)
    from rl.eval_job import completions_path

    rows = [json.loads(line) for line in completions_path(tmp_path / "ev", str(out / "rl")).read_text().splitlines()]
    assert sum(r["solved"] for r in rows) / 2 == run_curve["pass@1"]["1"]
    # the second target against the first, task by task on the same 2 tasks
    (name, table), = doc["paired"].items()
    assert name == f"{out / 'rl'}@0 vs {out / 'rl'}" and table["1"]["n"] == 2
    assert table["1"]["gained"] - table["1"]["lost"] == round(2 * (doc["curves"][f"{out / 'rl'}@0"]["pass@1"]["1"]
                                                                  - run_curve["pass@1"]["1"]))
    printed = capsys.readouterr().out
    assert f"{out / 'rl'}@0 vs {out / 'rl'}, task by task: h1" in printed
    # chain_math labels steps: each target's second line is its every-step-right curve, kept in the JSON
    assert printed.count("  every step right: h1 ") == 2 and "pass@1_all_steps" in run_curve


def test_stages_without_eval_base_leave_the_base_model_unscored(tmp_path):
    import long_horizon

    out = tmp_path / "lh"
    assert long_horizon.main(["--preset", "quick", "--output_dir", str(out), *TINY,
                              "--stages", "[distill, eval_sft]"]) == 0
    curves = json.loads((out / "eval" / "horizon_curve.json").read_text())["curves"]
    assert list(curves) == ["SFT"]


def test_rl_starts_from_an_sft_made_by_another_run(tmp_path, capsys):
    import long_horizon

    first, second = tmp_path / "first", tmp_path / "second"
    assert long_horizon.main(["--preset", "quick", "--output_dir", str(first), *TINY, "--stages", "[distill]"]) == 0
    # a dir that is not a finished distil output is refused before anything is made
    assert long_horizon.main(["--preset", "quick", "--output_dir", str(second), *TINY,
                              "--student_from", str(first / "rl")]) == 2
    assert "student_from" in capsys.readouterr().err and not second.exists()
    assert long_horizon.main(["--preset", "quick", "--output_dir", str(second), *TINY, "--anchor_student_traces",
                              "true", "--student_from", str(first / "distill"),
                              "--control_lr", "0.0003", "--stages", "[eval_sft, rl, control]"]) == 0
    state = json.loads((second / "state.json").read_text())
    assert list(state) == ["distill", "eval_sft", "rl", "control"] and not (second / "distill").exists()
    # the first run's SFT is the student: RL starts from it and anchors on its traces, the control
    # continues it at its own pace
    assert state["distill"]["value"]["from"] == str((first / "distill").resolve())
    assert state["distill"]["value"]["steps"] == 2
    rl_config = (second / "rl" / "config.yaml").read_text()
    assert str((first / "distill" / "model").resolve()) in rl_config
    assert str((first / "distill" / "traces").resolve()) in rl_config
    control_config = yaml.safe_load((second / "control" / "config.yaml").read_text())
    assert control_config["model"] == str((first / "distill" / "model").resolve())
    assert control_config["sft"]["lr"] == 0.0003  # --control_lr, not the quick preset's 5e-4
    curves = json.loads((second / "eval" / "horizon_curve.json").read_text())["curves"]
    assert curves["SFT"]["target"] == "SFT" and curves["SFT"]["path"] == str((first / "distill" / "model").resolve())


def test_a_second_sft_round_makes_the_student(tmp_path, capsys):
    import long_horizon

    assert long_horizon.main(["--preset", "quick", "--output_dir", str(tmp_path / "bad"), *TINY,
                              "--distill_more_steps", "-1"]) == 2
    assert "distill_more_steps" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    out = tmp_path / "lh"
    assert long_horizon.main(["--preset", "quick", "--output_dir", str(out), *TINY, "--anchor_student_traces",
                              "true", "--distill_more_steps", "3",
                              "--stages", "[distill, distill_more, eval_sft, rl, control]"]) == 0
    state = json.loads((out / "state.json").read_text())
    assert list(state) == ["distill", "distill_more", "eval_sft", "rl", "control"]
    first, more = out / "distill", out / "distill_more"
    # the round continues the first SFT's merged model on its own traces (seed + 2000: neither the
    # first SFT's seed-0 traces nor the control's seed + 1000) for its own number of steps
    more_config = yaml.safe_load((more / "config.yaml").read_text())
    assert more_config["model"] == str((first / "model").resolve()) and more_config["seed"] == 2000
    assert state["distill_more"]["value"]["steps"] == 3 and more_config["num_tasks"] == 3 * 4

    def questions(run: Path) -> set[str]:
        rows = [json.loads(line) for line in (run / "traces_preview.jsonl").read_text().splitlines()]
        return {r["prompt"][0]["content"] for r in rows}

    assert questions(more) - questions(first)
    # its model is the student: scored as SFT, RL starts from it and anchors on its traces, the
    # control continues it at the first SFT's pace
    rl_config = (out / "rl" / "config.yaml").read_text()
    assert str((more / "model").resolve()) in rl_config and str((more / "traces").resolve()) in rl_config
    control_config = yaml.safe_load((out / "control" / "config.yaml").read_text())
    assert control_config["model"] == str((more / "model").resolve()) and control_config["seed"] == 1000
    curves = json.loads((out / "eval" / "horizon_curve.json").read_text())["curves"]
    assert curves["SFT"]["path"] == str((more / "model").resolve())
    assert more_config["sft"]["lr"] == 5.0e-4 and more_config["sft"]["max_train_s"] == 60 * 3 / 2  # the guard a step
    # resumed, the key must name the same student: without it, RL's student would silently change
    capsys.readouterr()
    assert long_horizon.main(["--preset", "quick", "--output_dir", str(out), *TINY, "--resume"]) == 2
    assert "--distill_more_steps 3" in capsys.readouterr().err
    assert yaml.safe_load((out / "config.yaml").read_text())["distill_more_steps"] == 3  # left as the run made it
    assert long_horizon.main(["--preset", "quick", "--output_dir", str(tmp_path / "lh0"), *TINY,
                              "--stages", "[distill, eval_sft]"]) == 0
    assert long_horizon.main(["--preset", "quick", "--output_dir", str(tmp_path / "lh0"), *TINY, "--resume",
                              "--distill_more_steps", "3"]) == 2
    assert "without a second SFT round" in capsys.readouterr().err and not (tmp_path / "lh0" / "distill_more").exists()
    assert long_horizon.main(["--preset", "quick", "--output_dir", str(tmp_path / "lh1"), *TINY,
                              "--distill_more_steps", "3", "--stages", "[distill, eval_sft]"]) == 2
    assert "leaves out" in capsys.readouterr().err and not (tmp_path / "lh1").exists()


def test_anchor_on_the_students_traces_and_an_explicit_anchor_are_exclusive(tmp_path, capsys):
    import long_horizon

    assert long_horizon.main(["--preset", "quick", "--output_dir", str(tmp_path / "lh"), *TINY,
                              "--redo", "[distill]"]) == 2
    assert "redo" in capsys.readouterr().err and not (tmp_path / "lh").exists()
    # a redone stage left out of --stages would be forgotten and never run again
    assert long_horizon.main(["--preset", "quick", "--output_dir", str(tmp_path / "lh"), *TINY,
                              "--redo", "[control]", "--stages", "[eval_control, report]"]) == 2
    assert "'control' must be in 'stages'" in capsys.readouterr().err and not (tmp_path / "lh").exists()

    assert long_horizon.main(["--preset", "quick", "--output_dir", str(tmp_path / "lh"), *TINY,
                              "--anchor_student_traces", "true", "--rl.anchor.traces", str(tmp_path)]) == 2
    assert "anchor_student_traces" in capsys.readouterr().err and not (tmp_path / "lh").exists()


def test_eval_rejects_bad_targets_before_loading(tmp_path, capsys):
    from rl.cli import main

    assert main(["eval", str(tmp_path / "nothing_here")]) == 2
    assert "neither a built-in model" in capsys.readouterr().err
    assert main(["eval"]) == 2
    assert "targets" in capsys.readouterr().err


def test_every_preset_loads_and_rl_sees_the_distilled_task():
    """Each preset is a valid config; the RL env asks the distilled task's questions (same ranges
    and operations), at horizons past the distilled ones."""
    import long_horizon
    from rl.config import load_config, to_dict

    for name, path in long_horizon.PRESETS.items():
        cfg = load_config(long_horizon.LongHorizonConfig, path, [])
        distilled, rl_env = to_dict(cfg.distill.env), to_dict(cfg.rl.env)

        def task(env: dict) -> dict:  # the questions asked, whatever the horizons
            return {k: v for k, v in env.items() if k not in ("min_horizon", "max_horizon")}

        assert task(distilled) == task(rl_env), name
        assert distilled["max_horizon"] < rl_env["max_horizon"], name
        if cfg.eval_env is not None:  # the evals score the RL env's task, at every horizon RL samples
            evals = to_dict(cfg.eval_env)
            assert task(evals) == task(rl_env), name
            assert evals["min_horizon"] <= rl_env["min_horizon"], name
            assert evals["max_horizon"] >= rl_env["max_horizon"], name


def test_evals_score_eval_env_whatever_horizons_rl_samples(tmp_path, monkeypatch):
    """With ``eval_env`` set, an RL run on other horizons is scored on the same env (so the shared eval
    JSON keeps the student's curve); without it the evals follow ``rl.env``."""
    import long_horizon
    import rl.eval_job
    from rl.config import load_config

    seen = []

    def fake_job(job, resume):
        seen.append(job.env.to_raw())
        (tmp_path / "eval").mkdir(exist_ok=True)
        (tmp_path / "eval" / "horizon_curve.json").write_text('{"curves": {}}')

    monkeypatch.setattr(rl.eval_job, "run_eval_job", fake_job)
    probe = ["--rl.env.min_horizon", "5", "--rl.env.max_horizon", "6"]
    cfg = load_config(long_horizon.LongHorizonConfig, long_horizon.PRESETS["full"], probe)
    long_horizon.evaluate(cfg, tmp_path, {"SFT": "x"})
    assert (seen[-1]["min_horizon"], seen[-1]["max_horizon"]) == (1, 8)
    assert seen[-1] == cfg.eval_env.to_raw() != cfg.rl.env.to_raw()
    cfg = load_config(long_horizon.LongHorizonConfig, long_horizon.PRESETS["quick"], ["--rl.env.max_horizon", "9"])
    long_horizon.evaluate(cfg, tmp_path, {"SFT": "x"})
    assert cfg.eval_env is None and seen[-1] == cfg.rl.env.to_raw()


def test_seeds_pool_counts_over_runs(tmp_path, capsys):
    import long_horizon_seeds

    def curve(rates: dict[str, float], n: int) -> dict:
        return {"pass@1": rates, "n_per_horizon": {h: n for h in rates}}

    runs = []
    for i, (sft, rl) in enumerate([({"1": 0.8, "4": 0.2}, {"1": 0.9, "4": 0.5}),
                                   ({"1": 0.6, "4": 0.0}, {"1": 1.0, "4": 0.7})]):
        d = tmp_path / f"s{i}" / "eval"
        d.mkdir(parents=True)
        d.joinpath("horizon_curve.json").write_text(json.dumps({"curves": {"SFT": curve(sft, 10),
                                                                           "RL": curve(rl, 10)}}))
        # each model solves the first rate x 10 of the same 10 tasks per horizon: RL's include SFT's
        (d / "completions").mkdir()
        for label, rates in (("SFT", sft), ("RL", rl)):
            rows = [{"horizon": int(h), "task_id": f"h{h}-{t}", "solved": t < round(10 * r)}
                    for h, r in rates.items() for t in range(10)]
            d.joinpath("completions", f"{label}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        runs.append(d.parent)
    pooled = long_horizon_seeds.pooled_curves(runs)
    assert list(pooled) == ["SFT", "RL"]
    # SFT: (8 + 6) / 20 and (2 + 0) / 20; RL: (9 + 10) / 20 and (5 + 7) / 20
    assert pooled["SFT"]["pass@1"] == {1: 0.7, 4: 0.1} and pooled["RL"]["pass@1"] == {1: 0.95, 4: 0.6}
    assert pooled["RL"]["n"] == {1: 20, 4: 20} and pooled["SFT"]["seeds"] == [{1: 0.8, 4: 0.2}, {1: 0.6, 4: 0.0}]
    lo, hi = pooled["SFT"]["pass@1_ci"][4]
    assert 0.02 < lo < 0.03 and 0.30 < hi < 0.31  # Wilson(2, 20)
    # the task is the cluster (both seeds score the same tasks): RL at h4 solves tasks 0-4 on both
    # seeds, 5-6 on one: task means 1 x5, .5 x2, 0 x3 around .6 -> (5 x .16 + 2 x .01 + 3 x .36) / 90
    # = .0211 against .24 / 20 = .012, deff 1.76 -> n 11.4; SFT at h4 (tasks 0-1 on one seed only)
    # agrees less than chance: deff floored at 1, n stays 20 and the interval is Wilson(2, 20)
    assert pooled["RL"]["n_eff"] == {1: 19.0, 4: 11.4} and pooled["SFT"]["n_eff"] == {1: 11.8, 4: 20.0}
    assert pooled["RL"]["clustered"] == {1: True, 4: True}
    # h50: RL crosses 0.5 past h=4 (censored at 4); SFT between 1 and 4, log2-linear: 2^(2 * 0.2 / 0.6)
    assert pooled["RL"]["h50"] == 4.0 and pooled["SFT"]["h50"] == pytest.approx(2 ** (0.4 / 0.6), abs=1e-3)
    assert long_horizon_seeds.main([str(d) for d in runs] + ["--out", str(tmp_path / "pooled")]) == 0
    text = capsys.readouterr().out
    assert "RL - SFT, points: h1 +25, h4 +50 (disjoint)" in text
    # task by task, per seed: RL gains 9 - 8 and 10 - 6 tasks at h1, 5 - 2 and 7 - 0 at h4, loses none
    assert "s0, task by task" in text and "h1 +1/-0" in text and "h4 +3/-0" in text
    assert "h1 +4/-0" in text and "h4 +7/-0" in text
    # over seeds the task is the unit (both seeds score the same 10 tasks): at h1 tasks 6-9 are better
    # on some seed and worse on none, at h4 tasks 0-6; sign test p = 2 / 2^4 and 2 / 2^7
    assert "h1 4/0 p 0.12" in text and "h4 7/0 p 0.016" in text
    paired = json.loads((tmp_path / "pooled.json").read_text())["paired"]["RL vs SFT"]
    assert paired["tasks"]["4"] == {"n": 10, "better": 7, "worse": 0, "diff": 0.5, "p": 0.01562}
    assert [t["1"]["gained"] for t in paired["per_seed"]] == [1, 4]
    assert (tmp_path / "pooled.png").stat().st_size > 0
    with pytest.raises(SystemExit):
        long_horizon_seeds.main([str(tmp_path / "missing")])

    # --all_steps: a solved task counts only when every step was right too; mark seed 0's RL
    # chains at h4 wrong on tasks 0-1 (right answers through a wrong step): 5 -> 3 of 10
    for run in runs:
        for label in ("SFT", "RL"):
            path = run / "eval" / "completions" / f"{label}.jsonl"
            rows = [json.loads(line) for line in path.read_text().splitlines()]
            lucky = {"h4-0", "h4-1"} if (run, label) == (runs[0], "RL") else set()
            rows = [{**r, "all_steps_right": r["solved"] and r["task_id"] not in lucky} for r in rows]
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    strict = long_horizon_seeds.pooled_curves(runs, all_steps=True)
    assert strict["RL"]["pass@1"] == {1: 0.95, 4: 0.5} and strict["RL"]["seeds"][0] == {1: 0.9, 4: 0.3}
    # seed 0 at h4 now: RL solves tasks 2-4, SFT tasks 0-1 -> 3 gained, 2 lost
    paired = long_horizon_seeds.seeds_paired(runs, "RL", "SFT", all_steps=True)
    assert (paired["per_seed"][0][4]["gained"], paired["per_seed"][0][4]["lost"]) == (3, 2)
