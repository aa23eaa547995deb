"""What the sandbox's two child processes run: the runner, the judge, and the wire protocol between them.

- ``_runner_main`` (untrusted, in the sandbox): sets its rlimits and no new privileges, loads
  the program, then answers each call of its function: ``encode``-d result, or the raised
  exception's name and message.
- ``_judge_main`` (trusted, outside): runs the task's ``check(candidate)`` against
  ``_Candidate``, a proxy that forwards each call to the runner and ``decode``-s the reply into
  exact builtin types; prints the verdict as its last stdout line.
- ``send`` / ``recv``: length-prefixed JSON frames (at most ``MAX_FRAME`` bytes) on a pipe;
  ``encode`` / ``decode``: plain data as tagged JSON (at most ``MAX_DEPTH`` deep).

The parent side (``Sandbox``, ``Limits``, ``JudgeSpec``, ``RunResult``, probing the modes, the
pool, the per-run uids) is ``rewards.sandbox``, whose docstring holds the threat model; it
re-exports this module's public names. It ships this file's source text to each child
(``python -I -S -c <source> runner|judge <cfg json>``, with a call of ``_child(sys.argv[1:])``
appended), so this module imports the standard library only, runs nothing on import, and must
work on whichever Python the runner uses (the system's ``python3`` included).
"""

from __future__ import annotations

import builtins
import json
import os
import struct
import sys

MAX_FRAME = 8 << 20  # bytes in one message between judge and runner
MAX_DEPTH = 64  # nesting of one value
_HEAD = struct.Struct(">I")
_TAGS = {"l": list, "t": tuple, "s": set, "z": frozenset}
KINDS = ("syntax", "missing", "crash", "timeout", "memory", "exception", "wrong_answer", "bad_output")


class ProtocolError(Exception):
    """A message or value from the other side is malformed (too large, bad JSON, bad tags)."""


# ----------------------------------------------------------- shared by judge and runner


def send(fd: int, message) -> None:
    """Write one length-prefixed JSON message to ``fd`` (ValueError if over ``MAX_FRAME``)."""
    data = json.dumps(message, separators=(",", ":")).encode()
    if len(data) > MAX_FRAME:
        raise ValueError(f"a message of {len(data)} bytes is over the {MAX_FRAME} byte limit")
    data = _HEAD.pack(len(data)) + data
    while data:
        data = data[os.write(fd, data):]


def recv(fd: int):
    """The next message on ``fd``; None at end of file (also mid-message): the writer is gone."""
    head = _read_exact(fd, _HEAD.size)
    if head is None:
        return None
    (size,) = _HEAD.unpack(head)
    if size > MAX_FRAME:
        raise ProtocolError(f"a message of {size} bytes is over the {MAX_FRAME} byte limit")
    body = _read_exact(fd, size)
    if body is None:
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as e:
        raise ProtocolError(f"a message is not JSON: {e}") from None


def _read_exact(fd: int, n: int) -> bytes | None:
    chunks = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def encode(value, depth: int = 0):
    """``value`` as tagged JSON; TypeError for anything but exact builtin plain-data types."""
    if depth > MAX_DEPTH:
        raise ValueError(f"the value is nested more than {MAX_DEPTH} deep")
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return value
    if kind is int:
        return ["i", str(value)]
    if kind is float:
        return ["f", repr(value)]
    if kind is complex:
        return ["c", repr(value.real), repr(value.imag)]
    if kind is bytes:
        return ["b", value.hex()]
    if kind is dict:
        return ["d", [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]]
    for tag, container in _TAGS.items():
        if kind is container:
            return [tag, [encode(v, depth + 1) for v in value]]
    raise TypeError(f"a {kind.__name__} cannot leave the sandbox: return plain data (None, bool, int, "
                    "float, complex, str, bytes, list, tuple, set, frozenset, dict)")


