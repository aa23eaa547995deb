"""Experiment trackers beside ``metrics.jsonl``: TensorBoard, trackio and W&B (``report_to``).

``metrics.jsonl`` is always written (by ``RunDir``); the trackers listed in ``report_to`` get
the same rows under the same metric names, at step = the training step. Numbers go to every
tracker; text values (``engine``) go to TensorBoard as text, logged when they change; ``None``
(a metric not computed at that step) is left out, as are the row's ``step`` and ``time``.

Nothing goes over the network unless asked for:

- ``tensorboard``: event files in ``RUN_DIR/tensorboard/`` (``tensorboard --logdir RUN_DIR``),
  written with ``torch.utils.tensorboard`` (or ``tensorboardX``), flushed every step.
- ``trackio``: its local SQLite database in ``RUN_DIR/trackio/`` (project ``horizon``, run =
  the run name); ``TRACKIO_DIR=RUN_DIR/trackio trackio show`` opens the dashboard. A
  ``TRACKIO_DIR`` you set yourself wins; ``TRACKIO_SPACE_ID``/``TRACKIO_SERVER_URL``, set by
  you, send it to a Space or server (your choice: trackio's own network mode).
- ``wandb``: ``mode=offline`` (files in ``RUN_DIR/wandb/``, ``wandb sync`` later) unless
  ``WANDB_MODE`` is set or ``WANDB_API_KEY`` is in the environment.

Resume: the trackers open on the first row logged, at step ``s``. TensorBoard opens with
``purge_step=s``, so the events an interrupted run wrote from step ``s`` on are dropped when
read (no duplicate steps). trackio cannot delete rows: it keeps the values first logged for
steps up to the newest one it holds for the run and receives only later steps (a resumed run
redraws the same samples, so those values agree with ``metrics.jsonl`` up to kernel
nondeterminism). W&B resumes its run (``resume="allow"``, id kept in ``RUN_DIR/wandb/run_id``)
and ignores steps it already has, by its own rule.

Example::

    trackers = Trackers(["jsonl", "tensorboard"], "runs/x", name="x", config={"seed": 0})
    trackers.log(1, {"reward/mean": 0.5, "engine": "hf"})
    trackers.close()
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.util
import io
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any, Sequence

from rl.errors import ConfigError

TRACKERS = ("jsonl", "tensorboard", "trackio", "wandb")
TRACKIO_PROJECT = "horizon"
# tracker -> (importable packages, any one of which does; how to install them)
_PACKAGES = {
    "tensorboard": (("tensorboard", "tensorboardX"), "pip install 'horizon-rl[tracking]'"),
    "trackio": (("trackio",), "pip install 'horizon-rl[tracking]'"),
    "wandb": (("wandb",), "pip install wandb"),
}


def check_tracker_names(report_to: Sequence[str], key: str = "report_to") -> None:
    """Raise ``ConfigError`` (naming ``key``) for a name that is not in ``TRACKERS``."""
    if isinstance(report_to, str):
        raise ConfigError(f"config key '{key}': must be a list, e.g. [jsonl, {report_to}], got {report_to!r}")
    for name in report_to:
        if name not in TRACKERS:
            close = difflib.get_close_matches(str(name), TRACKERS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"config key '{key}': {name!r} is not a tracker{hint}: choose from "
                              f"{list(TRACKERS)} (jsonl is always written)")


def check_trackers_installed(report_to: Sequence[str], key: str = "report_to") -> None:
    """Raise ``ConfigError`` naming the install command for a listed tracker whose package is
    missing (a cheap ``find_spec``: nothing is imported)."""
    check_tracker_names(report_to, key)
    for name in dict.fromkeys(report_to):
        if name == "jsonl":
            continue
        packages, install = _PACKAGES[name]
        if not any(importlib.util.find_spec(p) is not None for p in packages):
            raise ConfigError(f"config key '{key}': {name} is listed but the package '{packages[0]}' is not "
                              f"installed: {install}, or remove {name} from {key}")


def split_values(metrics: dict[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """A metrics row as (numbers, texts); ``None``, ``step``, ``time`` and other types are left out.

    Numpy/torch scalars count as numbers; booleans become 0.0/1.0.
    """
    numbers: dict[str, float] = {}
    texts: dict[str, str] = {}
    for key, value in metrics.items():
        if key in ("step", "time") or value is None:
            continue
        if hasattr(value, "item") and not isinstance(value, (str, bytes)):
            value = value.item()
        if isinstance(value, (bool, int, float)):
            numbers[key] = float(value)
        elif isinstance(value, str):
            texts[key] = value
    return numbers, texts


class Trackers:
    """The trackers of ``report_to`` for one run directory (``jsonl`` is ``RunDir``'s own).

    Checks names and packages at construction (``ConfigError``); each tracker opens on the
    first ``log``, whose step is the purge step of a resumed run (see the module docstring).
    ``close`` flushes and closes them; a later ``log`` opens them again.
    """

    def __init__(self, report_to: Sequence[str], run_dir: str | Path, name: str | None = None,
                 config: dict[str, Any] | None = None):
        check_trackers_installed(report_to)
        self.names = [n for n in dict.fromkeys(report_to) if n != "jsonl"]
        self.run_dir = Path(run_dir)
        self.name = name or self.run_dir.resolve().name
        self.config = config or {}
        self._open: list[Any] | None = None

    def __bool__(self) -> bool:
        return bool(self.names)

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        """Send one row (numbers to all trackers, text to TensorBoard) at ``step``."""
        if not self.names:
            return
        if self._open is None:
            self._open = self._start(step)
        numbers, texts = split_values(metrics)
        for tracker in self._open:
            tracker.log(step, numbers, texts)

    def close(self) -> None:
        """Flush and close every open tracker (safe to call twice)."""
        trackers, self._open = self._open or [], None
        for tracker in trackers:
            tracker.close()

    def _start(self, step: int) -> list[Any]:
        opened: list[Any] = []
        try:
            for name in self.names:
                opened.append(_OPENERS[name](self.run_dir, self.name, self.config, step))
        except BaseException:
            for tracker in opened:
                tracker.close()
            raise
        return opened


class _TensorBoard:
    """Event files in ``RUN_DIR/tensorboard``; ``purge_step`` drops an interrupted run's later steps."""

    def __init__(self, run_dir: Path, name: str, config: dict[str, Any], first_step: int):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboardX alone (no tensorboard package, or no torch)
            from tensorboardX import SummaryWriter
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=first_step)
        self.texts: dict[str, str] = {}
        if config:
            self.writer.add_text("config", "```\n" + json.dumps(config, indent=2, default=str) + "\n```",
                                 first_step)

    def log(self, step: int, numbers: dict[str, float], texts: dict[str, str]) -> None:
        for key, value in numbers.items():
            self.writer.add_scalar(key, value, step)
        for key, value in texts.items():
            if self.texts.get(key) != value:
                self.writer.add_text(key, value, step)
                self.texts[key] = value
        self.writer.flush()  # a step is on disk once logged, as in metrics.jsonl

    def close(self) -> None:
        self.writer.close()


