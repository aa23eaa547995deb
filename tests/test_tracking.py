"""report_to: TensorBoard and trackio files written offline into the run dir and read back under
the jsonl names; resumed runs do not duplicate steps; missing packages and bad names name the fix."""

import importlib.util
import json
import socket
import sqlite3

import pytest

from rl.config import load_config
from rl.errors import ConfigError
from rl.run.run_dir import RunDir
from rl.run.tracking import Trackers, split_values
from rl.trainer.config import TrainConfig

ROWS = [
    {"reward/mean": 0.25, "correct/mean": 0.5, "kl": None, "len/mean": 12.0, "engine": "hf"},
    {"reward/mean": 0.5, "correct/mean": 0.75, "kl": 0.01, "len/mean": 10.0, "engine": "hf"},
    {"reward/mean": 0.75, "correct/mean": 1.0, "kl": 0.02, "len/mean": 8.0, "engine": "vllm"},
]


@pytest.fixture()
def offline(monkeypatch):
    """No network: internet sockets refuse to connect (and record the attempt); trackio stays local."""
    attempts = []
    real_connect = socket.socket.connect

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(address)
            raise OSError(f"network disabled in this test: {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    for var in ("TRACKIO_DIR", "TRACKIO_SPACE_ID", "TRACKIO_SERVER_URL", "WANDB_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield attempts
    assert attempts == [], f"tried the network: {attempts}"


def _jsonl_numbers(run: RunDir) -> dict[int, dict[str, float]]:
    """step -> the numeric metrics of that metrics.jsonl row (what every tracker must hold)."""
    return {r["step"]: split_values(r)[0] for r in run.read_metrics()}


def _tensorboard_scalars(path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(path))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _trackio_rows(path, run_name: str) -> dict[int, dict[str, float]]:
    with sqlite3.connect(path / "trackio" / "horizon.db") as conn:
        rows = conn.execute("SELECT step, metrics FROM metrics WHERE run_name = ? ORDER BY id", (run_name,)).fetchall()
    steps = [step for step, _ in rows]
    assert len(steps) == len(set(steps)), f"duplicate steps in trackio: {steps}"
    return {step: json.loads(metrics) for step, metrics in rows}


def test_default_is_jsonl_only_and_writes_no_tracker_files(tmp_path):
    assert TrainConfig().report_to == ["jsonl"]
    run = RunDir(tmp_path)
    run.log_metrics(1, ROWS[0])
    run.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="needs the tracking extra")
def test_tensorboard_holds_the_jsonl_names_and_values(tmp_path, offline):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with RunDir(tmp_path, report_to=["tensorboard"], config={"seed": 3}) as run:
        for step, row in enumerate(ROWS, 1):
            run.log_metrics(step, row)
    scalars = _tensorboard_scalars(tmp_path / "tensorboard")
    expected = _jsonl_numbers(run)
    # kl is null at step 1 in the jsonl, so TensorBoard has it from step 2 on; engine is text
    assert sorted(scalars) == ["correct/mean", "kl", "len/mean", "reward/mean"]
    for tag, points in scalars.items():
        assert [s for s, _ in points] == [s for s in expected if tag in expected[s]]
        for step, value in points:
            assert value == pytest.approx(expected[step][tag], rel=1e-6)  # stored as float32
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    texts = {tag: [(e.step, e.tensor_proto.string_val[0].decode()) for e in acc.Tensors(tag)]
             for tag in acc.Tags()["tensors"]}
    assert texts["engine/text_summary"] == [(1, "hf"), (3, "vllm")]  # logged when it changes
    assert '"seed": 3' in texts["config/text_summary"][0][1]


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="needs the tracking extra")
def test_tensorboard_resume_replaces_the_redone_steps(tmp_path, offline):
    first = Trackers(["jsonl", "tensorboard"], tmp_path)
    for step in range(1, 6):  # the run is killed after step 5; its newest checkpoint is step 3
        first.log(step, {"reward/mean": float(step)})
    first.close()
    resumed = Trackers(["jsonl", "tensorboard"], tmp_path)
    for step in range(4, 7):  # the resumed run redoes steps 4 and 5, then goes on
        resumed.log(step, {"reward/mean": 100.0 + step})
    resumed.close()
    # purge_step=4: the events of the first attempt from step 4 on are dropped when read
    assert _tensorboard_scalars(tmp_path / "tensorboard")["reward/mean"] == [
        (1, 1.0), (2, 2.0), (3, 3.0), (4, 104.0), (5, 105.0), (6, 106.0)]


