"""needle env (depths, hops, distractors, code mode, determinism), its grid eval on a scripted
engine (exact cells and effective context), and the context-cost arithmetic."""

import json
import re
from types import SimpleNamespace

import pytest

from envs.needle import (MAX_HOPS, NeedleConfig, NeedleSource, extract_answer, heldout, load_tokenizer, normalize,
                         oracle_solution, tokenizer_dir, verify)
from rl.context_cost import doubling_ratios, fit_linear_quadratic, kv_cache_bytes_per_token, quadratic_share
from rl.errors import ConfigError
from rl.types import Completion, Episode, Turn

FACT = re.compile(r"The code of (\S+) is (\S+)\.")


@pytest.fixture(scope="module")
def tok_dir():
    from rl.models import resolve_model_path

    return str(resolve_model_path("tiny-random"))


def source(tok_dir, seed=0, **options):
    return NeedleSource(NeedleConfig(tokenizer=tok_dir, **options), seed=seed)


def document(task) -> str:
    text = task.messages[0]["content"]
    tag = "document" if task.meta["mode"] == "kv" else "files"
    return text.split(f"<{tag}>\n", 1)[1].rsplit(f"\n</{tag}>", 1)[0]


def episode_of(task, text: str) -> Episode:
    return Episode(task=task, group_id=0, turns=[Turn([0], Completion([1], [0.0], text, "stop"))])


@pytest.mark.parametrize("mode,length", [("kv", 3000), ("code", 4000)])
def test_needles_sit_at_the_requested_token_depth(tok_dir, mode, length):
    tokenizer = load_tokenizer(tok_dir)
    for depth in (0.0, 0.1, 0.5, 0.9, 1.0):
        for hops in (1, 3):
            src = source(tok_dir, lengths=[length], depths=[depth], min_hops=hops, max_hops=hops, mode=mode)
            task = src.task_at(5)
            m = task.meta
            ids = tokenizer(document(task), add_special_tokens=False)["input_ids"]
            n = len(ids)
            assert m["context_tokens"] == n and abs(n - length) <= 0.01 * length
            start, end = m["block_span"]
            # depth = tokens before the block / tokens outside it, within 1 % of the context
            assert abs(start - depth * (n - (end - start))) <= 0.01 * n
            assert abs(m["depth_actual"] - depth) <= 0.01 * n / (n - (end - start))
            assert len(m["needle_positions"]) == (hops if mode == "kv" else hops + 1)
            for pos, link in zip(m["needle_positions"], m["chain"]):
                assert start <= pos < end
                shown = tokenizer.decode(ids[pos: pos + 40])
                if mode == "kv":  # the recorded position is where the fact's text begins
                    assert shown.lstrip().startswith(f"The code of {link} is")
                else:
                    assert shown.lstrip().startswith(f"# file: {link['path']}")
            if hops == 1 and mode == "kv":  # a single fact: at depth x context within 1 %
                assert abs(m["needle_positions"][0] - depth * n) <= 0.01 * n
            for pos in m["distractor_positions"]:
                assert not start <= pos < end


def test_hops_chain_to_the_answer_and_near_miss_distractors_are_present(tok_dir):
    for hops in (1, 2, 4, 7):
        src = source(tok_dir, lengths=[1024], depths=[0.3], min_hops=hops, max_hops=hops, distractors=6)
        for index in range(3):
            task = src.task_at(index)
            facts = FACT.findall(document(task))
            table = dict(facts)
            assert len(table) == len(facts) == hops + 6  # every key is stated once
            key = task.meta["chain"][0]
            assert key in task.meta["question"]
            for _ in range(hops):
                key = table[key]
            assert key == task.answer and task.answer not in table  # the chain ends there
            chain = task.meta["chain"]
            for d in task.meta["distractors"]:
                assert table[d["key"]] == d["value"] and d["key"] not in chain and d["near"] in chain[:-1]
                diff = [a != b for a, b in zip(d["key"], d["near"])]
                assert len(d["key"]) == len(d["near"]) and sum(diff) == 1  # one character away
            assert len(task.meta["distractor_positions"]) == 6
            assert verify(task, episode_of(task, oracle_solution(task))).correct


