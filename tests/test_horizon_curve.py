"""pass@k, Wilson intervals, h50 and the paired comparison on hand-made data; the held-out split is disjoint by construction."""

import math

import pytest

from envs.base import HELDOUT_EVERY, is_heldout
from rl.build import build_task_source
from rl.config import EnvConfig, EvalConfig
from rl.curve_stats import (clustered_counts, h50, h50_summary, mcnemar_exact_p, paired_comparison,
                            paired_difference_ci, pass_at_k, wilson_interval)
from rl.evaluate import eval_tasks


def test_pass_at_k_matches_the_combinatorial_formula():
    # n=5, c=2, k=2: 1 - C(3,2)/C(5,2) = 1 - 3/10
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)  # pass@1 is the fraction correct
    assert pass_at_k(4, 0, 2) == 0.0 and pass_at_k(4, 3, 2) == 1.0  # n - c < k: a correct one is always drawn
    assert pass_at_k(100, 1, 10) == pytest.approx(1 - math.comb(99, 10) / math.comb(100, 10))
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


def test_wilson_interval_hand_worked():
    # 8/10, z = 1.96: denom 1 + 3.8415/10 = 1.38415; centre (0.8 + 0.19207) / 1.38415 = 0.71673;
    # half 1.96 * sqrt(0.016 + 0.0096037) / 1.38415 = 0.22659 -> (0.4901, 0.9433)
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=2e-4) and hi == pytest.approx(0.9433, abs=2e-4)
    assert wilson_interval(0, 50)[0] == 0.0 and wilson_interval(0, 50)[1] == pytest.approx(0.0714, abs=2e-4)
    assert wilson_interval(50, 50)[1] == 1.0 and wilson_interval(10, 10)[1] == 1.0  # exact ends
    assert wilson_interval(0, 3)[0] == 0.0
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_clustered_counts_shrink_n_by_the_design_effect_hand_worked():
    # 4 tasks x 2 seeds, seeds always agree: p = 4/8; task means 1, 1, 0, 0 -> between-task variance
    # 4 x 0.25 / (4 x 3) = 1/12; binomial 0.25 / 8 = 1/32; deff 8/3 -> n 8 / (8/3) = 3, successes 1.5
    assert clustered_counts([2, 2, 0, 0], 2) == pytest.approx((1.5, 3.0))
    # 3 tasks: means 1, 0.5, 0 -> (0.25 + 0 + 0.25) / (3 x 2) = 1/12 over 0.25 / 6 = 1/24: deff 2
    assert clustered_counts([2, 1, 0], 2) == pytest.approx((1.5, 3.0))
    # every task 1 of 2: no between-task variance, deff floored at 1 -> the raw counts
    assert clustered_counts([1, 1, 1, 1], 2) == (4.0, 8.0)
    # a rate of 0 or 1 has no variance to read the clustering from: each task counts once
    assert clustered_counts([0, 0, 0], 2) == (0.0, 3.0) and clustered_counts([2, 2], 2) == (2.0, 2.0)
    assert clustered_counts([1], 2) == (1.0, 2.0)
    # the rate is kept, the interval widens: Wilson(1.5, 3) is wider than Wilson(4, 8)
    (lo, hi), (raw_lo, raw_hi) = wilson_interval(*clustered_counts([2, 2, 0, 0], 2)), wilson_interval(4, 8)
    assert lo < raw_lo and hi > raw_hi
    with pytest.raises(ValueError, match="successes <= it"):
        clustered_counts([3, 0], 2)
    with pytest.raises(ValueError, match="integer 0 <= successes"):
        clustered_counts([1.5, 0], 2)


def test_h50_interpolates_in_log2_horizon():
    # 0.7 at h=2, 0.3 at h=4: halfway in log2 -> 2 ** 1.5
    assert h50({1: 0.9, 2: 0.7, 4: 0.3, 8: 0.0}) == pytest.approx(2 ** 1.5)
    assert h50({1: 0.4, 2: 0.9}) is None  # the shortest horizon is already below 50 %
    assert h50({1: 0.9, 2: 0.8}) == 2.0  # never falls below: the longest measured (censored)
    assert h50({1: 0.5, 2: 0.0}) == 1.0  # exactly 50 % counts as reaching it
    assert h50({"1": 1.0, "2": 0.8, "4": 0.2}) == pytest.approx(2 ** 1.5)  # JSON string keys


