"""Offline distillation: verifier-filtered traces, the dataset with provenance, SFT, the CLI."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import torch

from envs.chain_math import ChainMathConfig, ChainMathSource, oracle_solution
from rl.build import build_reward
from rl.config import EnvConfig, RewardConfig, load_config
from rl.distill.config import DistillConfig
from rl.distill.pipeline import build_sft_trainer, generate_traces, load_traces, save_traces
from rl.errors import ConfigError, DataError
from rl.distill.teachers import OpenAITeacher, OracleTeacher

REWARD = build_reward(EnvConfig(), RewardConfig(verifier_timeout_s=0))


def _source(seed=0):
    return ChainMathSource(ChainMathConfig(min_horizon=1, max_horizon=3), seed=seed)


def _half_wrong_oracle(task):
    """The exact oracle on even task indices, a final answer off by one on odd ones."""
    text = oracle_solution(task)
    if int(task.id.rsplit("-i", 1)[1]) % 2:
        return text.rsplit("#### ", 1)[0] + f"#### {int(task.answer) + 1}"
    return text


def test_verifier_rejects_wrong_traces():
    teacher = OracleTeacher(_half_wrong_oracle, name="buggy")
    accepted, rejected, stats = generate_traces(teacher, _source(), REWARD, num_tasks=10, k=1)
    assert len(accepted) == 5 and len(rejected) == 5
    assert all(int(r["task_id"].rsplit("-i", 1)[1]) % 2 == 0 for r in accepted)
    assert all(not r["correct"] and r["verifier_error"] is None for r in rejected)
    assert stats["acceptance_rate"] == 0.5 and stats["accepted"] == 5
    row = accepted[0]
    assert row["prompt"][-1]["role"] == "user" and row["completion"][0]["role"] == "assistant"
    assert row["completion"][0]["content"].endswith(f"#### {row['answer']}")


class _FlakyTeacher:
    """Fails whole chunks, and for good on one task: that task is recorded, the rest kept."""

    name = "flaky"

    def solve(self, tasks, k=1):
        if len(tasks) > 1 or tasks[0].id.endswith("-i1"):
            raise ConnectionError("endpoint went away")
        return [[oracle_solution(tasks[0])]]


def test_a_failing_teacher_loses_one_task_not_the_run():
    accepted, rejected, stats = generate_traces(_FlakyTeacher(), _source(), REWARD, num_tasks=3, k=1)
    assert len(accepted) == 2 and stats["teacher_errors"] == 1 and stats["verifier_errors"] == 0
    assert rejected[0]["verifier_error"].startswith("teacher: ConnectionError")


def test_eval_prompts_are_left_out():
    source = _source()
    first = source.task_at(0).messages[-1]["content"]
    _, _, stats = generate_traces(OracleTeacher(oracle_solution, "o"), _source(), REWARD, 4, 1,
                                  exclude_prompts={first})
    assert stats["skipped_eval_overlap"] == 1 and stats["tasks"] == 4


def test_dataset_round_trips_with_provenance(tmp_path):
    accepted, rejected, stats = generate_traces(
        OracleTeacher(_half_wrong_oracle, "buggy"), _source(), REWARD, num_tasks=6, k=1)
    provenance = {"teacher": "buggy", "sampling": {"temperature": 0.7}, **stats}
    save_traces(tmp_path, accepted, rejected, provenance)
    dataset, loaded = load_traces(tmp_path / "traces")
    assert loaded == json.loads(json.dumps(provenance))
    assert dataset.to_list() == accepted
    assert json.loads((tmp_path / "provenance.json").read_text())["acceptance_rate"] == 0.5
    rejects = [json.loads(line) for line in (tmp_path / "traces_rejected.jsonl").read_text().splitlines()]
    assert [r["task_id"] for r in rejects] == [r["task_id"] for r in rejected]


def test_unusable_datasets_give_clear_errors(tmp_path):
    from datasets import Dataset

    with pytest.raises(DataError, match="no trace the verifier accepted"):
        save_traces(tmp_path, [], [{"task_id": "x"}], {"teacher": "t"})
    with pytest.raises(DataError, match="run the 'traces' stage"):
        load_traces(tmp_path / "nothing")
    Dataset.from_list([{"prompt": "p"}]).save_to_disk(str(tmp_path / "bad"))
    with pytest.raises(DataError, match=r"lacks column\(s\) \['completion'\]"):
        load_traces(tmp_path / "bad")
    Dataset.from_dict({"prompt": [], "completion": []}).save_to_disk(str(tmp_path / "empty"))
    with pytest.raises(DataError, match="is empty"):
        load_traces(tmp_path / "empty")


def test_bad_distill_configs_fail_before_loading():
    with pytest.raises(ConfigError, match="teacher.model"):
        load_config(DistillConfig, None, ["--teacher.kind", "model"])
    with pytest.raises(ConfigError, match="teacher.base_url"):
        load_config(DistillConfig, None, ["--teacher.kind", "openai", "--teacher.model", "m"])
    with pytest.raises(ConfigError, match="stages"):
        load_config(DistillConfig, None, ["--stages", "[traces, train]"])
    from rl.distill.teachers import oracle_for

    with pytest.raises(ConfigError, match="env 'test_user_env:PARITY' has no oracle solver"):
        oracle_for(EnvConfig(name="test_user_env:PARITY"))  # an env whose spec has no oracle


def test_sft_step_lowers_loss_on_its_batch(tmp_path, tiny_path):
    accepted, _, _ = generate_traces(OracleTeacher(oracle_solution, "o"), _source(), REWARD, 4, 1)
    from datasets import Dataset

    cfg = load_config(DistillConfig, None, [
        "--model", str(tiny_path), "--dtype", "float32", "--device", "cpu", "--progress", "false",
        "--sft.max_steps", "1", "--sft.batch_size", "4", "--sft.lr", "0.01", "--sft.warmup_ratio", "0"])
    trainer = build_sft_trainer(cfg, Dataset.from_list(accepted), tmp_path)
    batch = next(iter(trainer.get_train_dataloader()))
    # completion-only loss: every prompt token is masked (-100), every completion token is not
    tok = trainer.processing_class
    for ids, labels in zip(batch["input_ids"], batch["labels"]):
        kept = [i for i, (t, lab) in enumerate(zip(ids, labels)) if lab != -100]
        completion = tok.decode(ids[kept[0]:kept[-1] + 1])
        assert "####" in completion and "Start with" not in completion

    def loss_on_batch():
        trainer.model.eval()
        with torch.no_grad():
            return float(trainer.model(**{k: batch[k] for k in ("input_ids", "attention_mask", "labels")}).loss)

    before = loss_on_batch()
    trainer.train()
    after = loss_on_batch()
    assert after < before - 0.05, (before, after)


class _FakeOpenAI(BaseHTTPRequestHandler):
    """A chat-completions endpoint that answers each request with n scripted choices."""

    requests: list = []

    def do_POST(self):  # noqa: N802 - http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _FakeOpenAI.requests.append(body)
        content = body["messages"][-1]["content"]
        choices = [{"index": i, "finish_reason": "stop",
                    "message": {"role": "assistant", "content": f"{len(content)}\n#### {i}"}}
                   for i in range(body.get("n", 1))]
        reply = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                            "choices": choices}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


def test_openai_teacher_samples_k_per_task_from_an_endpoint():
    server = HTTPServer(("127.0.0.1", 0), _FakeOpenAI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        teacher = OpenAITeacher(f"http://127.0.0.1:{server.server_port}/v1", "teacher-7b", "key",
                                temperature=0.5, max_new_tokens=64)
        tasks = _source().sample(3)
        texts = teacher.solve(tasks, k=2)
        teacher.close()
    finally:
        server.shutdown()
    assert [len(t) for t in texts] == [2, 2, 2]
    assert texts[1] == [f"{len(tasks[1].messages[-1]['content'])}\n#### {i}" for i in range(2)]
    sent = _FakeOpenAI.requests[-1]
    assert sent["model"] == "teacher-7b" and sent["n"] == 2 and sent["temperature"] == 0.5
    assert sent["max_tokens"] == 64


def test_distill_cli_end_to_end(tmp_path, tiny_path):
    from rl.cli import main

    out = tmp_path / "run"
    args = ["distill", "--config", "recipes/configs/distill_chain_math.yaml", "--model", str(tiny_path),
            "--output_dir", str(out), "--num_tasks", "24", "--sft.max_steps", "2", "--sft.batch_size", "4",
            "--eval.tasks_per_horizon", "2", "--eval.horizons", "[1, 2]", "--eval.max_new_tokens", "8",
            "--eval.engine", "hf", "--progress", "false"]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["traces"]["accepted"] == 24 and summary["sft"]["steps"] == 2
    assert set(summary["eval_after"]["pass@1"]) == {"1", "2"}
    after = json.loads((out / "eval" / "after.json").read_text())
    assert after["model"] == str(out / "model") and after["n_per_horizon"] == {"1": 2, "2": 2}
    assert (out / "eval" / "horizon_curve.png").stat().st_size > 0
    assert (out / "adapter" / "adapter_config.json").exists()
    # the merged student loads like any model
    from rl.models import load_policy

    assert load_policy(str(out / "model"), lora=None, device="cpu").model is not None
    # a second run into the same directory must not clobber it
    assert main(args) == 2
