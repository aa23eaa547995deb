"""Code verification: read the program out of a completion, run the task's tests in the sandbox.

- ``extract_program(prompt, entry_point, text)``: the program to test. The completion may be
  the function's body (the continuation of the prompt) or a whole program that defines
  ``entry_point``, bare or in a fenced block (```` ```python ````).
- ``format_score(text)``: the ``format`` term: 1.0 when the text holds a fenced Python block
  that parses.
- ``CodeVerifier``: the verifier ``(task, episode) -> Outcome``; ``verify_many`` scores many
  episodes at once on a thread pool (``max_workers`` runs at a time).

A task carries what its tests need in ``meta``: ``prompt`` (run before the tests: imports and
helpers), ``test`` (defines ``check(candidate)``), ``entry_point``, and optionally ``limits``
(``rewards.sandbox.Limits`` fields) and ``sandbox`` (a mode), which override the verifier's.

Scoring never raises for a bad program: ``score`` 1.0 and ``correct`` when every test
passed, else 0.0 with ``details["error_kind"]`` one of ``no_code`` (nothing to run) or
``rewards.sandbox.KINDS`` (syntax, missing, crash, timeout, memory, exception, wrong_answer,
bad_output). ``details`` also hold ``status`` (passed / failed), ``message``, ``sandbox`` (the
mode that ran it) and ``time_s``. Only a broken sandbox (``VerifierError``) or a task without
those meta (``DataError``) raises, which the reward function records as a verifier error
rather than a 0. How the sandbox contains the
program and why the verdict cannot be forged: ``rewards.sandbox``.

Example::

    verifier = CodeVerifier(limits=Limits(timeout_s=5))
    outcome = verifier(task, episode)    # Outcome(score=1.0, correct=True, details={"status": "passed",
                                         #   "error_kind": None, "sandbox": "bwrap", ...})
"""

from __future__ import annotations

import ast
import dataclasses
import re
from dataclasses import dataclass, field
from typing import ClassVar

from rewards.sandbox import DEFAULT_UID_BASE, JudgeSpec, Limits, RunResult, Sandbox
from rl.errors import DataError
from rl.types import Episode, Outcome, Task

MAX_CODE_CHARS = 100_000  # longer completions are cut here before parsing
MAX_TRIMMED_LINES = 50  # trailing unindented lines (prose after the code) dropped to make it parse

