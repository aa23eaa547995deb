"""Math-Shepherd MC labels with a scripted completer (no model) and TRL-format rows."""

import pytest

from envs.chain_math import step_labels
from rewards.prm.labeling import build_label_dataset, mc_step_labels, prefix_text, to_trl_rows
from rl.rollout.base import SamplingParams
from rl.rollout.chat import render_prompt
from rl.types import Completion, Task

# "Start with 2. Add 3. Multiply by 4." -> 5, 20
TASK = Task(id="chain_math/h2/t0", messages=[{"role": "user", "content": "Start with 2. Add 3. Multiply by 4."}],
            answer="20", meta={"horizon": 2, "start": 2, "ops": [["add", 3], ["multiply", 4]], "values": [5, 20]},
            source="chain_math")
FLAWED = ["2 + 3 = 5", "5 * 4 = 21", "#### 21"]
CORRECT = ["2 + 3 = 5", "5 * 4 = 20", "#### 20"]

# completions the scripted completer returns, keyed by the last line of the prefix it sees
OUTCOMES = {
    "2 + 3 = 5": ["5 * 4 = 20\n#### 20", "5 * 4 = 20\n#### 20", "5 * 4 = 24\n#### 24", "5 * 4 = 20\n#### 20"],
    "5 * 4 = 21": ["#### 21", "#### 21", "#### 21", "Wait, 5 * 4 = 20\n#### 20"],
    "5 * 4 = 20": ["#### 20", "#### 20", "#### 20", "#### 20"],
}


class ScriptedCompleter:
    """Reads the prefix's last line from the decoded prompt and replays OUTCOMES for it."""

    name = "scripted"

    def __init__(self, tokenizer):
        self.tokenizer, self.calls = tokenizer, []

    def generate(self, prompts, params, n=1):
        self.calls.append((list(map(list, prompts)), n))
        out = []
        for prompt in prompts:
            text = self.tokenizer.decode(prompt)
            assert text.endswith("\n")  # every prefix ends with its step's newline
            last = text.split("assistant\n")[-1].strip().split("\n")[-1]
            out.append([Completion([0], [0.0], t, "stop") for t in OUTCOMES[last][:n]])
        return out


def test_mc_labels_exact_and_engine_called_once(tokenizer):
    engine = ScriptedCompleter(tokenizer)
    flawed, correct = mc_step_labels(engine, tokenizer, [(TASK, FLAWED), (TASK, CORRECT)],
                                     k=4, params=SamplingParams(temperature=1.0))
    # flawed: prefix 0 -> 3 of 4 completions reach 20 (0.75); prefix 1 -> 1 of 4 recovers (0.25);
    # "#### 21" states the answer: labelled directly, wrong (0.0), not sampled
    assert flawed.soft == [0.75, 0.25, 0.0]
    assert flawed.hard == [True, True, False]
    assert flawed.sampled == [True, True, False]
    assert correct.soft == [0.75, 1.0, 1.0]
    assert correct.hard == [True, True, True]
    # one batched call: 2 non-final prefixes per solution -> 4 prompts, n = k = 4
    assert len(engine.calls) == 1
    prompts, n = engine.calls[0]
    assert (len(prompts), n) == (4, 4)
    chat = render_prompt(tokenizer, TASK.messages)
    assert prompts[1] == chat + tokenizer("2 + 3 = 5\n5 * 4 = 21\n", add_special_tokens=False)["input_ids"]
    assert prefix_text(FLAWED, 1) == "2 + 3 = 5\n5 * 4 = 21\n"


def test_all_final_steps_need_no_engine_call(tokenizer):
    engine = ScriptedCompleter(tokenizer)
    (lab,) = mc_step_labels(engine, tokenizer, [(TASK, ["#### 20"])], k=4, params=SamplingParams())
    assert lab.soft == [1.0] and engine.calls == []
    with pytest.raises(ValueError):
        mc_step_labels(engine, tokenizer, [(TASK, FLAWED)], k=0, params=SamplingParams())


def test_trl_rows_one_label_per_step(tokenizer):
    solutions = [(TASK, FLAWED), (TASK, CORRECT)]
    labels = mc_step_labels(ScriptedCompleter(tokenizer), tokenizer, solutions, k=4, params=SamplingParams())
    rows = to_trl_rows(solutions, labels, exact_labels=step_labels)
    assert rows[0]["prompt"] == "Start with 2. Add 3. Multiply by 4."
    assert rows[0]["completions"] == FLAWED
    assert rows[0]["labels"] == [True, True, False]
    assert rows[0]["soft_labels"] == [0.75, 0.25, 0.0]
    assert rows[0]["exact_labels"] == [True, False, False]  # chain_math's ground truth (its spec's labeller)
    assert rows[1]["exact_labels"] == [True, True, True]
    assert (rows[0]["task_id"], rows[0]["horizon"]) == ("chain_math/h2/t0", 2)
    for row in rows:
        assert len(row["labels"]) == len(row["soft_labels"]) == len(row["completions"])


def test_build_dataset_and_tasks_without_exact_labels(tokenizer):
    plain = Task(id="qa/0", messages=[{"role": "system", "content": "Be brief."},
                                      {"role": "user", "content": "2 + 3?"}], answer="5")
    ds = build_label_dataset(ScriptedCompleter(tokenizer), tokenizer,
                             [(TASK, FLAWED), (plain, ["#### 5"])], k=4, params=SamplingParams())
    assert len(ds) == 2
    assert ds[1]["exact_labels"] is None and ds[1]["labels"] == [True] and ds[1]["horizon"] is None
    assert ds[1]["messages"][0]["role"] == "system"
    assert ds[0]["labels"] == [True, True, False]


def test_label_stage_samples_hot_and_completes_at_mc_temperature(tokenizer, tmp_path):
    from rl.config import load_config
    from rl.prm.config import PRMConfig
    from rl.prm.pipeline import label_stage

    class Recorder:
        name = "recorder"

        def __init__(self):
            self.temperatures = []

        def generate(self, prompts, params, n=1):
            self.temperatures.append(params.temperature)
            text = "1 + 1 = 2\n#### 2" if len(self.temperatures) == 1 else "#### 0"
            return [[Completion([0], [0.0], text, "stop")] * n for _ in prompts]

    cfg = load_config(PRMConfig, None, ["--num_tasks", "2", "--samples_per_task", "1", "--mc_k", "3",
                                        "--mc_temperature", "0.3"])
    engine = Recorder()
    quality = label_stage(cfg, tmp_path, engine, tokenizer, SamplingParams(temperature=1.0, max_new_tokens=8))
    assert engine.temperatures == [1.0, 0.3]  # solutions at the rollout's temperature, MC cooler
    assert quality["solutions"] == 2 and quality["steps"] == 4
    assert (tmp_path / "labels" / "quality.json").is_file()


def test_mc_temperature_must_be_positive():
    from rl.config import load_config
    from rl.errors import ConfigError
    from rl.prm.config import PRMConfig

    with pytest.raises(ConfigError, match="mc_temperature"):
        load_config(PRMConfig, None, ["--mc_temperature", "0"])
