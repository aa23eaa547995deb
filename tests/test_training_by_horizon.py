"""recipes/training_by_horizon.py on hand-made rollouts."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))


def _row(h, correct, labels):
    return {"horizon": h, "step_labels": labels, "outcome": None if correct is None else {"correct": correct}}


def test_solved_by_horizon_counts_right_answers_with_every_step_right(tmp_path, capsys):
    import training_by_horizon

    steps = {1: [_row(5, True, [True] * 5), _row(5, True, [True, False, True, True, True]),  # lucky
                 _row(6, False, [True] * 6), _row(6, None, None)],                          # unscored
             2: [_row(5, False, [False] * 5), _row(6, True, [True] * 6)]}
    (tmp_path / "rollouts").mkdir()
    for step, rows in steps.items():
        (tmp_path / "rollouts" / f"step_{step}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2}\n')
    # h5: 1 of 3 (the lucky answer does not count); h6: 1 of 2 (the unscored sample left out)
    assert training_by_horizon.solved_by_horizon(tmp_path, [1, 2]) == {5: (3, 1 / 3), 6: (2, 0.5)}
    assert training_by_horizon.solved_by_horizon(tmp_path, [1]) == {5: (2, 0.5), 6: (1, 0.0)}
    assert training_by_horizon.main([str(tmp_path), "--window", "1"]) == 0
    first, last = capsys.readouterr().out.splitlines()
    assert "first 1 steps" in first and "h5 0.50 (2)  h6 0.00 (1)" in first
    assert "last 1 steps" in last and "h5 0.00 (1)  h6 1.00 (1)" in last