def test_h50_interval_comes_from_the_wilson_bound_curves():
    counts = {1: (45, 50), 2: (35, 50), 4: (15, 50), 8: (0, 50)}
    s = h50_summary(counts)
    assert s["h50"] == pytest.approx(2 ** 1.5, abs=1e-3)
    lower = {h: wilson_interval(*c)[0] for h, c in counts.items()}
    upper = {h: wilson_interval(*c)[1] for h, c in counts.items()}
    assert s["low"] == pytest.approx(h50(lower), abs=1e-3) and s["high"] == pytest.approx(h50(upper), abs=1e-3)
    assert s["low"] < s["h50"] < s["high"] and not s["censored"]
    assert h50_summary({1: (50, 50), 2: (40, 50)})["censored"]


def test_mcnemar_exact_p_hand_worked():
    # 10 gained, 2 lost: 2 * P(X <= 2), X ~ Bin(12, 1/2) = 2 * (1 + 12 + 66) / 4096
    assert mcnemar_exact_p(10, 2) == pytest.approx(158 / 4096)
    assert mcnemar_exact_p(2, 10) == mcnemar_exact_p(10, 2)
    assert mcnemar_exact_p(3, 3) == 1.0 and mcnemar_exact_p(0, 0) == 1.0  # capped; nothing discordant
    assert mcnemar_exact_p(5, 0) == pytest.approx(2 / 32)
    with pytest.raises(ValueError):
        mcnemar_exact_p(-1, 2)


def test_paired_difference_ci_matches_newcombes_published_example():
    # Fagerland, Lydersen & Laake, Statistical Analysis of Contingency Tables, ch. 8 (Cavo et al. 2012):
    # 59 both, 6 first only, 16 second only, 80 neither -> -0.0621, 95 % CI -0.1186 to -0.0046
    lo, hi = paired_difference_ci(59, 6, 16, 80)
    assert lo == pytest.approx(-0.1186, abs=1e-4) and hi == pytest.approx(-0.0046, abs=1e-4)
    # the pairing: 40 tasks both solve and 40 both fail make the same +10 points far surer than two
    # independent 50 % vs 40 % samples of 100, whose Wilson intervals overlap widely
    lo, hi = paired_difference_ci(40, 10, 0, 50)
    assert 0.0 < lo < 0.1 < hi
    # neither model solves any of 7: phi is 0 (an empty margin), so each end is one Wilson half-width
    upper = wilson_interval(0, 7)[1]
    assert paired_difference_ci(0, 0, 0, 7) == pytest.approx((-upper, upper))
    with pytest.raises(ValueError):
        paired_difference_ci(0, 0, 0, 0)


def test_paired_comparison_counts_tasks_per_horizon_and_rejects_unpaired_files():
    def rows(solved):
        return [{"horizon": h, "task_id": f"t{h}-{i}", "solved": s} for h, ss in solved.items() for i, s in enumerate(ss)]

    a = rows({1: [True, True, True, False], 4: [True, False, False, False]})
    b = rows({1: [True, False, False, True], 4: [False, False, False, False]})
    out = paired_comparison(a, baseline=b)
    assert out[1]["n"] == 4 and out[1]["gained"] == 2 and out[1]["lost"] == 1 and out[1]["diff"] == pytest.approx(0.25)
    assert out[1]["p"] == 1.0 and out[4]["gained"] == 1 and out[4]["lost"] == 0
    assert out[1]["diff_ci"] == [round(x, 4) for x in paired_difference_ci(1, 2, 1, 0)]
    assert paired_comparison(a, baseline=a)[4] == {"n": 4, "gained": 0, "lost": 0, "diff": 0.0,
                                          "diff_ci": [round(x, 4) for x in paired_difference_ci(1, 0, 0, 3)], "p": 1.0}
    with pytest.raises(ValueError, match="same held-out tasks"):
        paired_comparison(a, baseline=b[:-1])
    with pytest.raises(ValueError, match="appears twice"):
        paired_comparison(a + a[:1], baseline=b + b[:1])
    # p keeps its significant figures however small: 30 tasks gained, none lost -> 2 / 2^30
    many = paired_comparison(rows({2: [True] * 30}), baseline=rows({2: [False] * 30}))
    assert many[2]["p"] == pytest.approx(2 / 2 ** 30, rel=1e-3) and many[2]["p"] > 0