def test_code_mode_answer_is_the_call_site_that_breaks(tok_dir):
    """Run the generated project: exactly one function raises AttributeError on a missing key."""
    for hops in (1, 2, 5):
        src = source(tok_dir, lengths=[2048], depths=[0.6], min_hops=hops, max_hops=hops, mode="code",
                     distractors=7)
        task = src.task_at(1)
        files = re.split(r"^# file: (\S+)\n", document(task), flags=re.M)[1:]
        noun = task.meta["chain"][0]["function"].removeprefix("find_")
        namespace = {f"{noun.upper()}S": {}, f"EMPTY_{noun.upper()}": SimpleNamespace(
            total=0, status="", owner="", amount=0, email="", label="", region="", created_at="")}
        where = {}
        for path, code in zip(files[::2], files[1::2]):
            exec(compile(code, path, "exec"), namespace)
            where.update({name: path for name in re.findall(r"^def (\w+)\(", code, flags=re.M)})
        broken = []
        for name, path in where.items():
            if f"({noun}_id)" not in re.search(rf"^def {name}\(.*\):", document(task), flags=re.M).group(0):
                continue  # filler: not a function of the key
            try:
                namespace[name]("missing-key")
            except AttributeError:
                broken.append(f"{path}:{name}")
        assert broken == [task.answer]
        assert len(task.meta["chain"]) == hops + 1 and len(task.meta["distractors"]) == 7
        assert all(d["function"] in where for d in task.meta["distractors"])
        source_name = f"find_{noun}"
        assert any(name == source_name + "s" or (len(name) == len(source_name) and
                                                 sum(a != b for a, b in zip(name, source_name)) == 1)
                   for name in (d["function"] for d in task.meta["distractors"]))  # a near-miss name is there
        assert verify(task, episode_of(task, f"It is that one.\n#### `{task.answer}()`")).correct


def test_determinism_pairing_and_state_round_trip(tok_dir):
    opts = dict(lengths=[256, 512], depths=[0.0, 0.5, 1.0], min_hops=1, max_hops=3)
    a, b = source(tok_dir, **opts), source(tok_dir, **opts)
    first = a.sample(4)
    assert first == b.sample(4)
    assert [t.messages for t in source(tok_dir, seed=1, **opts).sample(4)] != [t.messages for t in first]
    # one position, every cell: the same chain (prefix), the same split
    cells = [a.make_task(7, L, d, h) for L in (256, 512) for d in (0.0, 1.0) for h in (1, 2)]
    assert len({t.meta["chain"][0] for t in cells}) == 1 and len({heldout(t) for t in cells}) == 1
    assert len({t.messages[0]["content"] for t in cells}) == len(cells)
    a.set_horizon(2, 2)
    state = a.state_dict()
    expected = a.sample(3)
    c = source(tok_dir, **opts)
    c.load_state_dict(json.loads(json.dumps(state)))
    assert c.sample(3) == expected and all(t.meta["hops"] == 2 for t in expected)
    with pytest.raises(Exception, match="seed"):
        source(tok_dir, seed=5, **opts).load_state_dict(state)


def test_answers_are_read_after_hashes_or_in_tags_and_matched_exactly(tok_dir):
    task = source(tok_dir, lengths=[256], depths=[0.5]).task_at(0)
    answer = task.answer
    assert extract_answer("blah\n#### x\nmore") == "x" and extract_answer("<answer> y </answer>") == "y"
    assert normalize(f"`{answer.upper()}`.") == answer
    key = task.meta["chain"][0]
    for text, ok in [(f"#### {answer}", True), (f"<answer>{answer}</answer>", True), (f"####  **{answer}**", True),
                     (f"#### {answer}7", False), (f"#### the code is {answer}", False),
                     # no marker: the last answer-shaped token is read (retrieval, not format)
                     (answer, True), (f"The code of {key} is {answer}.", True), (f"The code of {answer} is {key}.", False),
                     ("I do not know.", False)]:
        assert verify(task, episode_of(task, text)).correct is ok, text
    assert verify(task, episode_of(task, f"The code of {key} is {answer}.")).details["marked"] is False
    assert verify(task, episode_of(task, "I do not know.")).details["reason"].startswith("no '####")


