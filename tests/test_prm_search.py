"""PRM at inference: aggregation, best-of-N, majority vote, step beam search (scripted parts)."""

import pytest

from rewards.prm.search import aggregate_scores, best_of_n, majority_vote, step_beam_search
from rl.rollout.base import SamplingParams
from rl.rollout.chat import render_prompt
from rl.types import Completion, Task


def test_aggregate_scores():
    assert aggregate_scores([0.9, 0.5, 0.8], "min") == 0.5
    assert aggregate_scores([0.9, 0.5, 0.8], "last") == 0.8
    assert aggregate_scores([0.9, 0.5, 0.8], "product") == pytest.approx(0.36)
    assert aggregate_scores([], "product") == 0.0
    with pytest.raises(ValueError):
        aggregate_scores([0.5], "mean")


def test_best_of_n_each_aggregate_picks_a_different_candidate():
    texts = ["a", "b", "c"]
    scores = [
        [0.6, 0.6, 0.6],   # min .6   last .6   product .216
        [1.0, 0.5, 0.95],  # min .5   last .95  product .475
        [0.55, 1.0, 0.9],  # min .55  last .9   product .495
    ]
    assert best_of_n(texts, scores, "min") == 0
    assert best_of_n(texts, scores, "last") == 1
    assert best_of_n(texts, scores, "product") == 2
    assert best_of_n(["x", "y"], [[0.7], [0.7]], "min") == 0  # tie -> first
    with pytest.raises(ValueError):
        best_of_n(["x"], [[0.1], [0.2]])


def test_majority_vote():
    assert majority_vote(["12", "7", "12", None, "7", "12"]) == "12"
    assert majority_vote(["7", "12", "12", "7"]) == "7"  # tie -> first seen
    assert majority_vote([None, None]) is None
    # PRM-weighted: "7" has 0.9 + 0.8 = 1.7 against "12"'s 0.2 * 3 = 0.6
    assert majority_vote(["12", "7", "12", "7", "12"], weights=[0.2, 0.9, 0.2, 0.8, 0.2]) == "7"


TASK = Task(id="t", messages=[{"role": "user", "content": "go"}], answer="1")

# PRM score of the LAST step of each path; a path's step scores are its prefixes' entries.
# Round 1: A0 .9, A1 .8, A2 .3              -> keep A0, A1 (width 2)
# Round 2 (min): A0B0 .4 A0B1 .5 A0B2 .45 | A1B0 .7 A1B1 .6 A1B2 min(.8,.2)=.2
#                                          -> keep A1B0 (.7), A1B1 (.6); the round-1 leader A0 loses
# Round 3 (min): A1B0 + "#### j": min(.7, [.1, .65, .3]) = .1, .65, .3
#                A1B1 + "#### j": min(.6, [.95, .2, .5]) = .6, .2, .5
#                                          -> keep A1B0#1 (.65), A1B1#0 (.6), both finished
LAST = {
    ("A0",): 0.9, ("A1",): 0.8, ("A2",): 0.3,
    ("A0", "B0"): 0.4, ("A0", "B1"): 0.5, ("A0", "B2"): 0.45,
    ("A1", "B0"): 0.7, ("A1", "B1"): 0.6, ("A1", "B2"): 0.2,
    ("A1", "B0", "#### 0"): 0.1, ("A1", "B0", "#### 1"): 0.65, ("A1", "B0", "#### 2"): 0.3,
    ("A1", "B1", "#### 0"): 0.95, ("A1", "B1", "#### 1"): 0.2, ("A1", "B1", "#### 2"): 0.5,
}


class LineEngine:
    """Depth 0 -> lines A0..A2, depth 1 -> B0..B2 (each ending in the newline stop token),
    depth 2 -> "#### j" ending in EOS. Records the prompts of every call."""

    name = "scripted"

    def __init__(self, tokenizer):
        self.tokenizer, self.calls = tokenizer, []
        self.nl = tokenizer("\n", add_special_tokens=False)["input_ids"][0]

    def generate(self, prompts, params, n=1):
        assert self.nl in params.stop_token_ids
        self.calls.append([list(p) for p in prompts])
        out = []
        for prompt in prompts:
            depth = len(self.tokenizer.decode(prompt).split("assistant\n")[-1].strip().splitlines())
            group = []
            for j in range(n):
                if depth < 2:
                    text = f"{'AB'[depth]}{j}\n"
                    ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
                else:
                    text = f"#### {j}"
                    ids = self.tokenizer(text, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]
                group.append(Completion(ids, [0.0] * len(ids), text, "stop"))
            out.append(group)
        return out


