"""The configuration reference, generated from the config dataclasses themselves.

Every key of ``horizon train`` (``TrainConfig``), ``horizon distill`` (``DistillConfig``),
``horizon prm`` (``PRMConfig``) and ``horizon eval`` (``EvalJobConfig``) with its type (as
annotated), its default (as that job builds it) and what it means: the comment lines just
above the field and its trailing ``# comment`` in the source, read with ``ast`` + ``tokenize``,
so the reference cannot drift from the code. Section classes contribute their docstrings. The
``env`` section's options are the fields of the env spec's ``options`` dataclass (the job's
default env; every built-in env's options are listed at the end).

``recipes/configs/REFERENCE.md`` is this module's output; ``tests/test_config_reference.py``
fails when it is stale. Regenerate with::

    python -m rl.config_doc > recipes/configs/REFERENCE.md      # or: horizon keys --markdown

Nothing here imports torch.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import re
import sys
import textwrap
import tokenize
import typing
from typing import Any

import yaml

from rl.config import ENV_KEYS, EnvConfig, all_keys, to_dict

REGENERATE = "python -m rl.config_doc > recipes/configs/REFERENCE.md"

# (command, "module:Class") of each job, in the order the reference lists them
JOBS = (
    ("horizon train", "rl.trainer.config:TrainConfig"),
    ("horizon distill", "rl.distill.config:DistillConfig"),
    ("horizon prm", "rl.prm.config:PRMConfig"),
    ("horizon eval", "rl.eval_job:EvalJobConfig"),
)


@dataclasses.dataclass
class FieldDoc:
    """One field of a config dataclass as its source writes it."""

    annotation: str  # the annotation's source text, e.g. 'Literal["hf", "vllm", "auto"]'
    comment: str  # the comment lines above the field, then its trailing comment ('' if none)


def _resolve(ref: str) -> type:
    import importlib

    module, name = ref.split(":")
    return getattr(importlib.import_module(module), name)


def field_docs(cls: type) -> dict[str, FieldDoc]:
    """Each annotated field of dataclass ``cls`` (and its dataclass bases) -> ``FieldDoc``."""
    docs: dict[str, FieldDoc] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        source = textwrap.dedent(inspect.getsource(klass))
        comments: dict[int, str] = {}  # line -> comment text
        code_lines: set[int] = set()  # lines holding code (a comment on one is a trailing comment)
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                comments[tok.start[0]] = tok.string.lstrip("#").strip()
            elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                                  tokenize.ENDMARKER):
                code_lines.update(range(tok.start[0], tok.end[0] + 1))
        (node,) = ast.parse(source).body
        for stmt in node.body:
            if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
                continue
            above, line = [], stmt.lineno - 1
            while line in comments and line not in code_lines:
                above.insert(0, comments[line])
                line -= 1
            trailing = [comments[n] for n in range(stmt.lineno, stmt.end_lineno + 1)
                        if n in comments and n in code_lines]
            text = " ".join(c for c in [*above, *trailing] if not c.startswith("noqa"))
            docs[stmt.target.id] = FieldDoc(ast.get_source_segment(source, stmt.annotation) or "", text)
    return docs


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def default_values(cls: type) -> dict[str, Any]:
    """Every dotted key of config class ``cls`` -> its default, as plain data (what
    ``load_config`` reads back). Built field by field, so a class whose bare construction is
    invalid (``EvalJobConfig`` needs targets) still has its defaults listed; a required field
    without a default maps to ``dataclasses.MISSING``."""
    nested = {f.name: to_dict(_default(f)) for f in dataclasses.fields(cls)}
    flat: dict[str, Any] = {}
    for key in all_keys(cls):  # the leaves by the classes, so a dict-valued key stays one key
        node = nested
        for part in key.split("."):
            node = node[part]
        flat[key] = node
    return flat


def _md(text: str) -> str:
    """Docstring / comment text as one markdown line: RST ``code`` -> `code`, table-safe."""
    return " ".join(text.replace("``", "`").replace("|", "\\|").split())


def _yaml(value: Any) -> str:
    if value is dataclasses.MISSING:
        return "(required)"
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _cell(text: str) -> str:
    """``text`` as a code span in a table cell (its pipes escaped; fenced by more backticks than
    it holds in a row, as CommonMark asks); empty stays empty."""
    if not text:
        return ""
    escaped = text.replace("|", "\\|")
    if "`" not in text:
        return f"`{escaped}`"
    fence = "`" * (max(len(run) for run in re.findall("`+", text)) + 1)
    return f"{fence} {escaped} {fence}"


def _docstring(cls: type) -> str:
    doc = inspect.getdoc(cls) or ""
    return "" if doc.startswith(cls.__name__ + "(") else doc  # dataclasses' generated signature


def _paragraphs(doc: str) -> list[str]:
    """A docstring's paragraphs as markdown lines (``Example::`` blocks left out)."""
    out = []
    for para in doc.split("\n\n"):
        if not para.strip() or para.strip().endswith("::") or para.startswith(" "):
            continue
        if para.startswith("- "):  # a bullet list stays one: one line per item
            out.append("\n".join("- " + _md(item) for item in para[2:].split("\n- ")))
        else:
            out.append(_md(para))
    return out


