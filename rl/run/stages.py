"""A multi-stage recipe's ``state.json``: which stages are done and what each returned, so a
second run with ``--resume`` skips them (recipes/long_horizon.py, recipes/long_context.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rl.run.io import atomic_write_text


class Stages:
    """``<out>/state.json``, rewritten atomically after every stage."""

    def __init__(self, out: Path):
        self.path = Path(out) / "state.json"
        self.state: dict[str, Any] = json.loads(self.path.read_text()) if self.path.exists() else {}

    def done(self, name: str) -> bool:
        return name in self.state

    def record(self, name: str, value: Any) -> None:
        """Mark stage ``name`` done with its result ``value`` (JSON-serialisable)."""
        self.state[name] = value
        self._save()

    def forget(self, name: str) -> None:
        """Mark stage ``name`` not done (it runs again); a stage not done is left as it is."""
        if self.state.pop(name, None) is not None:
            self._save()

    def _save(self) -> None:
        atomic_write_text(self.path, json.dumps(self.state, indent=1))
