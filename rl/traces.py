"""Saved trace datasets (``<distill run>/traces``): what SFT trains on, and what an RL run's SFT
anchor (``rl.trainer.anchor``) replays. Shared by the jobs, which do not import one another."""

from __future__ import annotations

import json
from pathlib import Path

from rl.errors import DataError

REQUIRED_COLUMNS = ("prompt", "completion")


def load_traces(path: str | Path):
    """``(dataset, provenance)`` from a ``traces/`` directory; ``DataError`` if it is unusable."""
    from datasets import load_from_disk

    path = Path(path)
    if not (path / "dataset_info.json").exists():
        raise DataError(f"'{path}' is not a saved traces dataset: run the 'traces' stage first "
                        "(stages: [traces, ...]) or point output_dir at a finished run")
    state = json.loads((path / "state.json").read_text()) if (path / "state.json").exists() else {}
    if not state.get("_data_files", [None]):  # datasets 5 cannot even load an empty saved dataset
        raise DataError(f"traces dataset '{path}' is empty: regenerate it with more tasks")
    dataset = load_from_disk(str(path))
    missing = [c for c in REQUIRED_COLUMNS if c not in dataset.column_names]
    if missing:
        raise DataError(f"traces dataset '{path}' lacks column(s) {missing}: it needs "
                        f"{list(REQUIRED_COLUMNS)} (TRL prompt/completion rows); got {dataset.column_names}")
    if len(dataset) == 0:
        raise DataError(f"traces dataset '{path}' is empty: regenerate it with more tasks")
    provenance = json.loads(dataset.info.description or "{}")
    return dataset, provenance
