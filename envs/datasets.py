"""dataset: question/answer rows from files, as single-turn tasks.

Rows are read with the Hugging Face ``datasets`` library: ``.jsonl`` / ``.json``, ``.parquet``
and ``.csv`` / ``.tsv`` files (``datasets.load_dataset``; CSV cells are read as text) and
``save_to_disk`` directories (``datasets.load_from_disk``; a ``DatasetDict`` needs ``split``).
A row's prompt is ``template`` filled from its columns (``{question}`` always names the
question column), after an optional system message; its reference answer is the answer column,
cut to the final answer when it states one (GSM8K's "... #### 72" gives "72").

Every row is checked when the options are built, i.e. when the config is read, before any model
loads. A missing column is a ``ConfigError`` naming the key. Bad rows (an empty or None
question or answer, a prompt repeated within a file, a train prompt that is also in the eval
file) are listed with their row numbers, 1-based (the first data row is 1; a CSV header is not
counted), at most ``MAX_LISTED`` of them, in one ``DataError``; ``on_bad_rows: drop`` drops them
and prints a summary instead.

The held-out split is the rows of ``eval_path`` (or of ``eval_split`` in a DatasetDict dir);
without either, the prompt-hash rule of ``envs.base.is_heldout`` (one prompt in ten). The
stream alternates train and held-out rows, so each ``SplitSource`` keeps every other task; each
split runs through its rows epoch by epoch in a permutation seeded by (seed, split, epoch,
difficulty window), file order with ``shuffle: false``. The state is the position and window.

Example::

    options = DatasetOptions(path="recipes/data/example_qa.jsonl",
                             template="{question}\\n\\nPut the final answer after ####.")
    source = DatasetSource(options, seed=0)
    (task,) = source.sample(1)        # task.meta["row"]: its 1-based row in the file
    SPEC.verifier(task, episode)      # Outcome(score=1.0, correct=True, ...) for "... #### <answer>"
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import random
import re
import string
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from envs.base import EnvSpec, PositionStream, SingleTurnEnv, is_heldout
from rewards.math import answers_equivalent, extract_answer, format_score
from rl.errors import ConfigError, DataError, VerifierError
from rl.types import Episode, Message, Outcome, Task

SOURCE = "dataset"
MAX_LISTED = 20  # bad rows listed in an error; the rest are counted
SPLITS = ("train", "eval")
MATCH_MODES = ("math", "exact", "normalized")
_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv", ".tsv": "csv"}
_COMPRESSED = (".gz", ".bz2", ".xz", ".zst")


@dataclass(frozen=True)
class DatasetOptions:
    """Options of the ``dataset`` env (the ``env`` config keys). Building them reads and checks
    the files (``ConfigError`` for a wrong key or column, ``DataError`` listing bad rows); the rows
    are then held in ``self.data``.

    - ``path``: the train file or ``save_to_disk`` dir; ``split``: its split when a DatasetDict.
    - ``eval_path`` / ``eval_split``: the held-out rows (a file, or a dir and its split; with only
      ``eval_split``, that split of ``path``). Neither: one prompt in ten by hash is held out.
    - ``question_column``, ``answer_column``; ``id_column`` (task ids, else row numbers);
      ``system_column`` (a per-row system message, else ``system_prompt`` when set).
    - ``template``: the user message; ``{name}`` placeholders name columns (``{question}`` the
      question column); a None cell renders as "".
    - ``match``: ``math`` (``rewards.math.answers_equivalent``), ``exact`` (same string) or
      ``normalized`` (case, punctuation, articles and spacing ignored), on the final answer the
      completion states (``rewards.math.extract_answer``).
    - ``shuffle``: a seeded permutation per epoch (false: file order).
    - ``difficulty_column``: numbers; ``set_horizon(low, high)`` keeps rows in ``[low, high]``
      (a row's ``horizon``). Without it ``set_horizon`` accepts anything and changes nothing.
    - ``on_bad_rows``: ``error`` (one ``DataError``) or ``drop`` (skip them, print a summary).
    """

    path: str = ""
    eval_path: str | None = None
    split: str | None = None
    eval_split: str | None = None
    question_column: str = "question"
    answer_column: str = "answer"
    id_column: str | None = None
    system_column: str | None = None
    system_prompt: str | None = None
    template: str = "{question}"
    match: Literal["math", "exact", "normalized"] = "math"
    shuffle: bool = True
    difficulty_column: str | None = None
    on_bad_rows: Literal["error", "drop"] = "error"

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path:
            raise ConfigError("config key 'env.path': required: the train file (.jsonl, .json, .parquet, "
                              ".csv, .tsv) or a datasets.save_to_disk directory")
        if self.match not in MATCH_MODES:
            raise ConfigError(f"config key 'env.match': {self.match!r} is not one of {list(MATCH_MODES)}")
        if self.on_bad_rows not in ("error", "drop"):
            raise ConfigError(f"config key 'env.on_bad_rows': {self.on_bad_rows!r} is not one of "
                              "['error', 'drop']")
        if not isinstance(self.shuffle, bool):
            raise ConfigError(f"config key 'env.shuffle': {self.shuffle!r}: use true or false")
        fields = _template_fields(self.template)
        if self.answer_column in fields and self.answer_column != self.question_column:
            raise ConfigError(f"config key 'env.template': it shows the answer column "
                              f"{{{self.answer_column}}} in the prompt: remove it")
        object.__setattr__(self, "_data", load_rows(self))

    @property
    def data(self) -> "LoadedRows":
        """The checked rows (loaded when the options were built)."""
        return self._data  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Row:
    """One checked row: ``number`` is its 1-based row in ``file``; ``answer`` the reference."""

    file: str
    number: int
    id: str
    messages: tuple[tuple[str, str], ...]
    answer: str
    raw_answer: str
    difficulty: float | int | None
    heldout: bool


@dataclass(frozen=True)
class LoadedRows:
    """The rows of each split after the checks, a fingerprint of them, and what was dropped."""

    train: tuple[Row, ...]
    eval: tuple[Row, ...]
    fingerprint: str
    dropped: tuple[str, ...] = ()


def load_rows(options: DatasetOptions) -> LoadedRows:
    """Read and check the files ``options`` name; returns the rows of each split.

    Raises ``ConfigError`` naming ``env.<key>`` for a missing file, split or column, and one
    ``DataError`` listing every bad row (unless ``on_bad_rows: drop``: then they are left out and
    a summary goes to stderr). Also ``DataError`` when no train row is left.
    """
    train_table = _read(options.path, options.split, "path", "split")
    bad: list[tuple[int, int, str]] = []  # (file: 0 train / 1 eval, row number, line)
    train = _unique(_rows(train_table, options, 0, bad), 0, bad)
    held: list[Row] = []
    has_eval = options.eval_path is not None or options.eval_split is not None
    if has_eval:
        eval_table = _read(options.eval_path or options.path, options.eval_split,
                           "eval_path" if options.eval_path is not None else "path", "eval_split")
        held = _unique(_rows(eval_table, options, 1, bad), 1, bad)
        in_eval = {_key(r): r for r in held}
        for r in train:
            if _key(r) in in_eval:
                bad.append((0, r.number, f"{_where(r)}: same prompt as {_where(in_eval[_key(r)])} of the eval "
                                         "set (a train row duplicating an eval row: contamination)"))
        train = [r for r in train if _key(r) not in in_eval]
    lines = [line for *_, line in sorted(bad)]
    if lines and options.on_bad_rows == "error":
        listed = "\n".join(f"  {line}" for line in lines[:MAX_LISTED])
        more = f"\n  ... and {len(lines) - MAX_LISTED} more" if len(lines) > MAX_LISTED else ""
        keys = "'env.path'" + (" / 'env.eval_path'" if has_eval else "")
        raise DataError(f"config key {keys}: {len(lines)} bad row(s) (rows numbered from 1, the first "
                        f"data row; a CSV header is not counted):\n{listed}{more}\nfix these rows, or "
                        "set env.on_bad_rows: drop to leave them out")
    if lines:
        print(f"horizon: env.on_bad_rows=drop: left out {len(lines)} bad row(s): " + "; ".join(lines[:3])
              + (" ..." if len(lines) > 3 else ""), file=sys.stderr)
    rows = train + held
    train_rows = tuple(r for r in rows if not r.heldout)
    eval_rows = tuple(r for r in rows if r.heldout)
    if not train_rows:
        raise DataError(f"config key 'env.path': no usable train rows in {options.path} ({len(lines)} bad, "
                        f"{len(eval_rows)} held out): give it rows")
    if has_eval and not eval_rows:
        raise DataError(f"config key 'env.eval_path': no usable eval rows ({len(lines)} bad): give it rows")
    if not eval_rows:
        print(f"horizon: env.eval_path: no row of {options.path} falls in the held-out split (one prompt "
              "in ten by hash): evaluation needs an env.eval_path", file=sys.stderr)
    digest = hashlib.sha256()
    for r in train_rows + eval_rows:
        digest.update(repr((r.heldout, r.messages, r.answer, r.difficulty)).encode())
    return LoadedRows(train_rows, eval_rows, digest.hexdigest()[:16], tuple(lines))


@dataclass(frozen=True)
class _Table:
    label: str  # how rows are named in messages: the file, or dir[split]
    dataset: Any  # a datasets.Dataset


def _read(path_text: Any, split: str | None, key: str, split_key: str) -> _Table:
    """One file or saved dataset as a ``_Table`` (``ConfigError`` / ``DataError`` naming
    ``env.<key>`` when it cannot be read)."""
    import datasets

    if not isinstance(path_text, str) or not path_text:
        raise ConfigError(f"config key 'env.{key}': {path_text!r}: give a file path or a dataset directory")
    path = Path(path_text)
    if not path.exists():
        raise ConfigError(f"config key 'env.{key}': {path_text} does not exist (relative paths are from "
                          f"the working directory {Path.cwd()})")
    restore_bars = not datasets.are_progress_bars_disabled()
    if restore_bars:
        datasets.disable_progress_bars()
    try:
        if path.is_dir():
            return _read_dir(path, split, key, split_key)
        if split is not None:
            raise ConfigError(f"config key 'env.{split_key}': {split!r}: a split applies only to a "
                              f"save_to_disk DatasetDict directory, and {path_text} is a file; remove it")
        suffixes = [s for s in path.suffixes if s not in _COMPRESSED]
        builder = _BUILDERS.get(suffixes[-1].lower() if suffixes else "")
        if builder is None:
            raise ConfigError(f"config key 'env.{key}': cannot tell the format of {path_text}: name it "
                              f"*{', *'.join(_BUILDERS)} or give a save_to_disk directory")
        kwargs: dict[str, Any] = {}
        if builder == "csv":  # read every cell as text ("007" stays "007")
            sep = "\t" if ".tsv" in [s.lower() for s in suffixes] else ","
            with open(path, newline="", encoding="utf-8") as f:
                header = next(csv.reader(f, delimiter=sep), [])
            kwargs = {"sep": sep,
                      "features": datasets.Features({c: datasets.Value("string") for c in header})}
        try:
            table = datasets.load_dataset(builder, data_files=str(path), split="train", **kwargs)
        except Exception as e:  # the library's parse errors have many types
            where = _bad_json_line(path) if suffixes[-1].lower() == ".jsonl" else ""
            raise DataError(f"config key 'env.{key}': cannot read {path_text} as {builder}{where}: "
                            f"{type(e).__name__}: {e}") from e
        return _Table(path.name, table)
    finally:
        if restore_bars:
            datasets.enable_progress_bars()


def _bad_json_line(path: Path) -> str:
    """" (line N is not a JSON object)" for the first such line of a plain JSON-lines file, else ""."""
    if path.suffix.lower() != ".jsonl":
        return ""
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            try:
                ok = not line.strip() or isinstance(json.loads(line), dict)
            except ValueError:
                ok = False
            if not ok:
                return f" (line {number} is not a JSON object)"
    return ""


def _read_dir(path: Path, split: str | None, key: str, split_key: str) -> _Table:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as e:
        raise ConfigError(f"config key 'env.{key}': {path} is a directory but not a dataset saved with "
                          f"save_to_disk ({type(e).__name__}: {e})") from e
    if isinstance(loaded, datasets.DatasetDict):
        names = list(loaded)
        if split is None and len(names) == 1:
            split = names[0]
        if split not in loaded:
            raise ConfigError(f"config key 'env.{split_key}': {path} holds the splits {names}: "
                              f"{'name one' if split is None else f'{split!r} is not one of them'}")
        return _Table(f"{path.name}[{split}]", loaded[split])
    if split is not None:
        raise ConfigError(f"config key 'env.{split_key}': {split!r}: {path} holds one dataset with no "
                          "splits; remove it")
    return _Table(path.name, loaded)


def _rows(table: _Table, options: DatasetOptions, split: int, bad: list[tuple[int, int, str]]) -> list[Row]:
    """The rows of ``table`` (``split`` 0: train, 1: eval) that pass the per-row checks; each bad
    row adds ``(split, row number, line)`` to ``bad``."""
    present = list(table.dataset.column_names)
    placeholders = _template_fields(options.template)
    used: dict[str, None] = {}

    def need(column: str | None, key: str) -> None:
        if column is None:
            return
        if column not in present:
            raise ConfigError(f"config key 'env.{key}': no column {column!r} in {table.label}; its "
                              f"columns are {present}")
        used[column] = None

    for column, key in ((options.question_column, "question_column"), (options.answer_column, "answer_column"),
                        (options.id_column, "id_column"), (options.system_column, "system_column"),
                        (options.difficulty_column, "difficulty_column")):
        need(column, key)
    for name in placeholders:
        if name != "question":
            need(name, "template")
    columns = table.dataset.select_columns(list(used)).to_dict()  # only what the rows need
    out: list[Row] = []
    ids: dict[str, int] = {}
    for i in range(len(table.dataset)):
        cell = {c: values[i] for c, values in columns.items()}
        number, problems = i + 1, []
        question, raw_answer = _text(cell[options.question_column]), _text(cell[options.answer_column])
        for column, value, what in ((options.question_column, question, "question"),
                                    (options.answer_column, raw_answer, "answer")):
            if value is None or not value.strip():
                state = "None" if value is None else "empty"
                problems.append(f"{what} is {state} (column {column!r})")
        row_id = str(number)
        if options.id_column is not None:
            row_id = _text(cell[options.id_column]) or ""
            if not row_id.strip():
                problems.append(f"id is empty (column {options.id_column!r})")
            elif row_id in ids:
                problems.append(f"id {row_id!r} repeats row {ids[row_id]}")
            ids.setdefault(row_id, number)
        difficulty = None
        if options.difficulty_column is not None:
            difficulty = _number(cell[options.difficulty_column])
            if difficulty is None:
                problems.append(f"difficulty {cell[options.difficulty_column]!r} is not a number "
                                f"(column {options.difficulty_column!r})")
        if problems:
            bad.append((split, number, f"{table.label}:{number}: " + "; ".join(problems)))
            continue
        values = {c: _text(v) or "" for c, v in cell.items()}
        values["question"] = question
        system = _text(cell[options.system_column]) if options.system_column else None
        system = system if system and system.strip() else options.system_prompt
        messages = ((("system", system),) if system else ()) + (("user", options.template.format_map(values)),)
        answer = raw_answer.strip()
        answer = extract_answer(answer) or answer
        hash_rule = options.eval_path is None and options.eval_split is None
        heldout = split == 1 or (hash_rule and is_heldout(Task("", _message_list(messages), "")))
        out.append(Row(table.label, number, row_id, messages, answer, raw_answer, difficulty, heldout))
    return out


def _unique(rows: list[Row], split: int, bad: list[tuple[int, int, str]]) -> list[Row]:
    """``rows`` without the later repeats of a prompt (each repeat is reported in ``bad``)."""
    first: dict[tuple, Row] = {}
    out = []
    for r in rows:
        seen = first.setdefault(_key(r), r)
        if seen is r:
            out.append(r)
            continue
        clash = "" if seen.answer == r.answer else f", with a different answer ({r.answer!r} vs {seen.answer!r})"
        bad.append((split, r.number, f"{_where(r)}: duplicates row {seen.number} (same prompt{clash})"))
    return out


def _where(row: Row) -> str:
    return f"{row.file}:{row.number}"


def _key(row: Row) -> tuple:
    """Rows with the same key show the model the same prompt (spacing aside)."""
    return tuple((role, " ".join(content.split())) for role, content in row.messages)


def _message_list(messages: tuple[tuple[str, str], ...]) -> list[Message]:
    return [{"role": role, "content": text} for role, text in messages]


def _text(value: Any) -> str | None:
    """A cell as text: None (and NaN) stay None, integral floats lose their ".0"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value if isinstance(value, str) else str(value)


def _number(value: Any) -> float | int | None:
    """A difficulty cell as a number (int when integral), or None when it is not one."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(x):
        return None
    return int(x) if x.is_integer() else x


def _template_fields(template: Any) -> list[str]:
    """The placeholder names of ``template`` (``ConfigError`` naming ``env.template`` if malformed)."""
    if not isinstance(template, str) or not template.strip():
        raise ConfigError(f"config key 'env.template': {template!r}: give a non-empty string such as "
                          "'{question}' (placeholders name columns)")
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise ConfigError(f"config key 'env.template': {e}: placeholders are {{column}}; write a literal "
                          "brace as {{ or }}") from e
    names = [name for _, name, _, _ in parsed if name is not None]
    for name in names:
        if not name or not re.fullmatch(r"[^.\[\]{}!:]+", name):
            raise ConfigError(f"config key 'env.template': placeholder {{{name}}}: name a column, e.g. "
                              "{question}; write a literal brace as {{ or }}")
    if not names:
        raise ConfigError(f"config key 'env.template': {template!r} has no placeholder: add {{question}}")
    return names


class DatasetSource(PositionStream):
    """A seeded, deterministic stream of the rows of a ``DatasetOptions`` (a ``TaskSource``).

    Stream position ``p`` takes a row from split ``p % 2`` (train, held-out; only one when the
    other has no row in the difficulty window), the ``p // 2``-th of that split's endless
    sequence of epochs.
    """

    STATE_NAME = "dataset"

    def __init__(self, options: DatasetOptions, seed: int = 0):
        self.start_stream(seed)
        self.options = options
        self.rows = (options.data.train, options.data.eval)
        self.low: float | int | None = None
        self.high: float | int | None = None
        self.active: tuple[list[int], ...] = tuple(list(range(len(rows))) for rows in self.rows)
        self._perms: dict[int, tuple[tuple, list[int]]] = {}

    def task_at(self, index: int) -> Task:
        """Task number ``index`` of the stream under the current window (the position is unchanged)."""
        splits = [s for s in range(len(SPLITS)) if self.active[s]]
        split = splits[index % len(splits)]
        epoch, offset = divmod(index // len(splits), len(self.active[split]))
        return self._task(self.rows[split][self._permutation(split, epoch)[offset]])

    def _permutation(self, split: int, epoch: int) -> list[int]:
        """The order of the active rows of ``split`` in ``epoch`` (the latest one is cached)."""
        key = (epoch, self.low, self.high)
        cached = self._perms.get(split)
        if cached is None or cached[0] != key:
            order = list(self.active[split])
            if self.options.shuffle:
                random.Random(f"{SOURCE}:{self.seed}:{SPLITS[split]}:{epoch}:{self.low}-{self.high}").shuffle(order)
            cached = self._perms[split] = (key, order)
        return cached[1]

    def _task(self, row: Row) -> Task:
        split = SPLITS[row.heldout]
        meta = {"source": SOURCE, "split": split, "heldout": row.heldout, "file": row.file, "row": row.number,
                "match": self.options.match, "raw_answer": row.raw_answer}
        if row.difficulty is not None:
            meta["horizon"] = meta["difficulty"] = row.difficulty
        return Task(id=f"{SOURCE}/{split}/{row.file}:{row.id}",
                    messages=_message_list(row.messages),
                    answer=row.answer, meta=meta, source=SOURCE)

    def set_horizon(self, low: Any, high: Any = None) -> None:
        """Keep the rows whose difficulty lies in ``[low, high]`` (``high`` None: ``low``); without
        ``difficulty_column`` any value is accepted and nothing changes. ``DataError`` when no row of
        either split is in the window; a warning on stderr when one split has none."""
        column = self.options.difficulty_column
        if column is None:
            return
        low, high = _number(low), _number(low if high is None else high)
        if low is None or high is None or low > high:
            raise ConfigError(f"config key 'env.difficulty_column': the horizon window needs two numbers "
                              f"low <= high, got [{low!r}, {high!r}]")
        active = tuple([i for i, r in enumerate(rows) if low <= r.difficulty <= high] for rows in self.rows)
        counts = ", ".join(f"{len(a)} {SPLITS[s]}" for s, a in enumerate(active))
        seen = sorted({r.difficulty for rows in self.rows for r in rows})
        if not any(active):
            raise DataError(f"config key 'env.difficulty_column': no row has {column!r} in [{low}, {high}]; "
                            f"the values present are {seen[:10]}{' ...' if len(seen) > 10 else ''}")
        if not all(active) and all(self.rows):
            print(f"horizon: dataset difficulty window [{low}, {high}] of column {column!r} holds {counts} rows",
                  file=sys.stderr)
        self.low, self.high, self.active = low, high, active

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position, "low": self.low, "high": self.high, "seed": self.seed,
                "fingerprint": self.options.data.fingerprint}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        position = self.check_state(state, {"low", "high"})
        if state.get("fingerprint", self.options.data.fingerprint) != self.options.data.fingerprint:
            raise DataError(f"the rows of env.path / env.eval_path changed since this state was saved "
                            f"({state['fingerprint']} -> {self.options.data.fingerprint}): resume with the "
                            "same files, or start a new run")
        if state["low"] is not None:
            self.set_horizon(state["low"], state["high"])
        else:
            self.low = self.high = None
            self.active = tuple(list(range(len(rows))) for rows in self.rows)
        self.position = position

    def make_env(self, task: Task) -> SingleTurnEnv:
        return SingleTurnEnv(task)


def heldout(task: Task) -> bool:
    """Whether ``task`` is in the held-out split: a row of the eval file (or, without one, held
    out by prompt hash); a task of another source falls back to ``is_heldout``."""
    flag = task.meta.get("heldout") if task.source == SOURCE else None
    return is_heldout(task) if flag is None else bool(flag)


def normalize_answer(text: str) -> str:
    """``text`` casefolded, without punctuation (kept between two digits: "3.5", "1,000"), the
    articles a/an/the and repeated whitespace: the comparison of ``match: normalized``."""
    text = unicodedata.normalize("NFKC", text).casefold()
    chars = []
    for i, ch in enumerate(text):
        if unicodedata.category(ch).startswith(("P", "S")):
            between_digits = 0 < i < len(text) - 1 and text[i - 1].isdigit() and text[i + 1].isdigit()
            if not between_digits:
                chars.append(" ")
                continue
        chars.append(ch)
    return " ".join(w for w in "".join(chars).split() if w not in ("a", "an", "the"))


class DatasetVerifier:
    """Outcome verifier: the completion's final answer (``extract_answer``) against ``task.answer``,
    compared as ``task.meta["match"]`` says (``math`` when absent). Score 1.0 when they match, else
    0.0 (also when the completion states no final answer). ``VerifierError`` on an empty reference."""

    def __call__(self, task: Task, episode: Episode) -> Outcome:
        gold = task.answer.strip()
        if not gold:
            raise VerifierError(f"task {task.id} has an empty answer: the dataset verifier needs one")
        mode = task.meta.get("match", "math")
        if mode not in MATCH_MODES:
            raise VerifierError(f"task {task.id}: meta['match']={mode!r} is not one of {list(MATCH_MODES)}")
        extracted = extract_answer(episode.final_text)
        if extracted is None:
            correct = False
        elif mode == "math":
            correct = answers_equivalent(extracted, gold)
        elif mode == "exact":
            correct = extracted.strip() == gold
        else:
            correct = bool(normalize_answer(gold)) and normalize_answer(extracted) == normalize_answer(gold)
        return Outcome(score=1.0 if correct else 0.0, correct=correct,
                       details={"extracted": extracted, "gold": gold, "match": mode})


SPEC = EnvSpec(
    name=SOURCE,
    options=DatasetOptions,
    make_source=DatasetSource,
    verifier=DatasetVerifier(),
    format_score=format_score,
    heldout=heldout,
)