class _Writer:
    """Accumulates markdown lines; a section already written with the same class, key prefix and
    defaults (``reward.*`` of every job) is referred back to instead of repeated."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.command = ""  # the job being written
        self.written: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}  # (class, prefix) -> (defaults, job)

    def seen(self, name: str, prefix: str, defaults: dict[str, Any]) -> str | None:
        """The job that already listed this section with these defaults (else record it; None)."""
        own = {k: v for k, v in defaults.items() if k.startswith(prefix)}
        earlier = self.written.get((name, prefix))
        if earlier and earlier[0] == own:
            return earlier[1]
        self.written.setdefault((name, prefix), (own, self.command))
        return None

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def table(self, rows: list[tuple[str, str, str, str]]) -> None:
        self.add("| key | type | default | meaning |", "|---|---|---|---|")
        self.add(*(f"| {_cell(key)} | {_cell(tp)} | {_cell(default)} | {meaning} |"
                   for key, tp, default, meaning in rows))
        self.add("")

    def section(self, cls: type, prefix: str, defaults: dict[str, Any], level: int, title: str) -> None:
        """A heading, ``cls``'s docstring and one table of its plain keys; then its sections."""
        hints = typing.get_type_hints(cls)
        docs = field_docs(cls)
        self.add(f"{'#' * level} {title}", "")
        if prefix and (earlier := self.seen(cls.__name__, prefix, defaults)):
            self.add(f"The same keys and defaults as under `{earlier}`.", "")
            return
        self.add(*(p + "\n" for p in _paragraphs(_docstring(cls))))
        rows, subsections = [], []
        for f in dataclasses.fields(cls):
            key, doc = prefix + f.name, docs.get(f.name, FieldDoc("", ""))
            if hints[f.name] is EnvConfig:
                subsections.append((f.name, None))
            elif dataclasses.is_dataclass(hints[f.name]):
                subsections.append((f.name, hints[f.name]))
            else:
                rows.append((key, doc.annotation, _yaml(defaults[key]), _md(doc.comment)))
        if rows:
            self.table(rows)
        for name, sub in subsections:
            if sub is None:
                self.env_section(prefix + name + ".", defaults, level + 1)
            else:
                self.section(sub, prefix + name + ".", defaults, level + 1,
                             f"`{prefix}{name}.*` — `{sub.__name__}`")

    def env_section(self, prefix: str, defaults: dict[str, Any], level: int) -> None:
        """The env section: its own keys, then the options of the job's default env."""
        from envs.registry import load_spec

        docs = field_docs(EnvConfig)
        name = defaults[prefix + "name"]
        self.add(f"{'#' * level} `{prefix}*` — `EnvConfig`", "")
        if earlier := self.seen("EnvConfig", prefix, defaults):
            self.add(f"The same keys and defaults as under `{earlier}`.", "")
            return
        self.add(*(p + "\n" for p in _paragraphs(_docstring(EnvConfig))))
        rows = [(prefix + k, docs[k].annotation, _yaml(defaults[prefix + k]), _md(docs[k].comment))
                for k in ENV_KEYS]
        options = load_spec(name).options
        option_docs = field_docs(options)
        rows += [(prefix + f.name, option_docs[f.name].annotation, _yaml(defaults[prefix + f.name]),
                  _md(option_docs[f.name].comment) or f"option of env `{name}` (`{options.__name__}`)")
                 for f in dataclasses.fields(options)]
        self.table(rows)


def builtin_env_options() -> dict[str, type]:
    """Each built-in env's name (``envs.registry.BUILTIN``, in order) -> its options dataclass.
    A built-in env whose module cannot be imported is an error (``ConfigError``)."""
    from envs.registry import BUILTIN, load_spec

    return {name: load_spec(name).options for name in BUILTIN}


def config_reference_markdown() -> str:
    """The whole reference as markdown: one part per job, then every built-in env's options."""
    w = _Writer()
    w.add("# Configuration reference", "",
          f"Generated from the config dataclasses by `{REGENERATE}` (`horizon keys --markdown` prints "
          "the same); do not edit by hand: `tests/test_config_reference.py` fails when this file is stale.",
          "",
          "Every key can be set in a job's YAML file or on the command line, dotted for sections "
          "(`--rollout.group_size 4`). The defaults are those of the job with no YAML file; a recipe's "
          "YAML sets some of them. Types are the annotations in the source; `null` is Python's `None`.", "")
    for command, ref in JOBS:
        cls = _resolve(ref)
        w.command = command
        w.section(cls, "", default_values(cls), 2, f"`{command}` — `{cls.__name__}` ({ref.split(':')[0]})")
    w.add("## Env options by env", "",
          "The `env` section of every job takes `name`, `timeout_s`, `isolation` and the chosen env's own "
          "options, listed here with their defaults (the fields of its spec's `options` dataclass).", "")
    for name, options in builtin_env_options().items():
        docs = field_docs(options)
        w.add(f"### `env.name: {name}` — `{options.__module__}.{options.__name__}`", "")
        w.add(*(p + "\n" for p in _paragraphs(_docstring(options))))
        w.table([(f"env.{f.name}", docs[f.name].annotation, _yaml(to_dict(_default(f))), _md(docs[f.name].comment))
                 for f in dataclasses.fields(options)])
    return "\n".join(w.lines).rstrip() + "\n"


def main() -> int:
    """Print the reference (``python -m rl.config_doc > recipes/configs/REFERENCE.md``)."""
    sys.stdout.write(config_reference_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
