"""``horizon plot`` draws the standard PNGs from hand-written metrics.jsonl (skipping what a run did
not log); ``horizon models`` lists the built-in names without importing torch."""

import json
import os
import subprocess
import sys

import pytest

from rl.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


def _write_run(path, steps=6, kl=True):
    """A run dir whose metrics.jsonl has every standard metric but entropy and the curriculum's."""
    path.mkdir(parents=True)
    rows = []
    for s in range(1, steps + 1):
        rows.append({"step": s, "time": 1000.0 + 2 * s, "reward/mean": s / steps, "correct/mean": s / steps,
                     "correct/h1": 1.0, "correct/h2": s / steps, "correct/h10": 0.0,
                     "kl": 0.01 * s if kl else None, "entropy": None, "clip_frac/low": 0.0,
                     "clip_frac/high": 0.1, "len/mean": 20.0 - s, "len/truncated_frac": 0.0,
                     "time/step_s": 2.0, "time/rollout_s": 1.5, "time/update_s": 0.5,
                     "time/train_s": 2.0 * s, "engine": "hf"})
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_plot_writes_the_standard_pngs_and_skips_absent_metrics(tmp_path, capsys):
    run = _write_run(tmp_path / "grpo")
    assert main(["plot", str(run), "--smooth", "2"]) == 0
    out = capsys.readouterr().out
    written = sorted(p.name for p in (run / "plots").iterdir())
    assert written == ["accuracy_by_horizon.png", "clip_fraction.png", "kl.png", "lengths.png", "reward.png",
                       "step_time.png"]  # no entropy.png: entropy is null in every row
    for name in written:
        assert (run / "plots" / name).read_bytes().startswith(PNG)
    assert "skipped (not in these runs): curriculum/success_h*, curriculum/level, entropy" in out


def test_plot_overlays_runs_into_the_output_dir(tmp_path):
    a = _write_run(tmp_path / "a")
    b = _write_run(tmp_path / "b", steps=4, kl=False)  # a metric one run lacks is still drawn for the other
    out = tmp_path / "compare"
    assert main(["plot", str(a), str(b), "--output", str(out)]) == 0
    assert "kl.png" in {p.name for p in out.iterdir()}
    assert not (a / "plots").exists()


def test_plot_panels_and_lines_follow_the_data(tmp_path):
    from rl.run.plots import _columns, _has_data, read_run_metrics

    rows = read_run_metrics(_write_run(tmp_path / "r"))
    assert _columns(rows, "correct/h*") == ["correct/h1", "correct/h2", "correct/h10"]  # by number
    assert not _has_data({"r": rows}, "entropy") and _has_data({"r": rows}, "kl")


def test_plot_of_a_path_without_metrics_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["plot", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "has no metrics.jsonl" in err and "output_dir of horizon train" in err
    assert main(["plot", str(tmp_path / "nowhere")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_plot_of_a_run_with_no_standard_metric_is_an_error(tmp_path, capsys):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "metrics.jsonl").write_text(json.dumps({"step": 1, "time": 0.0, "other": 1.0}) + "\n")
    assert main(["plot", str(tmp_path / "r")]) == 2
    assert "nothing to plot" in capsys.readouterr().err


@pytest.mark.parametrize("built", [False, True])
def test_models_lists_the_built_in_names_without_torch(tmp_path, built):
    if built:
        (tmp_path / "models" / "tiny-random-v2").mkdir(parents=True)
        (tmp_path / "models" / "tiny-random-v2" / "config.json").write_text("{}")
    code = "import sys; from rl.cli import main; main(['models']); print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "HORIZON_CACHE": str(tmp_path)})
    out = proc.stdout
    assert out.strip().endswith("False"), "horizon models imported torch"
    assert "smollm2-135m-instruct" in out and "tiny-random" in out
    assert str(tmp_path / "models" / "tiny-random-v2") in out
    tiny = out[out.index("\ntiny-random"):]
    assert ("[present]" in tiny) == built and ("not built yet" in tiny) != built
