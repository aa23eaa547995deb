"""Helper processes die with their trainer, however it ends (``rl.run.reaper``).

Each test runs a small "trainer" script in a subprocess, records the processes it started
(scanning /proc from here, independently of the reaper), ends the trainer and checks that none
of them, nor the reaper, is left (for ``VLLMEngine.close``: that the engine's processes are gone
while the trainer lives). Survivors are SIGKILLed in ``finally``: a failing test must not leave
2 GB vLLM processes behind. Runtime here: ~30 s without vLLM, ~40-60 s per vLLM engine start.
"""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the reaper is Linux-only")

ROOT = Path(__file__).parents[1]
PLAIN_CHILDREN = """
import subprocess
subprocess.Popen(["sh", "-c", "sleep 300 & sleep 300 & wait"])
subprocess.Popen(["sh", "-c", "trap '' TERM; sleep 300; true"])  # ignores SIGTERM: needs the SIGKILL
time.sleep(1.0)  # started outside reaper.guard(): recorded by the reaper's next scan
"""
VLLM_ENGINE = """
from rl.config import VLLMConfig
from rl.models import load_policy, resolve_model_path
from rl.rollout.vllm import VLLMEngine

policy = load_policy(str(resolve_model_path("tiny-random")), lora=None, dtype="float32", device="cpu")
engine = VLLMEngine(policy, VLLMConfig(dtype="float32", kv_cache_gib=0.125, max_model_len=256))
"""