def decode(data, depth: int = 0):
    """The value ``encode`` turned into ``data``, built from exact builtin types; ProtocolError
    for anything else."""
    if data is None or type(data) is bool or type(data) is str:
        return data
    if depth > MAX_DEPTH or type(data) is not list or not data or data[0] not in ("i", "f", "c", "b", "d", *_TAGS):
        raise ProtocolError(f"not an encoded value: {str(data)[:80]}")
    tag, args = data[0], data[1:]
    try:
        if all(type(a) is str for a in args) and len(args) == (2 if tag == "c" else 1):
            if tag == "i":
                return int(args[0])
            if tag == "f":
                return float(args[0])
            if tag == "c":
                return complex(float(args[0]), float(args[1]))
            if tag == "b":
                return bytes.fromhex(args[0])
        if len(args) == 1 and type(args[0]) is list:
            if tag == "d":
                return {decode(k, depth + 1): decode(v, depth + 1) for k, v in _pairs(args[0])}
            if tag in _TAGS:
                return _TAGS[tag](decode(v, depth + 1) for v in args[0])
    except (ValueError, TypeError) as e:  # a bad number, an unhashable set element or key
        raise ProtocolError(f"a bad {tag!r} value: {e}") from None
    raise ProtocolError(f"a malformed {tag!r} value")


def _pairs(items: list) -> list:
    if not all(type(p) is list and len(p) == 2 for p in items):
        raise ProtocolError("a malformed dict value")
    return items


def _describe(error: BaseException, with_type: bool = True) -> str:
    try:
        return (f"{type(error).__name__}: {error}" if with_type else str(error))[:500]
    except BaseException:  # noqa: BLE001 - a program's exception whose __str__ itself fails
        return "an exception that cannot be printed"


def _libc():
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


# ------------------------------------------------------------- the runner (sandboxed)