@pytest.mark.skipif(importlib.util.find_spec("trackio") is None, reason="needs the tracking extra")
def test_trackio_stores_locally_in_the_run_dir_with_the_jsonl_names(tmp_path, offline):
    for name in ("a", "b"):  # two runs in one process: trackio's directory is repointed for the second
        with RunDir(tmp_path / name, report_to=["jsonl", "trackio"], config={"seed": 1}) as run:
            for step, row in enumerate(ROWS, 1):
                run.log_metrics(step, row)
        assert _trackio_rows(tmp_path / name, name) == _jsonl_numbers(run)
        with sqlite3.connect(tmp_path / name / "trackio" / "horizon.db") as conn:
            (config,) = conn.execute("SELECT config FROM configs WHERE run_name = ?", (name,)).fetchone()
        assert json.loads(config)["seed"] == 1


@pytest.mark.skipif(importlib.util.find_spec("trackio") is None, reason="needs the tracking extra")
def test_trackio_resume_does_not_duplicate_steps(tmp_path, offline):
    first = Trackers(["trackio"], tmp_path, name="r")
    for step in range(1, 4):
        first.log(step, {"reward/mean": float(step)})
    first.close()
    resumed = Trackers(["trackio"], tmp_path, name="r")
    for step in range(2, 5):  # resumed from the step-1 checkpoint: steps 2 and 3 are redone
        resumed.log(step, {"reward/mean": 10.0 + step})
    resumed.close()
    # trackio cannot delete rows: steps it holds keep their first values, later steps are added
    assert _trackio_rows(tmp_path, "r") == {1: {"reward/mean": 1.0}, 2: {"reward/mean": 2.0},
                                            3: {"reward/mean": 3.0}, 4: {"reward/mean": 14.0}}


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed")
def test_missing_wandb_names_the_fix(tmp_path):
    cfg = load_config(TrainConfig, None, ["--report_to", "[jsonl, wandb]"])  # the name is valid
    with pytest.raises(ConfigError, match=r"report_to.*pip install wandb"):
        RunDir(tmp_path / "run", report_to=cfg.report_to, config=cfg)  # before any model loads
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_missing_tracking_extra_names_the_extra(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("tensorboard", "tensorboardX") else real(name, *a))
    with pytest.raises(ConfigError, match=r"report_to.*tensorboard.*pip install 'horizon-rl\[tracking\]'"):
        Trackers(["tensorboard"], tmp_path)


@pytest.mark.parametrize("value, message", [
    ("[tensorbord]", r"'report_to': 'tensorbord' is not a tracker \(did you mean 'tensorboard'\?\)"),
    ("[jsonl, mlflow]", r"'report_to': 'mlflow' is not a tracker: choose from \['jsonl', 'tensorboard'"),
])
def test_unknown_tracker_name_is_a_config_error(value, message):
    with pytest.raises(ConfigError, match=message):
        load_config(TrainConfig, None, ["--report_to", value])


def test_split_values_keeps_numbers_and_text_apart():
    import numpy as np

    numbers, texts = split_values({"step": 3, "time": 1.0, "kl": None, "reward/mean": np.float32(0.5),
                                   "errors/env": 2, "update/skipped": True, "engine": "hf", "x": [1]})
    assert numbers == {"reward/mean": 0.5, "errors/env": 2.0, "update/skipped": 1.0}
    assert texts == {"engine": "hf"}
