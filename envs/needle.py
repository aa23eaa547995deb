"""needle: long-context probes: facts placed at controlled token depths in filler of controlled token length.

Two modes (``env.mode``):

- ``kv``: filler prose (sentences from a fixed vocabulary) holding key-value facts, "The code of
  amber-4821 is coral-3907." A question of k hops names a key; the answer is the code reached
  after following k facts (amber-4821 -> coral-3907 -> ...). Distractors are near-miss facts: a
  key one digit away from a key of the chain, with another code (relevance, not just retrieval).
- ``code``: a generated Python project (files of small functions). The needle is a function that
  can return None (``dict.get``), k - 1 wrappers that pass its result on, and one function that
  reads an attribute of the last one's result without a None check, each in its own file. The
  question asks which function can raise AttributeError on None; the answer is ``path:function``.
  Distractors: guarded uses, near-miss functions (one character away) that never return None,
  and guarding wrappers (``... or EMPTY``), the last two with unguarded uses that are safe.

Lengths are counted in tokens of ``env.tokenizer`` (special tokens excluded). ``length`` is the
document's (filler + facts; the question, the instructions and the chat template come on top).
The needle block (the k facts of the chain, in a shuffled order; in ``code`` mode the k + 1
functions) sits at ``depth``: the share of the rest of the document that comes before it (0: at
the start, 1: at the end), to the nearest filler unit (a sentence or a small function).
Distractors sit at uniformly drawn depths. ``task.meta`` records the requested and the measured
length and depth, the hops and the token position of every needle and distractor.

Task ``i`` of seed ``s`` draws its content (keys, names, filler stream, distractor depths) from
RNGs seeded by ``(s, i)`` only, so the tasks at one position differ across the grid's cells only
by the cell: shorter documents are prefixes of the same filler, the needle moves, the chain
grows. The held-out split (``heldout``) hashes the chain's first fact, so it keeps the same
positions in every cell, and a training task never shares its first fact with a held-out one.

``env.tokenizer`` names a local tokenizer directory, or a horizon built-in model name. Envs may
import only ``rl.types`` and ``rl.errors`` of ``rl``, so this module loads directories only:
``rl.build.build_task_source`` (every job: train, eval, distill, prm) turns a built-in name into
its directory first; code that calls ``SPEC.make_source`` itself must pass a directory.

Example::

    source = NeedleSource(NeedleConfig(lengths=[2048], depths=[0.5], tokenizer="/path/tok"), seed=0)
    (task,) = source.sample(1)     # task.meta["needle_positions"] == [~1016]
    verify(task, episode)          # Outcome(1.0, True, ...) when the reply ends "#### <code>"
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from envs.base import HELDOUT_EVERY, EnvSpec, PositionStream, SingleTurnEnv, is_int
from rl.errors import ConfigError, DataError
from rl.types import Episode, Outcome, Task

SOURCE = "needle"
MAX_HOPS = 16
MIN_LENGTH = 64
MAX_DISTRACTORS = 64
_CHUNK = 64  # filler units tokenized per batch

_KEY_WORDS = ("amber", "basil", "cedar", "coral", "delta", "ember", "fable", "garnet", "harbor", "indigo",
              "jasper", "kestrel", "lumen", "maple", "nectar", "onyx", "pebble", "quartz", "raven", "saffron",
              "tundra", "umber", "velvet", "willow", "xenon", "yarrow", "zephyr", "birch", "cobalt", "dune",
              "falcon", "glacier", "hazel", "iris", "juniper", "lotus", "nova", "opal", "ridge", "sable")
_SUBJECTS = ("the old miller", "a tired farmer", "the village baker", "a quiet student", "the harbor master",
             "an elderly painter", "the night watchman", "a young shepherd", "the town clerk",
             "a travelling merchant", "the blacksmith", "a curious child")
_VERBS = ("walked past", "looked at", "repaired", "painted", "carried", "counted", "cleaned", "described",
          "visited", "sold", "measured", "forgot")
_OBJECTS = ("the stone bridge", "a wooden cart", "the narrow lane", "an empty barrel", "the church tower",
            "a basket of apples", "the mill wheel", "the east gate", "a pile of letters", "the garden wall",
            "a broken lantern", "the fishing boats")
_TIMES = ("in the morning", "before noon", "after the rain", "at dusk", "on market day", "during the winter",
          "late at night", "in early spring", "for a while", "without a word")
_QUESTION_KV_1 = "What is the code of {key}?"
_QUESTION_KV = ("Start from {key}. Look up its code, then look up the code of that code, and so on: {hops} "
                "look-ups in all. What is the code after the last look-up?")
_QUESTION_CODE = ("Exactly one function in this project can raise AttributeError: it reads an attribute of a "
                  "value returned by a project function that can return None, without checking it for None. "
                  "Which function is it? Answer as path:function, for example pkg/example/core.py:compute_total.")
_FORMAT = 'Write the answer alone on the last line as "#### <answer>".'

_MODULES = ("billing", "orders", "users", "reports", "cache", "storage", "payments", "search", "audit",
            "catalog", "inventory", "shipping", "accounts", "metrics", "sessions", "alerts", "pricing",
            "tickets", "exports", "ledger", "profiles", "notify", "schedule", "imports")
_SUBMODULES = ("core", "utils", "models", "views", "api", "helpers", "service", "io")
_NOUNS = ("invoice", "order", "customer", "ticket", "shipment", "account", "profile", "session", "payment",
          "product", "voucher", "booking", "device", "license", "contract")
_ATTRS = ("total", "status", "owner", "amount", "email", "label", "region", "created_at")
_WRAP_VERBS = ("load", "get", "fetch", "resolve", "lookup", "read", "obtain", "pull", "select", "retrieve",
               "query", "open", "locate", "access", "grab", "collect")
_WRAP_SUFFIXES = ("view", "entry", "record", "item", "data", "info", "row", "ref")
_USE_VERBS = ("render", "format", "show", "print", "export", "summarize", "describe", "publish", "log", "emit")
_FILLER_VERBS = ("scale", "clamp", "count", "merge", "label", "round", "shift", "split", "weigh", "accumulate")
_FILLER_NOUNS = ("weights", "values", "rows", "limits", "labels", "totals", "scores", "offsets", "ranges", "counts")
_FUNCS_PER_FILE = 8


@dataclass(frozen=True)
class NeedleConfig:
    """Options of a needle task stream (the ``env`` config keys), validated on construction.

    Each task draws its length from ``lengths``, its depth from ``depths`` and its hops
    uniformly from ``[min_hops, max_hops]`` (the horizon knob ``set_horizon`` moves). The grid eval
    (``rl.needle_grid``) uses ``lengths`` x ``depths`` as its axes and ``eval.horizons`` as hops.
    """

    # document lengths in tokens of env.tokenizer (filler + facts; the question comes on top)
    lengths: tuple[int, ...] = (1024, 2048, 4096)
    # needle depths: the share of the rest of the document before the needle (0 first, 1 last)
    depths: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    # hops per task, drawn from [min_hops, max_hops] (the horizon: facts to follow; code: functions)
    min_hops: int = 1
    max_hops: int = 1
    # near-miss distractors per task (kv: facts; code: functions)
    distractors: int = 4
    mode: Literal["kv", "code"] = "kv"  # kv: "The code of X is Y." facts in prose; code: a None bug in a project
    # counts the tokens: a local tokenizer dir, or a built-in model name (resolved by rl)
    tokenizer: str = "smollm2-135m-instruct"

    def __post_init__(self) -> None:
        lengths, depths = self.lengths, self.depths
        if not isinstance(lengths, (list, tuple)) or not lengths or not all(
                is_int(x) and MIN_LENGTH <= x <= 1 << 20 for x in lengths):
            raise ConfigError(f"config key 'env.lengths': {lengths!r}: give a non-empty list of token counts "
                              f"in {MIN_LENGTH}..{1 << 20}, e.g. [1024, 2048, 4096]")
        if not isinstance(depths, (list, tuple)) or not depths or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and 0 <= x <= 1 for x in depths):
            raise ConfigError(f"config key 'env.depths': {depths!r}: give a non-empty list of fractions in "
                              "[0, 1], e.g. [0, 0.25, 0.5, 0.75, 1]")
        object.__setattr__(self, "lengths", tuple(lengths))
        object.__setattr__(self, "depths", tuple(float(x) for x in depths))
        _check_hops(self.min_hops, self.max_hops)
        if not is_int(self.distractors) or not 0 <= self.distractors <= MAX_DISTRACTORS:
            raise ConfigError(f"config key 'env.distractors': {self.distractors!r}: use an integer in "
                              f"0..{MAX_DISTRACTORS}")
        if self.mode not in ("kv", "code"):
            raise ConfigError(f"config key 'env.mode': {self.mode!r} is not one of ['kv', 'code']")
        if not isinstance(self.tokenizer, str) or not self.tokenizer:
            raise ConfigError(f"config key 'env.tokenizer': {self.tokenizer!r}: name a tokenizer directory "
                              "or a built-in model")


@dataclass
class _Unit:
    """A piece of the document: its text, its token count, and what it is."""

    text: str
    tokens: int
    kind: str = "filler"  # filler | header | needle | distractor
    tag: int = -1  # needle: its chain position; distractor: its index
    char_start: int = field(default=0, repr=False)


class NeedleSource(PositionStream):
    """A seeded, deterministic stream of needle tasks (a ``TaskSource``); the horizon is the hops."""

    STATE_NAME = "needle"

    def __init__(self, config: NeedleConfig | None = None, seed: int = 0):
        self.start_stream(seed)
        self.config = config or NeedleConfig()
        self.min_hops, self.max_hops = self.config.min_hops, self.config.max_hops
        self._tokenizer_dir = tokenizer_dir(self.config.tokenizer)

    @property
    def tokenizer(self):
        return load_tokenizer(self._tokenizer_dir)

    def task_at(self, index: int) -> Task:
        """Task number ``index`` under the current hop settings (the position is unchanged)."""
        cfg = self.config
        pick = random.Random(f"{SOURCE}:{self.seed}:{index}:cell")
        length, depth = pick.choice(cfg.lengths), pick.choice(cfg.depths)
        hops = pick.randint(self.min_hops, self.max_hops)
        return self.make_task(index, length, depth, hops)

    def make_task(self, index: int, length: int, depth: float, hops: int) -> Task:
        """The task at ``index`` in the cell ``(length, depth, hops)``: the same content at every cell."""
        _check_hops(hops, hops)
        key = f"{SOURCE}:{self.seed}:{index}"
        if self.config.mode == "kv":
            content = _kv_content(random.Random(key + ":content"), hops, self.config.distractors)
            filler = _kv_filler(random.Random(key + ":filler"))
        else:
            content = _code_content(random.Random(key + ":content"), hops, self.config.distractors)
            filler = _code_filler(random.Random(key + ":filler"), content["taken_paths"])
        fracs = [random.Random(f"{key}:dfrac{j}").random() for j in range(len(content["distractors"]))]
        order = list(range(len(content["needles"])))
        random.Random(f"{key}:order:{hops}").shuffle(order)
        doc, units = self._assemble(filler, content, order, fracs, length, depth)
        positions = _token_positions(self.tokenizer, doc, units)
        n_tokens = positions["total"]
        block = [u for u in units if u.kind == "needle"]
        start, end = positions[id(block[0])], positions["block_end"]
        rest = max(1, n_tokens - (end - start))
        needle_pos = [positions[id(u)] for u in sorted(block, key=lambda u: u.tag)]
        meta = {
            "horizon": hops, "hops": hops, "mode": self.config.mode, "length": length,
            "context_tokens": n_tokens, "depth": depth, "depth_actual": start / rest,
            "needle_positions": needle_pos, "needle_depths": [p / n_tokens for p in needle_pos],
            "block_span": [start, end],
            "distractor_positions": [positions[id(u)] for u in sorted(
                (u for u in units if u.kind == "distractor"), key=lambda u: u.tag)],
            "chain": content["chain"], "distractors": content["distractor_info"],
            "split_key": content["split_key"], "seed": self.seed, "index": index,
            "tokenizer": self.config.tokenizer, "source": SOURCE,
        }
        if self.config.mode == "kv":
            question = (_QUESTION_KV_1.format(key=content["chain"][0]) if hops == 1
                        else _QUESTION_KV.format(key=content["chain"][0], hops=hops))
            prompt = (f"Read the document, then answer the question after it.\n\n<document>\n{doc}\n"
                      f"</document>\n\n{question}\n{_FORMAT}")
        else:
            question = _QUESTION_CODE
            prompt = (f"Read the files of this Python project, then answer the question after them.\n\n"
                      f"<files>\n{doc}\n</files>\n\n{question}\n{_FORMAT}")
        meta["question"] = question
        return Task(id=f"{SOURCE}/{self.config.mode}/L{length}/d{depth:g}/h{hops}/s{self.seed}-i{index}",
                    messages=[{"role": "user", "content": prompt}], answer=content["answer"], meta=meta,
                    source=SOURCE)

    def _assemble(self, filler, content, order, fracs, length, depth) -> tuple[str, list[_Unit]]:
        """The document text and its units: filler up to the token budget, the distractors at
        ``fracs`` of the filler, the needle block at ``depth`` of everything else."""
        code = self.config.mode == "code"
        texts = [content["needles"][i] for i in order] + content["distractors"]
        counts = _count(self.tokenizer, texts + ([content["reopen"]] if code else []))
        block = [_Unit(t, c, "needle", i) for t, c, i in zip(texts, counts, order)]
        distractors = [_Unit(t, c, "distractor", j) for j, (t, c) in
                       enumerate(zip(content["distractors"], counts[len(order):]))]
        budget = length - sum(u.tokens for u in block + distractors) - (counts[-1] if code else 0)
        if budget < 0:
            raise DataError(f"a needle task of {length} tokens cannot hold its {len(block)} needle and "
                            f"{len(distractors)} distractor units ({length - budget} tokens): raise env.lengths "
                            "or lower env.distractors / eval.horizons")
        units: list[_Unit] = []
        total = 0
        while True:
            chunk = [next(filler) for _ in range(_CHUNK)]
            for (text, kind), count in zip(chunk, _count(self.tokenizer, [t for t, _ in chunk])):
                if abs(budget - total - count) >= abs(budget - total):
                    break
                units.append(_Unit(text, count, kind))
                total += count
            else:
                continue
            break
        first = 1 if code else 0  # in code mode every unit lives in a file: after the first header
        at_filler = [max(first, _closest_boundary(units, frac)) for frac in fracs]
        for at, unit in sorted(zip(at_filler, distractors), key=lambda p: (p[0], p[1].tag), reverse=True):
            units.insert(at, unit)
        at = _closest_boundary(units, depth)
        follow = units[at:]
        if code and follow and follow[0].kind != "header":
            block.append(_Unit(content["reopen"], counts[-1], "header"))
        units[at:at] = block
        chars = 0
        for u in units:
            u.char_start = chars
            chars += len(u.text)
        return "".join(u.text for u in units), units

    def set_horizon(self, low: int, high: int | None = None) -> None:
        high = low if high is None else high
        _check_hops(low, high)
        self.min_hops, self.max_hops = low, high

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position, "min_hops": self.min_hops, "max_hops": self.max_hops,
                "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.check_state(state, {"min_hops", "max_hops"})
        self.set_horizon(state["min_hops"], state["max_hops"])
        self.position = state["position"]

    def make_env(self, task: Task) -> SingleTurnEnv:
        return SingleTurnEnv(task)


# --------------------------------------------------------------------------- content


def _kv_content(rng: random.Random, hops: int, n_distractors: int) -> dict[str, Any]:
    """The chain keys (drawn for MAX_HOPS, the first ``hops + 1`` used), the facts and the near misses."""
    used: set[str] = set()

    def fresh() -> str:
        while True:
            key = f"{rng.choice(_KEY_WORDS)}-{rng.randint(1000, 9999)}"
            if key not in used:
                used.add(key)
                return key

    full = [fresh() for _ in range(MAX_HOPS + 1)]
    chain = full[: hops + 1]
    needles = [f" The code of {a} is {b}." for a, b in zip(chain, chain[1:])]
    distractors, info = [], []
    for j in range(n_distractors):
        target = chain[j % hops]
        while True:
            i = rng.randrange(4)
            digits = list(target.split("-")[1])
            digits[i] = rng.choice([d for d in "0123456789" if d != digits[i] and (i or d != "0")])
            near = f"{target.split('-')[0]}-{''.join(digits)}"
            if near not in used:
                used.add(near)
                break
        value = fresh()
        distractors.append(f" The code of {near} is {value}.")
        info.append({"key": near, "value": value, "near": target})
    return {"chain": chain, "needles": needles, "distractors": distractors, "distractor_info": info,
            "answer": chain[-1], "split_key": f"kv:{full[0]}>{full[1]}"}


def _kv_filler(rng: random.Random):
    """An endless stream of ``(sentence, "filler")``; each sentence starts with a space."""
    while True:
        text = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_TIMES)}."
        yield " " + text[0].upper() + text[1:], "filler"


def _code_content(rng: random.Random, hops: int, n_distractors: int) -> dict[str, Any]:
    """The None source, ``hops - 1`` pass-through wrappers and the breaking use, each in its own
    file; distractor functions; the paths taken (kept out of the filler)."""
    paths = rng.sample([f"pkg/{m}/{s}.py" for m in _MODULES for s in _SUBMODULES], MAX_HOPS + 2)
    noun, attr = rng.choice(_NOUNS), rng.choice(_ATTRS)
    arg, table, empty = f"{noun}_id", f"{noun.upper()}S", f"EMPTY_{noun.upper()}"
    wrappers = [f"{v}_{noun}_{s}" for v in _WRAP_VERBS for s in _WRAP_SUFFIXES]
    uses = [f"{v}_{noun}_{a}" for v in _USE_VERBS for a in _ATTRS]
    rng.shuffle(wrappers)
    rng.shuffle(uses)
    names = [f"find_{noun}"] + wrappers[: hops - 1]
    funcs = [f"def {names[0]}({arg}):\n    record = {table}.get({arg})\n    if record is None:\n        return None\n"
             f"    return record\n"]
    funcs += [f"def {w}({arg}):\n    return {prev}({arg})\n" for prev, w in zip(names, names[1:])]
    funcs.append(f"def {uses[0]}({arg}):\n    value = {names[-1]}({arg})\n    return value.{attr}\n")
    chain = [{"path": p, "function": f} for p, f in zip(paths, names + [uses[0]])]
    needles = [f"\n# file: {c['path']}\n\n{text}" for c, text in zip(chain, funcs)]
    spare_wrappers, spare_uses = iter(wrappers[MAX_HOPS:]), iter(uses[1:])
    taken = set(names) | set(uses) | set(wrappers)

    def near_miss() -> str:  # one character away from the None source's name, never None
        base = names[0]
        for _ in range(1000):
            i = rng.randrange(len("find_"), len(base) + 1)
            name = base + "s" if i == len(base) else base[:i] + rng.choice("abcdefghijklmnopqrstuvwxyz") + base[i + 1:]
            if name not in taken:
                taken.add(name)
                return name
        raise DataError("the needle code mode ran out of near-miss names: lower env.distractors")

    def unguarded(callee: str) -> str:
        return f"\ndef {next(spare_uses)}({arg}):\n    value = {callee}({arg})\n    return value.{attr}\n"

    distractors: list[str] = []
    while len(distractors) < n_distractors:
        pair_fits = n_distractors - len(distractors) >= 2
        kind = ("near", "guarded", "guard")[len(distractors) % 3] if pair_fits else "guarded"
        if kind == "near":
            name = near_miss()
            distractors += [f"\ndef {name}({arg}):\n    return {table}.get({arg}, {empty})\n", unguarded(name)]
        elif kind == "guard":
            name = next(spare_wrappers)
            distractors += [f"\ndef {name}({arg}):\n    return {rng.choice(names)}({arg}) or {empty}\n",
                            unguarded(name)]
        else:
            distractors.append(f"\ndef {next(spare_uses)}({arg}):\n    value = {rng.choice(names)}({arg})\n"
                               f"    if value is None:\n        return None\n    return value.{attr}\n")
    info = [{"function": re.match(r"\ndef (\w+)", d).group(1)} for d in distractors]
    return {"chain": chain, "needles": needles, "distractors": distractors, "distractor_info": info,
            "answer": f"{chain[-1]['path']}:{chain[-1]['function']}", "taken_paths": set(paths),
            "reopen": f"\n# file: {paths[-1]}\n", "split_key": f"code:{paths[0]}:{names[0]}"}


def _code_filler(rng: random.Random, taken: set[str]):
    """An endless stream of ``(text, kind)``: a file header, then small functions, and so on."""
    free = [f"pkg/{m}/{s}.py" for m in _MODULES for s in _SUBMODULES if f"pkg/{m}/{s}.py" not in taken]
    rng.shuffle(free)
    n, numeric = 0, []
    while True:
        path = free[n // _FUNCS_PER_FILE % len(free)]
        yield f"\n# file: {path}\n", "header"
        for _ in range(_FUNCS_PER_FILE):
            n += 1
            name = f"{rng.choice(_FILLER_VERBS)}_{rng.choice(_FILLER_NOUNS)}_{n}"
            kind = rng.randrange(6)
            if kind == 0:
                numeric.append(name)
                body = f"def {name}(values, factor):\n    total = 0\n    for value in values:\n" \
                       f"        total += value * factor\n    return total\n"
            elif kind == 1:
                body = f"def {name}(value, low, high):\n    return max(low, min(high, value))\n"
            elif kind == 2:
                body = (f"def {name}(items, target):\n    found = 0\n    for item in items:\n"
                        f"        if item == target:\n            found += 1\n    return found\n")
            elif kind == 3:
                body = (f"def {name}(left, right):\n    merged = dict(left)\n    merged.update(right)\n"
                        f"    return merged\n")
            elif kind == 4 and numeric:
                body = f"def {name}(values):\n    return {rng.choice(numeric)}(values, {rng.randint(2, 9)}) + 1\n"
            else:
                body = f"{name.upper()} = {rng.randint(2, 999)}\n"
            yield "\n" + body, "filler"


# --------------------------------------------------------------------------- tokens


def tokenizer_dir(name_or_dir: str) -> str:
    """``name_or_dir`` if it is a local directory; ``ConfigError`` naming ``env.tokenizer`` otherwise."""
    if Path(name_or_dir).expanduser().is_dir():
        return str(Path(name_or_dir).expanduser())
    raise ConfigError(
        f"config key 'env.tokenizer': {name_or_dir!r} is not a local directory. The needle env counts tokens "
        "with a tokenizer it loads from a directory (envs do not import rl.models); horizon's jobs resolve "
        "built-in names themselves; elsewhere pass the model directory, e.g. the output of python -c \"from "
        f"rl.models import resolve_model_path; print(resolve_model_path('{name_or_dir}'))\"")


@functools.lru_cache(maxsize=4)
def load_tokenizer(path: str):
    """The Hugging Face tokenizer in directory ``path`` (cached: every cell of a grid reuses it)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def _count(tokenizer, texts: list[str]) -> list[int]:
    if not texts:
        return []
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def _closest_boundary(units: list[_Unit], frac: float) -> int:
    """The unit boundary (0..len) whose share of the units' tokens before it is closest to ``frac``."""
    total = sum(u.tokens for u in units)
    cum, best, best_gap = 0, 0, abs(frac * total)
    for i, u in enumerate(units, 1):
        cum += u.tokens
        if abs(cum - frac * total) < best_gap:
            best, best_gap = i, abs(cum - frac * total)
    return best