def _runner_main(cfg: dict) -> None:
    """Load the program, then answer calls of ``cfg['entry']`` until the judge hangs up."""
    import resource

    program = os.read(cfg["program"], 1 << 24).decode("utf-8", "replace")
    os.close(cfg["program"])
    calls, replies = cfg["req"], cfg["resp"]
    limits = cfg["limits"]
    for res, value in ((resource.RLIMIT_AS, limits["memory_mb"] << 20), (resource.RLIMIT_NPROC, limits["nproc"]),
                       (resource.RLIMIT_FSIZE, limits["file_mb"] << 20), (resource.RLIMIT_NOFILE, limits["nofile"]),
                       (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(res, (value, value))
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_s"], limits["cpu_s"] + 1))
    libc = _libc()
    libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS: setuid binaries do not elevate
    net = cfg["net"]
    if net == "userns":  # an unprivileged user + network namespace, else the audit hook
        net = "netns" if libc.unshare(0x10000000 | 0x40000000) == 0 else "audit"
    if net == "audit":
        sys.addaudithook(_audit_guard)
    try:
        code = compile(program, "solution.py", "exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:  # ValueError: NUL bytes
        return send(replies, ["error", "syntax", _describe(e)])
    namespace = {"__name__": "__solution__", "__builtins__": builtins}
    try:
        exec(code, namespace)
    except BaseException as e:  # noqa: BLE001 - SystemExit included: a program that stops early fails
        return send(replies, ["error", "memory" if isinstance(e, MemoryError) else "crash", _describe(e)])
    function = namespace.get(cfg["entry"])
    if not callable(function):
        return send(replies, ["error", "missing", f"the program defines no function {cfg['entry']!r}"])
    send(replies, ["ready", net, sys.version.split()[0]])
    while (message := recv(calls)) is not None:
        try:
            result = function(*decode(message[0]), **decode(message[1]))
        except BaseException as e:  # noqa: BLE001 - reported to the judge, which fails the tests
            reply = ["raise", type(e).__name__ if isinstance(type(e).__name__, str) else "?", _describe(e, False)]
        else:
            try:
                reply = ["ok", encode(result)]
                send(replies, reply)
                continue
            except (TypeError, ValueError, RecursionError, MemoryError) as e:
                reply = ["bad_output", _describe(e)]
        send(replies, reply)


_BLOCKED = {"socket.__new__", "socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg",
            "socket.getaddrinfo", "os.exec", "os.posix_spawn", "os.spawn", "os.system", "os.fork",
            "os.forkpty", "subprocess.Popen", "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata",
            "ctypes.call_function"}


def _audit_guard(event: str, args) -> None:
    if event in _BLOCKED:
        raise PermissionError(f"sandbox: {event} is blocked (no network namespace on this machine)")


# --------------------------------------------------------------- the judge (trusted)


class _RunnerGone(BaseException):
    """The runner died, broke the protocol or sent a bad value: not catchable by ``except Exception``."""


class _TestsUnsupported(BaseException):
    """The tests pass an argument that is not plain data: the task cannot be judged here."""


class CandidateError(Exception):
    """The program's function raised an exception that is not a builtin one (its name is kept)."""


class _Candidate:
    """Stands for the program's function in the tests: each call goes to the runner."""

    def __init__(self, calls: int, replies: int):
        self.calls_fd, self.replies_fd = calls, replies
        self.calls = 0
        self.failure: tuple[str, str] | None = None
        self.raised: BaseException | None = None

    def _fail(self, kind: str, message: str):
        self.failure = self.failure or (kind, message)
        raise _RunnerGone(message)

    def __call__(self, *args, **kwargs):
        if self.failure:
            raise _RunnerGone(self.failure[1])
        try:
            request = [encode(list(args)), encode(kwargs)]
        except (TypeError, ValueError) as e:
            raise _TestsUnsupported(f"the tests pass an argument the sandbox cannot send: {e}") from None
        try:
            send(self.calls_fd, request)
            reply = recv(self.replies_fd)
        except OSError:
            reply = None
        except ProtocolError as e:
            self._fail("bad_output", str(e))
        if reply is None:
            self._fail("died", "the program's process ended during the tests")
        self.calls += 1
        if type(reply) is not list or len(reply) < 2 or reply[0] not in ("ok", "raise", "bad_output"):
            self._fail("bad_output", "the runner broke the protocol")
        if reply[0] == "ok":
            try:
                return decode(reply[1])
            except ProtocolError as e:
                self._fail("bad_output", str(e))
        if reply[0] == "bad_output":
            self._fail("bad_output", str(reply[1])[:500])
        name, message = str(reply[1])[:100], str(reply[2] if len(reply) > 2 else "")[:500]
        exc_type = getattr(builtins, name, None)
        try:
            error = exc_type(message) if isinstance(exc_type, type) and issubclass(exc_type, Exception) else None
        except Exception:  # noqa: BLE001 - a builtin exception with another signature
            error = None
        self.raised = error if error is not None else CandidateError(message or name)
        raise self.raised


def _judge_main(cfg: dict) -> None:
    """Run the tests against the runner; print the verdict as one JSON line."""
    if os.geteuid() != 0:
        _libc().prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: the same uid cannot trace us or open /proc/<pid>/fd
    spec = json.loads(sys.stdin.read())
    calls, replies = cfg["req"], cfg["resp"]
    verdict = {"passed": False, "kind": "crash", "message": "", "net": None}
    try:
        first = recv(replies)
    except ProtocolError as e:
        first = ["error", "bad_output", str(e)]
    if first is None:
        verdict.update(kind="died", message="the program's process ended before its function was ready")
    elif type(first) is not list or len(first) < 2 or first[0] not in ("ready", "error"):
        verdict.update(kind="bad_output", message="the runner broke the protocol")
    elif first[0] == "error":
        kind = first[1] if first[1] in KINDS else "crash"
        verdict.update(kind=kind, message=str(first[2] if len(first) > 2 else "")[:500])
    else:
        verdict.update(net=str(first[1]), python=str(first[2]) if len(first) > 2 else "?")
        namespace = {"__name__": "__judge__"}
        exec(compile(spec["context"] + "\n\n" + spec["test"], "<tests>", "exec"), namespace)
        candidate = _Candidate(calls, replies)
        namespace[spec["entry_point"]] = candidate  # tests that name the function (not `candidate`) get it too
        try:
            namespace[spec["check"]](candidate)
            kind, message = (None, "") if candidate.calls else ("wrong_answer", "the tests never called the function")
        except _RunnerGone:
            kind, message = candidate.failure
        except _TestsUnsupported:
            raise
        except BaseException as e:  # noqa: BLE001 - a failed assertion, or an error the answer caused
            raised = e is candidate.raised
            kind = ("memory" if isinstance(e, MemoryError) else "exception") if raised else "wrong_answer"
            message = _describe(e)
        if candidate.failure and kind is None:  # the tests swallowed the runner's failure
            kind, message = candidate.failure
        verdict.update(passed=kind is None, kind=kind, message=message)
    sys.stdout.write(json.dumps(verdict) + "\n")


def _child(argv: list[str]) -> None:
    role, cfg = argv[0], json.loads(argv[1])
    (_runner_main if role == "runner" else _judge_main)(cfg)