def test_eval_tasks_are_held_out_and_no_training_stream_draws_them():
    env = EnvConfig(options={"min_horizon": 1, "max_horizon": 3})
    held = eval_tasks(env, EvalConfig(horizons=[1, 2, 3], tasks_per_horizon=30))
    prompts = {t.messages[-1]["content"] for ts in held.values() for t in ts}
    assert all(is_heldout(t) for ts in held.values() for t in ts)
    assert all(len(ts) == 30 and len({t.messages[-1]["content"] for t in ts}) == 30 for ts in held.values())
    assert {t.horizon for t in held[2]} == {2}
    for seed in (0, 1, 987_654):  # any seed, the eval seed included: training never sees them
        train = build_task_source(env, seed).sample(600)
        assert not any(is_heldout(t) for t in train)
        assert not prompts & {t.messages[-1]["content"] for t in train}
    raw = env.spec.make_source(env.options, 0).sample(2000)  # the split is about 1 in HELDOUT_EVERY
    assert abs(sum(map(is_heldout, raw)) / len(raw) - 1 / HELDOUT_EVERY) < 0.03


def test_eval_targets_resolve_before_loading(tmp_path):
    from rl.errors import ConfigError, DataError
    from rl.eval_job import resolve_target

    run = tmp_path / "run@v2"  # an @ inside a path is part of the path
    (run / "checkpoints" / "step_4").mkdir(parents=True)
    (run / "config.yaml").write_text("model: tiny-random\n")
    assert resolve_target(str(run)).kind == "run" and resolve_target(str(run)).step is None
    assert resolve_target(f"{run}@0").step == 0 and resolve_target(f"{run}@0").path == str(run)
    assert resolve_target(str(run / "checkpoints" / "step_4")).step == 4
    (tmp_path / "student" / "model").mkdir(parents=True)
    (tmp_path / "student" / "model" / "config.json").write_text("{}")
    assert resolve_target(str(tmp_path / "student")).path == str(tmp_path / "student" / "model")
    assert resolve_target("tiny-random").kind == "model"
    with pytest.raises(ConfigError, match="@STEP selects a checkpoint"):
        resolve_target("tiny-random@3")
    with pytest.raises(ConfigError, match="checkpoint step"):
        resolve_target(f"{run}@last")
    with pytest.raises(DataError, match="neither a built-in model"):
        resolve_target(str(tmp_path / "missing"))


def test_eval_job_names_must_give_distinct_results_files():
    from rl.errors import ConfigError
    from rl.eval_job import EvalJobConfig

    with pytest.raises(ConfigError, match="share one completions file"):  # both become runs_a_b.jsonl
        EvalJobConfig(targets=["runs/a b", "runs/a_b"])
    with pytest.raises(ConfigError, match="named twice"):
        EvalJobConfig(targets=["tiny-random", "tiny-random"])
    with pytest.raises(ConfigError, match="labels.*named twice"):
        EvalJobConfig(targets=["tiny-random", "runs/x"], labels=["m", "m"])
    assert EvalJobConfig(targets=["runs/a b", "runs/a_b"], labels=["first", "second"]).labels == ["first", "second"]


def test_paired_against_reads_kept_completions_and_warns_on_unpaired_targets(tmp_path, capsys):
    import json

    from rl.eval_job import completions_path, paired_against

    def write(label, solved):
        path = completions_path(tmp_path, label)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps({"horizon": 1, "task_id": f"t{i}", "solved": s}) + "\n"
                                for i, s in enumerate(solved)))

    write("RL", [True, True, False])
    write("SFT", [True, False, False])
    write("other/run", [True, False])
    assert paired_against(tmp_path, "RL", "SFT")[1] | {"diff_ci": None} == {
        "n": 3, "gained": 1, "lost": 0, "diff": pytest.approx(1 / 3), "diff_ci": None, "p": 1.0}
    assert paired_against(tmp_path, "RL", "missing") is None  # never scored: nothing to compare
    assert paired_against(tmp_path, "RL", "other/run") is None
    assert "RL vs other/run not compared task by task" in capsys.readouterr().err


class _ChainScript:
    """A scripted engine for chain_math eval tasks: for the i-th task of a horizon it writes the
    oracle solution, a lucky one (first line wrong, final answer right) or a wrong answer, as
    ``plan[h][i]`` says."""

    name = "scripted"

    def __init__(self, tokenizer, by_horizon, plan):
        from rl.rollout.chat import render_prompt

        self.tokenizer, self.text = tokenizer, {}
        for h, tasks in by_horizon.items():
            for task, kind in zip(tasks, plan[h]):
                self.text[tuple(render_prompt(tokenizer, task.messages))] = self.write(task, kind)

    @staticmethod
    def write(task, kind):
        from envs.chain_math import oracle_solution

        lines = oracle_solution(task).splitlines()
        if kind == "lucky":
            first = lines[0].rsplit("= ", 1)
            lines[0] = f"{first[0]}= {int(first[1]) + 1}"
        if kind == "wrong":
            lines[-1] = f"#### {int(task.answer) + 1}"
        if kind == "short":  # the right answer with the last operation's line left out
            lines = lines[:-2] + lines[-1:]
        return "\n".join(lines)

    def generate(self, prompts, params, n=1):
        from rl.types import Completion

        out = []
        for p in prompts:
            text = self.text[tuple(p)]
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            out.append([Completion(ids, [0.0] * len(ids), text, "stop")] * n)
        return out

    def close(self):
        pass