def _token_positions(tokenizer, doc: str, units: list[_Unit]) -> dict:
    """Token index (in the document tokenized alone) of each needle and distractor unit's first
    non-blank character, keyed by ``id(unit)``; ``"total"``: the document's tokens;
    ``"block_end"``: the first token after the needle block's last non-blank character."""
    marks = [u for u in units if u.kind in ("needle", "distractor")]
    chars = [u.char_start + len(u.text) - len(u.text.lstrip()) for u in marks]
    last = max(i for i, u in enumerate(units) if u.kind == "needle")
    end_char = units[last].char_start + len(units[last].text.rstrip())
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(doc, add_special_tokens=False, return_offsets_mapping=True)
        starts = [a for a, _ in enc["offset_mapping"]]
        ends = [b for _, b in enc["offset_mapping"]]
        index = [bisect.bisect_right(ends, c) for c in chars]  # the token that holds character c
        out: dict = {"total": len(enc["input_ids"]), "block_end": bisect.bisect_left(starts, end_char)}
    else:  # the token count of the text before the mark
        index = [len(tokenizer(doc[:c], add_special_tokens=False)["input_ids"]) for c in chars]
        out = {"total": len(tokenizer(doc, add_special_tokens=False)["input_ids"]),
               "block_end": len(tokenizer(doc[:end_char], add_special_tokens=False)["input_ids"])}
    out.update({id(u): i for u, i in zip(marks, index)})
    return out