_PYTHON_TAGS = ("", "python", "py", "python3", "py3")
# a fenced block: its language tag and body; an unclosed fence (a cut-off completion) runs to the end
_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+-]*)[^\n]*\n(.*?)(?:^[ \t]*```|\Z)", re.S | re.M)
_CODE_START = re.compile(r"^(?:import |from |def |async def |class |@)", re.M)


def extract_program(prompt: str, entry_point: str, text: str) -> str | None:
    """The program to test for the completion ``text`` of ``prompt``, or None when it holds no code.

    The fenced Python blocks of ``text`` are read when it has any, else the whole text:

    - a block (or text) that defines ``entry_point`` at column 0 is a whole program: the last such
      block wins; unfenced, it starts at the first line that starts code (import, from, def,
      class, a decorator). The result is ``prompt`` followed by it: the prompt's imports and
      helpers stay available and the new definition replaces the prompt's stub;
    - else the first block, or an unfenced text whose first line is indented, is the body of
      the prompt's function: ``prompt`` + the body (a block's unindented body is indented).

    Up to ``MAX_TRIMMED_LINES`` trailing unindented lines (prose after the code) are dropped
    until the program parses; a program that still does not parse is returned as it is (the
    sandbox reports it as a syntax error).
    """
    text = text[:MAX_CODE_CHARS].replace("\r\n", "\n")
    blocks = [m.group(2) for m in _FENCE.finditer(text) if m.group(1).lower() in _PYTHON_TAGS]
    defines = re.compile(rf"^(?:async[ \t]+)?def[ \t]+{re.escape(entry_point)}[ \t]*\(", re.M)
    head = prompt if prompt.endswith("\n") else prompt + "\n"
    whole = [b for b in blocks if defines.search(b)] if blocks else ([text] if defines.search(text) else [])
    if whole:
        code = whole[-1]
        if not blocks:
            start = _CODE_START.search(code)
            code = code[start.start():] if start else code
        return _trim(head + "\n\n", code)
    body = blocks[0] if blocks else text
    first = next((line for line in body.split("\n") if line.strip()), "")
    if not first:
        return None
    if not first[0].isspace():
        if not blocks:
            return None
        body = "".join("    " + line if line.strip() else line for line in body.splitlines(keepends=True))
    return _trim(head, body)


def _trim(head: str, code: str) -> str:
    lines = code.rstrip().split("\n")
    for _ in range(MAX_TRIMMED_LINES + 1):
        if _parses(head + "\n".join(lines) + "\n"):
            return head + "\n".join(lines) + "\n"
        if len(lines) <= 1 or lines[-1][:1].isspace():
            break
        lines.pop()
    return head + code


def _parses(source: str) -> bool:
    try:
        ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def format_score(text: str) -> float:
    """1.0 when ``text`` holds a fenced Python block whose code parses, else 0.0."""
    blocks = [m.group(2) for m in _FENCE.finditer(text[:MAX_CODE_CHARS]) if m.group(1).lower() in _PYTHON_TAGS]
    return 1.0 if any(b.strip() and _parses(b) for b in blocks) else 0.0


@dataclass(frozen=True)
class CodeVerifier:
    """Runs a completion's program against its task's tests in ``rewards.sandbox``.

    ``sandbox``: ``auto`` (bwrap if it works here, else rlimits), ``bwrap`` or ``rlimits``;
    ``limits``: default limits of one run (a task's ``meta["limits"]`` overrides fields);
    ``max_workers``: runs at once in ``verify_many``; ``python``: the sandbox's interpreter (None:
    found by probing); ``uid_base``: first of the per-run uids when root. Picklable (settings
    only), so it can run in ``rewards.isolated.IsolatedVerifier``'s worker — whose timeout
    (``reward.verifier_timeout_s``) must then exceed ``limits.timeout_s`` plus about a second.
    """

    isolated: ClassVar[bool] = True  # its own sandbox and timeouts: rl.build runs it without a worker
    sandbox: str = "auto"
    limits: Limits = field(default_factory=Limits)
    max_workers: int = 4
    python: str | None = None
    uid_base: int = DEFAULT_UID_BASE

    def __post_init__(self) -> None:
        Sandbox(self.sandbox, self.python, self.uid_base, self.max_workers)  # validates the settings

    def __call__(self, task: Task, episode: Episode) -> Outcome:
        """The outcome of ``episode``'s final completion on ``task``'s tests."""
        return self.verify_many([(task, episode)])[0]

    def verify_many(self, items: list[tuple[Task, Episode]]) -> list[Outcome]:
        """The outcomes of many ``(task, episode)`` pairs, in order; their programs run
        ``max_workers`` at a time (grouped by sandbox mode)."""
        outcomes: list[Outcome | None] = [None] * len(items)
        jobs: dict[str, list[tuple[int, tuple[str, JudgeSpec, Limits]]]] = {}
        for i, (task, episode) in enumerate(items):
            spec, limits, mode = self._settings(task)
            program = extract_program(task.meta["prompt"], spec.entry_point, episode.final_text)
            if program is None:
                outcomes[i] = _outcome(task, None, "no_code", "the completion holds no code")
            else:
                jobs.setdefault(mode, []).append((i, (program, spec, limits)))
        for mode, batch in jobs.items():
            sandbox = Sandbox(mode, self.python, self.uid_base, self.max_workers)
            for (i, _), result in zip(batch, sandbox.run_many([job for _, job in batch])):
                outcomes[i] = _outcome(items[i][0], result)
        return outcomes  # type: ignore[return-value]

    def _settings(self, task: Task) -> tuple[JudgeSpec, Limits, str]:
        missing = [k for k in ("prompt", "test", "entry_point") if not isinstance(task.meta.get(k), str)]
        if missing:
            raise DataError(f"task {task.id} has no meta {missing}: the code verifier needs a task with "
                            "'prompt', 'test' and 'entry_point' (a humaneval task)")
        spec = JudgeSpec(context=task.meta["prompt"], test=task.meta["test"], entry_point=task.meta["entry_point"])
        limits = dataclasses.replace(self.limits, **task.meta.get("limits", {}))
        return spec, limits, task.meta.get("sandbox", self.sandbox)


def _outcome(task: Task, result: RunResult | None, kind: str | None = None, message: str = "") -> Outcome:
    passed = result is not None and result.passed
    details = {
        "task_id": task.meta.get("task_id", task.id),
        "status": "passed" if passed else "failed",
        "error_kind": result.kind if result is not None else kind,
        "message": result.message if result is not None else message,
        "sandbox": result.mode if result is not None else None,
        "time_s": result.time_s if result is not None else 0.0,
    }
    return Outcome(score=1.0 if passed else 0.0, correct=passed, details=details)