def test_options_are_checked_and_errors_name_the_key(tok_dir):
    for bad, key in [({"lengths": [10]}, "env.lengths"), ({"depths": [1.5]}, "env.depths"),
                     ({"min_hops": 0}, "env.min_hops"), ({"min_hops": 3, "max_hops": 2}, "env.max_hops"),
                     ({"max_hops": MAX_HOPS + 1}, "env.max_hops"), ({"distractors": -1}, "env.distractors"),
                     ({"mode": "prose"}, "env.mode")]:
        with pytest.raises(ConfigError, match=re.escape(key)):
            NeedleConfig(**bad)
    with pytest.raises(ConfigError, match="env.tokenizer"):
        tokenizer_dir("smollm2-135m-instruct")
    with pytest.raises(ConfigError, match="env.max_hops"):
        source(tok_dir).set_horizon(1, MAX_HOPS + 1)
    with pytest.raises(Exception, match="env.lengths"):
        source(tok_dir, lengths=[64], distractors=8, min_hops=4, max_hops=4).task_at(0)


class ScriptedEngine:
    """Answers a needle task right only when ``rule(meta)`` holds (the prompt is looked up)."""

    name = "scripted"

    def __init__(self, tokenizer, tasks, rule):
        from rl.rollout.chat import render_prompt

        self.tokenizer, self.rule = tokenizer, rule
        self.by_prompt = {tuple(render_prompt(tokenizer, t.messages)): t for t in tasks}

    def generate(self, prompts, params, n=1):
        out = []
        for p in prompts:
            task = self.by_prompt[tuple(p)]
            text = f"#### {task.answer}" if self.rule(task.meta) else "#### nobody-0000"
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            out.append([Completion(ids, [0.0] * len(ids), text, "stop")] * n)
        return out

    def close(self):
        pass


def test_grid_on_a_scripted_engine_is_exact(tok_dir, tmp_path):
    from rl.config import EnvConfig, EvalConfig, RewardConfig
    from rl.needle_grid import evaluate_grid, grid_tasks, plot_grids

    tokenizer = load_tokenizer(tok_dir)
    env = EnvConfig(name="needle", options={"lengths": [256, 512], "depths": [0.0, 0.25, 0.5, 1.0],
                                            "distractors": 2, "tokenizer": tok_dir})
    cfg = EvalConfig(horizons=[1, 2], tasks_per_horizon=3, engine="hf", max_new_tokens=8)
    cells = grid_tasks(env, cfg)
    assert sorted(cells) == sorted((L, d, h) for L in (256, 512) for d in (0.0, 0.25, 0.5, 1.0) for h in (1, 2))
    assert all(len(ts) == 3 and all(heldout(t) for t in ts) for ts in cells.values())

    def rule(meta):  # 1 hop: right at 256 tokens, or in the first half; 2 hops: right only at depth 0
        if meta["hops"] == 1:
            return meta["length"] <= 256 or meta["depth"] < 0.5
        return meta["depth"] == 0.0

    engine = ScriptedEngine(tokenizer, [t for ts in cells.values() for t in ts], rule)
    result = evaluate_grid(SimpleNamespace(tokenizer=tokenizer), env, cfg, RewardConfig(verifier_timeout_s=0),
                           engine=engine)
    got = {(c["hops"], c["length"], c["depth"]): (c["n"], c["correct"]) for c in result["cells"]}
    expected = {(1, 256, d): (3, 3) for d in (0.0, 0.25, 0.5, 1.0)}
    expected |= {(1, 512, 0.0): (3, 3), (1, 512, 0.25): (3, 3), (1, 512, 0.5): (3, 0), (1, 512, 1.0): (3, 0)}
    expected |= {(2, L, d): (3, 3 if d == 0.0 else 0) for L in (256, 512) for d in (0.0, 0.25, 0.5, 1.0)}
    assert got == expected
    # Wilson 95 %, n = 3: 3/3 -> centre (1 + 1.9208/3) / (1 + 3.8415/3) = 0.71925, half 0.28075 -> [0.4385, 1]
    by_cell = {(c["hops"], c["length"], c["depth"]): c for c in result["cells"]}
    assert by_cell[(1, 256, 0.5)]["ci"] == pytest.approx([0.4385, 1.0], abs=1e-4)
    assert by_cell[(1, 512, 0.5)]["ci"] == pytest.approx([0.0, 0.5615], abs=1e-4)
    assert by_cell[(1, 512, 0.5)]["accuracy"] == 0.0 and by_cell[(2, 512, 0.0)]["accuracy"] == 1.0
    # 1 hop: 256 passes at every depth, 512 fails at 0.5 and 1 -> 256; 2 hops: 256 fails at 0.25 -> none
    assert result["effective_context"] == {1: {"length": 256, "censored": False},
                                           2: {"length": None, "censored": False}}
    assert result["threshold"] == 0.5 and result["verifier_errors"] == 0
    assert all(c["prompt_tokens"] > c["context_tokens"] for c in result["cells"])
    grids = {"scripted": json.loads(json.dumps(result))}
    grids["scripted"]["effective_context"] = result["effective_context"]
    plot_grids(grids, tmp_path / "grid.png")
    assert (tmp_path / "grid.png").stat().st_size > 0