# --------------------------------------------------------------------------- scoring

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_STRIP = " \t\r\n`'\"*[](){}.,;!"


def extract_answer(text: str) -> str | None:
    """The answer in ``text``: the last ``<answer>...</answer>``, else the first line after the last
    ``####``; None when there is neither."""
    tags = _ANSWER_TAG.findall(text)
    if tags:
        return tags[-1].strip()
    if "####" in text:
        rest = text.rsplit("####", 1)[1].strip()
        return rest.splitlines()[0] if rest else ""
    return None


def normalize(answer: str) -> str:
    """Lower case, no surrounding quotes/backticks/brackets/punctuation, ``::`` read as ``:``, no
    trailing ``()``, blanks collapsed: ``"`Coral-3907`."`` -> ``coral-3907``."""
    text = " ".join(answer.split()).lower().replace("::", ":")
    text = text.strip(_STRIP)
    while text.endswith("()"):
        text = text[:-2].strip(_STRIP)
    return text.removeprefix("./")


# answer-shaped tokens: a kv code ("willow-3644") or a code-mode call site ("pkg/io.py:load")
_ANSWER_SHAPE = re.compile(r"[A-Za-z]+-\d{4}\b|[\w./-]+\.py:\w+")


def verify(task: Task, episode: Episode) -> Outcome:
    """Exact match after ``normalize`` of the extracted answer. A reply with no marker (``####``
    or ``<answer>`` tags) is read by its last answer-shaped token (``word-1234``,
    ``path.py:function``): small models often answer in a sentence ("The code of X is Y."), and
    the grid measures retrieval, not format; ``details["marked"]`` and the format term record
    whether the marker was there. A reply with neither scores 0."""
    text = episode.final_text
    got, marked = extract_answer(text), True
    if got is None:
        shaped = _ANSWER_SHAPE.findall(text)
        got, marked = (shaped[-1] if shaped else None), False
    if got is None:
        return Outcome(0.0, False, {"reason": "no '#### <answer>' line, <answer> tags or answer-shaped token",
                                    "expected": task.answer, "marked": False})
    ok = normalize(got) == normalize(task.answer)
    return Outcome(float(ok), ok, {"extracted": got, "expected": task.answer, "marked": marked})