class _Trackio:
    """trackio's local database under ``RUN_DIR/trackio`` (or the ``TRACKIO_DIR`` you set)."""

    def __init__(self, run_dir: Path, name: str, config: dict[str, Any], first_step: int):
        trackio = _import_trackio(run_dir / "trackio")
        from trackio.sqlite_storage import SQLiteStorage

        self.trackio = trackio
        with contextlib.redirect_stdout(io.StringIO()):  # its banner names no directory
            self.run = trackio.init(project=TRACKIO_PROJECT, name=name, config=config, resume="allow",
                                    embed=False, auto_log_cpu=False, auto_log_gpu=False)
        where = trackio.utils.TRACKIO_DIR
        print(f"trackio: run '{name}' in {where} (dashboard: TRACKIO_DIR={where} trackio show "
              f"--project {TRACKIO_PROJECT})", file=sys.stderr)
        newest = SQLiteStorage.get_max_step_for_run(TRACKIO_PROJECT, name)
        self.skip_through = newest if newest is not None and newest >= first_step else None

    def log(self, step: int, numbers: dict[str, float], texts: dict[str, str]) -> None:
        if self.skip_through is None or step > self.skip_through:
            self.run.log(numbers, step=step)

    def close(self) -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            self.run.finish()
        if self.trackio.context_vars.current_run.get() is self.run:  # else atexit finishes it again
            self.trackio.context_vars.current_run.set(None)


def _import_trackio(directory: Path):
    """trackio, storing in ``directory`` unless ``TRACKIO_DIR`` is set.

    trackio reads ``TRACKIO_DIR`` once, at import, into module constants: before the import the
    variable is set (then restored); after it, the constants of the loaded modules are repointed.
    """
    if "trackio" in sys.modules:
        import trackio

        old = Path(trackio.utils.TRACKIO_DIR)
        if os.environ.get("TRACKIO_DIR") or old == directory:
            return trackio
        if trackio.context_vars.current_run.get() is not None:  # it would flush into the new directory
            with contextlib.redirect_stdout(io.StringIO()):
                trackio.finish()
        moved = {old: directory, old / "media": directory / "media", old / "artifacts": directory / "artifacts"}
        for module_name, module in list(sys.modules.items()):
            if module_name == "trackio" or module_name.startswith("trackio."):
                for attr in ("TRACKIO_DIR", "MEDIA_DIR", "ARTIFACTS_DIR"):
                    value = getattr(module, attr, None)
                    if isinstance(value, Path) and value in moved:
                        setattr(module, attr, moved[value])
        return trackio
    if os.environ.get("TRACKIO_DIR"):
        import trackio

        return trackio
    os.environ["TRACKIO_DIR"] = str(directory)
    try:
        import trackio
    finally:
        del os.environ["TRACKIO_DIR"]
    return trackio


class _WandB:
    """A W&B run in ``RUN_DIR/wandb``: offline unless ``WANDB_MODE`` or ``WANDB_API_KEY`` says otherwise."""

    def __init__(self, run_dir: Path, name: str, config: dict[str, Any], first_step: int):
        import wandb

        id_file = run_dir / "wandb" / "run_id"
        id_file.parent.mkdir(parents=True, exist_ok=True)
        if not id_file.exists():
            id_file.write_text(uuid.uuid4().hex[:16] + "\n")
        mode = os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", TRACKIO_PROJECT), name=name,
                              id=id_file.read_text().strip(), resume="allow", dir=str(run_dir),
                              config=config, mode=mode)

    def log(self, step: int, numbers: dict[str, float], texts: dict[str, str]) -> None:
        self.run.log(numbers, step=step)

    def close(self) -> None:
        self.run.finish()


_OPENERS = {"tensorboard": _TensorBoard, "trackio": _Trackio, "wandb": _WandB}