def test_all_steps_curve_leaves_out_right_answers_reached_through_a_wrong_step(tokenizer):
    from types import SimpleNamespace

    from rl.config import RewardConfig
    from rl.evaluate import evaluate_policy

    env, cfg = EnvConfig(), EvalConfig(horizons=[2, 3], tasks_per_horizon=3, engine="hf", max_new_tokens=64)
    plan = {2: ["right", "lucky", "wrong"], 3: ["right", "short", "lucky"]}
    engine = _ChainScript(tokenizer, eval_tasks(env, cfg), plan)
    result = evaluate_policy(SimpleNamespace(tokenizer=tokenizer), env, cfg, RewardConfig(verifier_timeout_s=0),
                             engine=engine, keep_completions=True)
    assert result["pass@1"] == {2: pytest.approx(2 / 3), 3: 1.0}  # the verifier reads the final answer
    assert result["pass@1_all_steps"] == {2: pytest.approx(1 / 3), 3: pytest.approx(1 / 3)}
    assert result["pass@1_all_steps_ci"][3] == [round(x, 4) for x in wilson_interval(1, 3)]
    assert [r["all_steps_right"] for r in result["completions"]] == [True, False, False, True, False, False]
    assert [r["solved"] for r in result["completions"]] == [True, True, False, True, True, True]
    # the offline reading of saved completions agrees with the eval's, completion by completion
    from envs.chain_math_errors import every_step_right

    assert all(every_step_right(r["prompt"], r["completion"]) == r["all_steps_right"] for r in result["completions"])
    # pass@1 never falls below 50 % (h50 = the longest horizon, 3); the all-steps curve starts below it
    assert result["h50"] == 3.0 and result["h50_all_steps"] is None


def test_stored_results_survive_a_setting_added_later_at_its_default(tmp_path):
    """A JSON written before a config field existed keeps its results on --resume while the field is
    at its default; a changed value, or a stored field the config no longer has, starts afresh."""
    import json

    from rl.config import RewardConfig
    from rl.eval_job import EvalJobConfig, job_settings, load_results

    path = tmp_path / "horizon_curve.json"
    now = json.loads(json.dumps(job_settings(EvalJobConfig(targets=["m"]))))
    older = json.loads(json.dumps(now))
    del older["reward"]["outcome"]  # as written before reward.outcome existed
    path.write_text(json.dumps({"settings": older, "curves": {"m": {"h50": 3.0}}}))

    kept = load_results(path, now, "curves", resume=True)
    assert kept["curves"] == {"m": {"h50": 3.0}} and kept["settings"] == now
    assert load_results(path, now, "curves", resume=False)["curves"] == {}
    changed = job_settings(EvalJobConfig(targets=["m"], reward=RewardConfig(outcome="all_steps")))
    assert load_results(path, changed, "curves", resume=True)["curves"] == {}
    path.write_text(json.dumps({"settings": {**now, "gone": 1}, "curves": {"m": {"h50": 3.0}}}))
    assert load_results(path, now, "curves", resume=True)["curves"] == {}


def test_a_model_dir_written_again_is_scored_again(tmp_path):
    """``already_scored`` keeps a stored result only for the same weights: rewriting a model dir's
    weight file (a stage rerun into the same dir) changes its digest; a result stored before digests
    were kept is trusted on its path; run targets are named by their step, not a digest."""
    from rl.eval_job import EvalJobConfig, Target, already_scored, scored_as

    cfg = EvalJobConfig(targets=["m"])
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"weights one")
    target = Target("m", "model", str(model))
    how = scored_as(target, cfg)
    stored = {"path": str(model), "step": None, **how}
    assert already_scored(stored, target, scored_as(target, cfg))
    (model / "config.json").write_text('{"changed": 1}')  # not a weight file
    assert already_scored(stored, target, scored_as(target, cfg))
    (model / "model.safetensors").write_bytes(b"weights two")
    assert not already_scored(stored, target, scored_as(target, cfg))
    legacy = {k: v for k, v in stored.items() if k != "weights"}
    assert already_scored(legacy, target, scored_as(target, cfg))
    assert not already_scored({**stored, "run_as": {"dtype": "bfloat16"}}, target, how)
    assert scored_as(Target("r", "run", str(tmp_path)), cfg)["weights"] is None