def test_effective_context_needs_every_shorter_length_to_pass():
    from rl.needle_grid import effective_context

    acc = {(1024, 0.0, 1): 0.9, (1024, 1.0, 1): 0.6, (2048, 0.0, 1): 0.4, (2048, 1.0, 1): 0.8,
           (4096, 0.0, 1): 0.9, (4096, 1.0, 1): 0.9}
    assert effective_context(acc, 0.5) == {1: {"length": 1024, "censored": False}}  # 4096 passes after a fail
    assert effective_context(acc, 0.3) == {1: {"length": 4096, "censored": True}}
    assert effective_context(acc, 0.95) == {1: {"length": None, "censored": False}}


def test_horizon_eval_runs_the_grid_for_the_needle_env(tok_dir, tmp_path):
    """`horizon eval tiny-random --env.name needle`: the tiny model end to end, JSON + PNG."""
    from rl.config import load_config
    from rl.eval_job import EvalJobConfig, run_eval_job

    cfg = load_config(EvalJobConfig, None, [
        "--targets", "[tiny-random]", "--output_dir", str(tmp_path), "--device", "cpu", "--dtype", "float32",
        "--env.name", "needle", "--env.lengths", "[128,256]", "--env.depths", "[0,1]", "--env.distractors", "1",
        "--env.tokenizer", tok_dir, "--eval.horizons", "[1]", "--eval.tasks_per_horizon", "2",
        "--eval.engine", "hf", "--eval.max_new_tokens", "4", "--reward.verifier_timeout_s", "0"])
    out = run_eval_job(cfg)
    doc = json.loads((out / "needle_grid.json").read_text())
    grid = doc["grids"]["tiny-random"]
    assert len(grid["cells"]) == 4 and all(c["n"] == 2 for c in grid["cells"])
    assert set(grid["effective_context"]) == {"1"} and (out / "needle_grid.png").is_file()


