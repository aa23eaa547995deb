"""Environments in a child process: a crash (segfault, ``os._exit``, OOM kill) or a hang in an env
costs only the episodes whose envs lived in that process, never the training run.

All envs of a step share one worker (one process start per crash, not per episode). The other
envs alive in a worker that died are rebuilt in the new worker by replaying their calls
(create, reset, the actions so far), so only the culprit's episode is marked; this assumes an
env is a deterministic function of its task and actions (chain_math and test-running code envs
are). A replay that itself fails marks that episode too.

``ProcessEnvs(make_env, timeout_s)`` is a drop-in ``make_env`` for the ``Runner``: it returns
``RemoteEnv`` proxies whose ``reset``/``step`` run in one worker process (spawned, so no state of
the trainer's threads is inherited). A call that does not answer within ``timeout_s``, or whose
worker died, kills and restarts the worker and raises ``EnvCrashed``; the Runner records it on
the episode (``errors/env``). Envs that lived in the dead worker raise on their next call too.
``make_env`` and tasks must be picklable (module-level functions, bound methods of picklable
sources such as ``ChainMathSource.make_env``).

An idle worker exits when the trainer dies (its pipe closes); one busy in an env call would
run on, so a reaper (``rl.run.reaper``) watches the trainer and stops it then.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import traceback

from rl.run import reaper
from rl.types import Task


STARTUP_TIMEOUT_S = 120.0


class EnvCrashed(RuntimeError):
    """The env's worker process died or hung; the env is gone."""


def _serve(conn, make_env) -> None:
    envs: dict = {}
    conn.send(("ready", None))
    while True:
        try:
            command, env_id, args = conn.recv()
        except EOFError:
            return
        try:
            if command == "create":
                envs[env_id] = make_env(*args)
                value = None
            elif command == "close":
                envs.pop(env_id, None)
                value = None
            else:
                value = getattr(envs[env_id], command)(*args)
            conn.send(("ok", value))
        except Exception as e:  # noqa: BLE001 - sent back and re-raised in the trainer
            conn.send(("error", f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}"))


class ProcessEnvs:
    """A ``make_env`` whose envs run in a worker process (restarted after a crash or hang)."""

    def __init__(self, make_env, timeout_s: float = 30.0):
        self.make_env = make_env
        self.timeout_s = timeout_s
        self._ids = itertools.count()
        self._ctx = mp.get_context("spawn")
        self._generation = 0
        self._start()

    def _start(self) -> None:
        self._conn, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(target=_serve, args=(child, self.make_env), daemon=True)
        with reaper.guard():
            self._proc.start()
        child.close()
        # a worker's start (a fresh interpreter importing the env's module) is not an env call:
        # wait for it here so env timeouts measure the env alone
        if not self._conn.poll(STARTUP_TIMEOUT_S) or self._conn.recv()[0] != "ready":
            raise RuntimeError(f"the env worker process did not start within {STARTUP_TIMEOUT_S} s")
        self._generation += 1

    def _restart(self) -> None:
        self._proc.kill()
        self._proc.join(5)
        self._conn.close()
        self._start()

    def call(self, generation: int, env_id: int, command: str, *args):
        """Run ``command`` on env ``env_id`` in the worker; raises ``EnvCrashed`` / the env's error."""
        if generation != self._generation:
            raise EnvCrashed("the env's worker process crashed earlier; the env is gone")
        try:
            self._conn.send((command, env_id, args))
            if not self._conn.poll(self.timeout_s):
                self._restart()
                raise EnvCrashed(f"env {command} took over {self.timeout_s:g} s (worker killed and restarted)")
            status, value = self._conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError, OSError) as e:
            self._proc.join(5)  # reap it, so the exit code is known
            code = self._proc.exitcode
            self._restart()
            raise EnvCrashed(f"env worker died during {command} (exit code {code}): {type(e).__name__}") from e
        if status == "error":
            raise RuntimeError(value)
        return value

    def __call__(self, task: Task) -> "RemoteEnv":
        env_id = next(self._ids)
        generation = self._generation
        self.call(generation, env_id, "create", task)
        return RemoteEnv(self, generation, env_id, task)

    def close(self) -> None:
        self._proc.kill()
        self._proc.join(5)
        self._conn.close()


class RemoteEnv:
    """Proxy of one env living in a ``ProcessEnvs`` worker; rebuilt by replay after another
    env crashed the worker."""

    def __init__(self, pool: ProcessEnvs, generation: int, env_id: int, task: Task):
        self.pool, self.generation, self.env_id, self.task = pool, generation, env_id, task
        self.history: list[tuple[str, tuple]] = []

    def _call(self, command: str, *args):
        if self.generation != self.pool._generation:  # our worker died under another env: replay
            self.generation = self.pool._generation
            self.pool.call(self.generation, self.env_id, "create", self.task)
            for past, past_args in self.history:
                self.pool.call(self.generation, self.env_id, past, *past_args)
        value = self.pool.call(self.generation, self.env_id, command, *args)
        self.history.append((command, args))
        return value

    def reset(self):
        return self._call("reset")

    def step(self, action: str):
        return self._call("step", action)