def scripted_prm(task, steps):
    return [LAST[tuple(steps[: i + 1])] for i in range(len(steps))]


def test_beam_search_keeps_width_and_returns_best_finished(tokenizer):
    engine = LineEngine(tokenizer)
    text, trace = step_beam_search(engine, tokenizer, scripted_prm, TASK, beam_width=2, expand_per_beam=3,
                                   max_steps=5, params=SamplingParams(max_new_tokens=16), how="min")
    assert text == "A1\nB0\n#### 1"
    # 3 rounds (then every survivor is finished): 1 root prompt, then 2 live beams each round
    assert [len(c) for c in engine.calls] == [1, 2, 2]
    assert all(len(r["kept"]) <= 2 for r in trace)
    assert [r["candidates"] for r in trace] == [3, 6, 6]
    assert [k["text"] for k in trace[1]["kept"]] == ["A1\nB0", "A1\nB1"]
    assert [k["score"] for k in trace[2]["kept"]] == [0.65, 0.6]
    assert all(k["finished"] for k in trace[2]["kept"])
    # the round-3 prompt of the first beam is the chat prompt + "A1\nB0\n"
    chat = render_prompt(tokenizer, TASK.messages)
    assert engine.calls[2][0] == chat + tokenizer("A1\nB0\n", add_special_tokens=False)["input_ids"]


def test_beam_search_respects_max_steps(tokenizer):
    engine = LineEngine(tokenizer)
    text, trace = step_beam_search(engine, tokenizer, scripted_prm, TASK, beam_width=2, expand_per_beam=3,
                                   max_steps=2, params=SamplingParams(), how="min")
    assert len(engine.calls) == 2 and len(trace) == 2
    assert text == "A1\nB0"  # nothing finished: the best live beam
    # width 1 with "last": greedy on the last line's score: A0 (.9), then A0B1 (.5 beats .4 and .45)
    engine = LineEngine(tokenizer)
    text, _ = step_beam_search(engine, tokenizer, scripted_prm, TASK, beam_width=1, expand_per_beam=3,
                               max_steps=2, params=SamplingParams(), how="last")
    assert text == "A0\nB1" and [len(c) for c in engine.calls] == [1, 1]


def test_end_to_end_on_tiny_random(tiny_fp32, tiny_path):
    """HFEngine on tiny-random: MC labels -> dataset -> 2 PRM updates -> beam search with the PRM."""
    from envs.chain_math import ChainMathConfig, ChainMathSource, oracle_solution, step_labels
    from rl.types import split_steps
    from rewards.prm.labeling import build_label_dataset
    from rewards.prm.model import build_prm, make_scorer
    from rewards.prm.train import train_prm
    from rl.config import LoraConfig
    from rl.rollout.hf import HFEngine

    engine, tok = HFEngine(tiny_fp32), tiny_fp32.tokenizer
    tasks = ChainMathSource(ChainMathConfig(min_horizon=2, max_horizon=2), seed=0).sample(2)
    solutions = [(t, split_steps(oracle_solution(t))) for t in tasks]
    params = SamplingParams(max_new_tokens=4, temperature=1.0, seed=0)
    ds = build_label_dataset(engine, tok, solutions, k=2, params=params, exact_labels=step_labels)
    assert len(ds) == 2 and ds[0]["exact_labels"] == [True, True, True]
    assert ds[0]["labels"][-1] is True  # the oracle's final line is right (labelled directly)
    prm, prm_tok = build_prm(str(tiny_path), lora=LoraConfig(r=4, alpha=8), dtype="float32", device="cpu")
    out = train_prm(prm, prm_tok, ds, label_key="soft_labels", epochs=5, batch_size=2, max_steps=2)
    assert out["steps"] == 2
    text, trace = step_beam_search(engine, tok, make_scorer(prm, prm_tok), tasks[0], beam_width=2,
                                   expand_per_beam=2, max_steps=2, params=params, how="min")
    assert isinstance(text, str) and 1 <= len(trace) <= 2
    assert all(len(r["kept"]) <= 2 and r["expanded"] <= 2 for r in trace)
