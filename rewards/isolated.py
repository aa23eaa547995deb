"""Run a verifier in a child process with a wall-clock timeout, so a hang cannot stall a run.

Verifiers parse arbitrary model text; sympy/math-verify can spin for minutes on an innocent
looking string (seen in a GRPO run here: ``simplify`` on a sampled answer never returned).
``IsolatedVerifier`` sends ``(task, episode)`` to a long-lived worker process (spawned once,
it imports no torch) and waits at most ``timeout_s``; on a timeout or a crash it kills the
worker, starts a new one for the next call, and raises ``VerifierError`` — which the reward
function records on the episode (``errors/verifier``) instead of scoring it 0.

A worker stuck in a verifier would outlive a killed trainer (it sees the closed pipe only on
its next read): a reaper (``rl.run.reaper``) watches the trainer and stops it.
"""

from __future__ import annotations

import multiprocessing as mp
import traceback

from rl.errors import VerifierError
from rl.run import reaper
from rl.types import Episode, Outcome, Task


def _serve(conn, verifier) -> None:
    conn.send(("ready",))  # the verifier's modules are imported (unpickling it did that)
    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        if request is None:
            return
        task, episode = request
        try:
            conn.send(("ok", verifier(task, episode)))
        except Exception as e:  # noqa: BLE001 - sent back to the parent, which raises it
            conn.send(("error", f"{type(e).__name__}: {e}", traceback.format_exc(limit=3)))


class IsolatedVerifier:
    """``verifier`` behind a process boundary and a ``timeout_s`` wall-clock limit."""

    def __init__(self, verifier, timeout_s: float = 10.0, startup_timeout_s: float = 60.0):
        self.verifier = verifier
        self.timeout_s = timeout_s
        self.startup_timeout_s = startup_timeout_s
        self._proc = None
        self._conn = None

    def _start(self) -> None:
        ctx = mp.get_context("spawn")  # no fork: the parent holds model threads and vLLM sockets
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, self.verifier), daemon=True)
        with reaper.guard():
            self._proc.start()
        child.close()
        if not self._conn.poll(self.startup_timeout_s):
            self.close()
            raise VerifierError(f"verifier worker did not start within {self.startup_timeout_s:g} s")
        self._conn.recv()

    def __call__(self, task: Task, episode: Episode) -> Outcome:
        if self._proc is None or not self._proc.is_alive():
            self._start()
        # send the turns only: rewards, errors and metrics are the caller's to fill in
        self._conn.send((task, Episode(task=task, group_id=episode.group_id, turns=episode.turns)))
        if not self._conn.poll(self.timeout_s):
            self.close()
            raise VerifierError(f"verifier timed out after {self.timeout_s:g} s (worker restarted)")
        try:
            reply = self._conn.recv()
        except EOFError:
            self.close()
            raise VerifierError("verifier process died (worker restarted)") from None
        if reply[0] == "error":
            raise VerifierError(reply[1])
        return reply[1]

    def close(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.join(timeout=5)
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
