"""Fault injection for the reliability tests: ``HORIZON_FAULT=<point>:<step>`` SIGKILLs the
process when the training loop reaches ``point`` at ``step`` (e.g. ``after_update:3``).

Unset (the normal case) it does nothing. It exists so tests can kill a run at an exact point
instead of racing a timer.
"""

from __future__ import annotations

import os
import signal


def maybe_fail(point: str, step: int) -> None:
    spec = os.environ.get("HORIZON_FAULT")
    if spec and spec == f"{point}:{step}":
        os.kill(os.getpid(), signal.SIGKILL)