def format_score(text: str) -> float:
    """1.0 when the reply marks an answer (``#### x`` or ``<answer>`` tags), else 0.0."""
    return 0.0 if extract_answer(text) in (None, "") else 1.0


def oracle_solution(task: Task) -> str:
    """An exact solution: one line per hop, then ``#### answer``."""
    chain = task.meta["chain"]
    if task.meta["mode"] == "kv":
        lines = [f"The code of {a} is {b}." for a, b in zip(chain, chain[1:])]
    else:
        lines = [f"{chain[0]['path']}:{chain[0]['function']} can return None."]
        lines += [f"{c['path']}:{c['function']} returns it unchanged." for c in chain[1:-1]]
        lines.append(f"{chain[-1]['path']}:{chain[-1]['function']} reads an attribute of it without a check.")
    return "\n".join(lines + [f"#### {task.answer}"])


def heldout(task: Task) -> bool:
    """The held-out split: a hash of the chain's first fact (the same at every cell of the grid)."""
    key = task.meta.get("split_key")
    if key is None:
        raise DataError(f"task {task.id} has no meta['split_key']: the needle split needs a needle task")
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % HELDOUT_EVERY == 0


def _check_hops(low: Any, high: Any) -> None:
    for name, value in (("min_hops", low), ("max_hops", high)):
        if not is_int(value) or not 1 <= value <= MAX_HOPS:
            raise ConfigError(f"config key 'env.{name}': {value!r} must be in 1..{MAX_HOPS} (needle's horizon: "
                              "facts to follow)")
    if low > high:
        raise ConfigError(f"config key 'env.max_hops': must be >= env.min_hops ({low}), got {high}")


SPEC = EnvSpec(
    name=SOURCE,
    options=NeedleConfig,
    make_source=NeedleSource,
    verifier=verify,
    format_score=format_score,
    oracle=oracle_solution,
    heldout=heldout,
)
