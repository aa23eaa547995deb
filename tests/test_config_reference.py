"""recipes/configs/REFERENCE.md is exactly what rl.config_doc generates from the config dataclasses."""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from rl.config import all_keys
from rl.config_doc import REGENERATE, config_reference_markdown, default_values, field_docs
from rl.distill.config import DistillConfig
from rl.eval_job import EvalJobConfig
from rl.prm.config import PRMConfig
from rl.trainer.config import TrainConfig

REFERENCE = Path(__file__).resolve().parents[1] / "recipes" / "configs" / "REFERENCE.md"


@dataclass
class _Example:
    plain: int = 1
    commented: float = 0.5  # a trailing comment
    # the line above,
    # and the one above that
    above: str | None = None  # then the trailing one
    listed: list[int] = field(default_factory=lambda: [1, 2])


def test_field_comments_are_the_lines_above_then_the_trailing_one():
    docs = field_docs(_Example)
    assert docs["plain"].comment == "" and docs["plain"].annotation == "int"
    assert docs["commented"].comment == "a trailing comment"
    assert docs["above"].comment == "the line above, and the one above that then the trailing one"
    assert docs["above"].annotation == "str | None"
    assert docs["listed"].annotation == "list[int]"


def test_defaults_come_field_by_field_so_a_config_with_required_keys_is_listed():
    # EvalJobConfig() itself raises (no targets); its defaults are still known
    defaults = default_values(EvalJobConfig)
    assert defaults["targets"] == [] and defaults["eval.horizons"] == [1, 2, 4, 8]
    assert defaults["env.name"] == "chain_math" and defaults["env.max_horizon"] == 4
    assert default_values(PRMConfig)["env.min_horizon"] == 2  # the job's own default_factory
    assert default_values(_Example) == {"plain": 1, "commented": 0.5, "above": None, "listed": [1, 2]}
    assert dataclasses.MISSING not in default_values(TrainConfig).values()


def test_every_key_of_every_job_is_in_the_reference():
    text = config_reference_markdown()
    for cls in (TrainConfig, DistillConfig, PRMConfig, EvalJobConfig):
        assert set(all_keys(cls)) == set(default_values(cls))
        missing = [k for k in all_keys(cls) if f"`{k}`" not in text]
        assert not missing, f"{cls.__name__} keys missing from the reference: {missing}"
    assert "| `max_failed_frac` | `float` | `0.5` | stop when more of a step's episodes" in text
    assert "| `rollout.max_new_tokens` | `int` | `160` |" in text  # PRMConfig's own default


def test_committed_reference_is_up_to_date():
    expected = config_reference_markdown()
    committed = REFERENCE.read_text() if REFERENCE.is_file() else ""
    assert committed == expected, (
        f"{REFERENCE.relative_to(REFERENCE.parents[2])} is stale (a config field, default or comment "
        f"changed): regenerate it with\n    {REGENERATE}"
    )


def test_horizon_keys_markdown_prints_the_reference_and_keys_eval_lists_defaults(capsys):
    from rl.cli import main

    assert main(["keys", "--markdown"]) == 0
    assert capsys.readouterr().out == config_reference_markdown()
    assert main(["keys", "eval"]) == 0  # EvalJobConfig() alone is invalid (no targets): defaults field by field
    out = capsys.readouterr().out
    assert "targets = []" in out and "eval.horizons = [1, 2, 4, 8]" in out