def test_grid_resume_rescores_when_the_rope_scaling_or_dtype_changes(tok_dir, tmp_path, monkeypatch):
    """--resume keeps a stored grid only when the target was run the same way: a context-extended or a
    bf16 model is a different measurement of the same weights, so either change scores it again."""
    import rl.needle_grid
    from rl.config import load_config
    from rl.eval_job import EvalJobConfig, run_eval_job

    calls = []
    real = rl.needle_grid.evaluate_grid
    monkeypatch.setattr(rl.needle_grid, "evaluate_grid", lambda *a, **k: calls.append(1) or real(*a, **k))
    base = ["--targets", "[tiny-random]", "--output_dir", str(tmp_path), "--device", "cpu",
            "--env.name", "needle", "--env.lengths", "[128]", "--env.depths", "[0.5]", "--env.distractors", "1",
            "--env.tokenizer", tok_dir, "--eval.horizons", "[1]", "--eval.tasks_per_horizon", "1",
            "--eval.engine", "hf", "--eval.max_new_tokens", "2", "--reward.verifier_timeout_s", "0"]
    for extra, scored in [(["--dtype", "float32"], 1), (["--dtype", "float32"], 0),
                          (["--dtype", "float32", "--rope_scaling.type", "linear", "--rope_scaling.factor", "2"], 1),
                          (["--dtype", "bfloat16", "--rope_scaling.type", "linear", "--rope_scaling.factor", "2"], 1)]:
        before = len(calls)
        run_eval_job(load_config(EvalJobConfig, None, base + extra), resume=True)
        assert len(calls) - before == scored, extra
    run_as = json.loads((tmp_path / "needle_grid.json").read_text())["grids"]["tiny-random"]["run_as"]
    assert run_as["dtype"] == "bfloat16" and run_as["rope_scaling"]["type"] == "linear"
    # a run target is loaded with its own run's dtype and scaling: the job's settings do not apply to it
    from rl.eval_job import Target, target_settings

    assert target_settings(Target("rl", "run", "runs/x"), load_config(EvalJobConfig, None, base)) == {}


def test_kv_cache_bytes_per_token_hand_worked():
    # SmolLM2-135M: 30 layers, 3 KV heads, head dim 576 / 9 = 64, bf16: 2 * 30 * 3 * 64 * 2 = 23040
    smol = {"num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3, "hidden_size": 576}
    assert kv_cache_bytes_per_token(smol, "bfloat16") == 23_040
    assert kv_cache_bytes_per_token(smol, "float32") == 46_080
    # an explicit head_dim wins over hidden / heads: 2 * 18 * 1 * 256 * 2 = 18432
    assert kv_cache_bytes_per_token({"num_hidden_layers": 18, "num_attention_heads": 8, "num_key_value_heads": 1,
                                     "hidden_size": 2048, "head_dim": 256}, "float16") == 18_432
    # no num_key_value_heads: multi-head attention, 2 * 2 * 4 * 16 * 4 = 1024
    assert kv_cache_bytes_per_token({"num_hidden_layers": 2, "num_attention_heads": 4, "hidden_size": 64},
                                    "float32") == 1024
    import torch
    from transformers import LlamaConfig

    cfg = LlamaConfig(num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, hidden_size=64)
    assert kv_cache_bytes_per_token(cfg, torch.float32) == 2 * 2 * 1 * 32 * 4


def test_prefill_fit_and_doubling_ratios_on_exact_times():
    # t = 1e-4 L + 1e-8 L^2: at 1024, 0.1024 + 0.0105; at 2048, 0.2048 + 0.0419
    lengths = [512, 1024, 2048, 4096]
    rows = [{"length": L, "prefill_s": 1e-4 * L + 1e-8 * L * L} for L in lengths]
    a, b = fit_linear_quadratic(lengths, [r["prefill_s"] for r in rows])
    assert a == pytest.approx(1e-4) and b == pytest.approx(1e-8)
    assert doubling_ratios(rows)[2048] == pytest.approx((0.2048 + 0.04194304) / (0.1024 + 0.01048576), abs=1e-3)
    assert quadratic_share(rows)[4096] == pytest.approx(0.16777216 / (0.4096 + 0.16777216), abs=1e-3)
    # a purely linear cost: ratio 2, no quadratic share
    linear = [{"length": L, "prefill_s": 2e-4 * L} for L in lengths]
    assert set(doubling_ratios(linear).values()) == {2.0} and set(quadratic_share(linear).values()) == {0.0}