def _stat(pid: int):
    """(state, ppid, start time) or None; the name field may hold spaces and ')'."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()
    return fields[0].decode(), int(fields[1]), int(fields[19])


def _alive(pid: int, start: int) -> bool:
    st = _stat(pid)
    return st is not None and st[2] == start and st[0] not in "ZX"


def _tree(root: int) -> dict[int, int]:
    """Live descendants of ``root``: pid -> start time."""
    procs = {int(p): _stat(int(p)) for p in os.listdir("/proc") if p.isdigit()}
    out, todo = {}, [root]
    while todo:
        parent = todo.pop()
        for pid, st in procs.items():
            if st is not None and st[1] == parent and st[0] not in "ZX" and pid not in out:
                out[pid] = st[2]
                todo.append(pid)
    return out


def _cmd(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _start_trainer(tmp_path: Path, body: str, end: str, start_reaper: bool = True) -> subprocess.Popen:
    """A trainer that starts the reaper (or leaves that to ``body``), runs ``body``, prints READY
    and a JSON line, waits for a line on stdin, then ends as ``end`` says (``wait``: until the
    test signals it; ``close``: close the ``engine`` made by ``body``, print CLOSED, wait)."""
    script = tmp_path / "trainer.py"
    script.write_text(textwrap.dedent(f"""
        import json, os, sys, time
        from rl.run import reaper

        if __name__ == "__main__":  # vLLM spawns its processes: the guard is needed
            if {start_reaper}:
                reaper.start()
            {textwrap.indent(textwrap.dedent(body), "            ").strip()}
            print("READY", json.dumps({{"reaper": reaper.current()}}), flush=True)
            sys.stdin.readline()
            end = {end!r}
            if end == "exit":
                sys.exit(0)
            if end == "raise":
                raise RuntimeError("the trainer crashed")
            if end == "close":
                engine.close()
                print("CLOSED", flush=True)
            time.sleep(600)  # until the test signals it
    """))
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(ROOT)}
    # output to a file: vLLM logs a lot, and an undrained pipe would block the trainer
    with open(tmp_path / "trainer.log", "w") as log:
        # SIGINT back to its default: a test run started as a background job inherits it ignored
        # (POSIX shells), and a trainer that ignores Ctrl-C cannot show what Ctrl-C does
        return subprocess.Popen([sys.executable, str(script)], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                                stdout=log, stderr=subprocess.STDOUT, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _ready(trainer: subprocess.Popen, tmp_path: Path, timeout_s: float) -> dict:
    """The JSON the trainer printed after READY."""
    log = tmp_path / "trainer.log"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("READY "):
                return json.loads(line[len("READY "):])
        assert trainer.poll() is None, f"the trainer died before READY:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)
    raise AssertionError(f"the trainer did not get ready within {timeout_s:g} s:\n{log.read_text()[-3000:]}")


def _wait_until(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def _kill_survivors(trainer: subprocess.Popen, recorded: dict[int, int]) -> None:
    """SIGKILL the trainer, what it still has running and whatever was ``recorded``."""
    if trainer.poll() is None:
        recorded = {**recorded, **_tree(trainer.pid)}
        trainer.kill()
        trainer.wait()
    for pid, start in recorded.items():
        if _alive(pid, start):
            os.kill(pid, signal.SIGKILL)


def _record_children(trainer: subprocess.Popen, reaper_pid: int | None, expect, recorded: dict[int, int]) -> None:
    """Add to ``recorded`` the trainer's descendants once ``expect(cmds)`` holds, and its reaper
    (not a descendant: double-forked)."""
    assert _wait_until(lambda: expect([_cmd(p) for p in _tree(trainer.pid)]), 20), \
        [_cmd(p) for p in _tree(trainer.pid)]
    recorded.update(_tree(trainer.pid))
    if reaper_pid is not None:
        assert reaper_pid not in recorded
        recorded[reaper_pid] = _stat(reaper_pid)[2]


ENDS = ["exit", "raise", signal.SIGKILL, signal.SIGTERM, signal.SIGINT]


@pytest.mark.parametrize("end", ENDS, ids=["exit", "raise", "sigkill", "sigterm", "sigint"])
def test_plain_grandchildren_die_with_their_trainer(tmp_path, end):
    trainer = _start_trainer(tmp_path, PLAIN_CHILDREN, end if isinstance(end, str) else "wait")
    recorded: dict[int, int] = {}
    try:
        info = _ready(trainer, tmp_path, 60)
        _record_children(trainer, info["reaper"], lambda cmds: sum(c.strip() == "sleep 300" for c in cmds) == 3,
                         recorded)
        time.sleep(0.6)  # the reaper has scanned (every 0.5 s) and kills nothing while the trainer lives
        assert all(_alive(pid, start) for pid, start in recorded.items())
        trainer.stdin.write("go\n")
        trainer.stdin.flush()
        if not isinstance(end, str):
            os.kill(trainer.pid, end)
        trainer.wait(30)
        assert (trainer.returncode == 0) == (end == "exit")
        # the SIGTERM-ignoring shell is SIGKILLed 2 s after the others are gone
        assert _wait_until(lambda: not any(_alive(p, s) for p, s in recorded.items()), 15), \
            {p: _cmd(p) for p, s in recorded.items() if _alive(p, s)}
    finally:
        _kill_survivors(trainer, recorded)


def test_children_started_under_guard_die_even_right_away(tmp_path):
    """``guard()`` waits until the reaper has recorded the new children: a SIGKILL at once after
    it (before any periodic scan) still stops them and what they started since."""
    body = """
    import subprocess, signal
    with reaper.guard():
        shells = [subprocess.Popen(["sh", "-c", "sleep 317 & wait"]) for _ in range(2)]
    print("READY", json.dumps({"shells": {p.pid: reaper.stat(p.pid)[2] for p in shells}}), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
    trainer = _start_trainer(tmp_path, body, "wait")
    shells: dict[int, int] = {}
    try:
        shells = {int(p): s for p, s in _ready(trainer, tmp_path, 60)["shells"].items()}
        assert trainer.wait(30) == -signal.SIGKILL
        assert _wait_until(lambda: not any(_alive(p, s) for p, s in shells.items()), 10)
        # the shells' own children too, forked before or after the reaper's scan
        assert _wait_until(lambda: not [p for p in os.listdir("/proc") if p.isdigit()
                                        and _cmd(int(p)).strip() == "sleep 317"], 10)
    finally:
        _kill_survivors(trainer, shells)
        for p in os.listdir("/proc"):
            if p.isdigit() and _cmd(int(p)).strip() == "sleep 317":
                os.kill(int(p), signal.SIGKILL)


def test_exit_on_sigterm_runs_cleanup(tmp_path):
    marker = tmp_path / "closed"
    body = f"""
    import atexit, pathlib
    reaper.exit_on_sigterm()
    atexit.register(pathlib.Path({str(marker)!r}).write_text, "yes")
    """
    trainer = _start_trainer(tmp_path, body, "wait")
    try:
        _ready(trainer, tmp_path, 60)
        trainer.send_signal(signal.SIGTERM)  # while it waits for stdin
        assert trainer.wait(30) == 128 + signal.SIGTERM
        assert marker.read_text() == "yes"
    finally:
        _kill_survivors(trainer, {})


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm is not installed")
@pytest.mark.parametrize("end", ["sigkill", "close"])
def test_vllm_engine_processes_stop_with_the_trainer(tmp_path, end):
    """``sigkill``: vLLM's EngineCore never notices a dead client; without the reaper that
    ``VLLMEngine`` starts, it and its Worker stay up (parent 1, GBs of RAM). ``close``:
    ``VLLMEngine.close`` alone stops them, while the trainer lives."""
    trainer = _start_trainer(tmp_path, VLLM_ENGINE, "wait" if end == "sigkill" else "close", start_reaper=False)
    recorded: dict[int, int] = {}
    try:
        info = _ready(trainer, tmp_path, 300)
        _record_children(trainer, info["reaper"], lambda cmds: any(c.startswith("VLLM::EngineCore") for c in cmds)
                         and any(c.startswith("VLLM::Worker") for c in cmds), recorded)
        names = {p: _cmd(p).split(" ")[0] for p in recorded}
        time.sleep(1.0)
        assert all(_alive(p, s) for p, s in recorded.items())  # nothing is stopped while the trainer lives
        t0 = time.monotonic()
        if end == "sigkill":
            trainer.kill()
            trainer.wait(30)
            gone = _wait_until(lambda: not any(_alive(p, s) for p, s in recorded.items()), 20)
            left = {p: _cmd(p) for p, s in recorded.items() if _alive(p, s)}
            assert gone, f"alive {time.monotonic() - t0:.0f} s after the SIGKILL: {left}"
        else:
            trainer.stdin.write("go\n")
            trainer.stdin.flush()
            assert _wait_until(lambda: "CLOSED" in (tmp_path / "trainer.log").read_text(errors="replace"), 60)
            engine = {p: s for p, s in recorded.items() if names[p].startswith("VLLM::")}
            assert not any(_alive(p, s) for p, s in engine.items()), {p: names[p] for p in engine}
            assert trainer.poll() is None
        print(f"{end}: engine processes gone {time.monotonic() - t0:.1f} s after it")
    finally:
        _kill_survivors(trainer, recorded)
