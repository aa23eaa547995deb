"""The dependency rules (import-linter contracts in pyproject.toml) hold, and would catch a break."""

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[1]
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
        "sys.argv = ['lint-imports', '--no-cache']; lint_imports_command()"]


def _lint(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(LINT, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_contracts_are_kept():
    proc = _lint(ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_a_broken_contract_fails(tmp_path):
    for name in ("rl", "rewards", "envs", "recipes"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "results"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with open(tmp_path / "rl/distill/teachers.py", "a") as f:
        f.write("\nimport rl.trainer.loop  # a job importing another job\n")
    proc = _lint(tmp_path)
    assert proc.returncode != 0
    assert "the three jobs do not import one another BROKEN" in proc.stdout


def test_every_concrete_env_is_guarded():
    """Each env module besides the shared ones is in the 'only envs/ import a concrete env' contract."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["name"].startswith("only envs/")]
    concrete = {f"envs.{p.stem}" for p in (ROOT / "envs").glob("*.py") if p.stem not in ("__init__", "base", "registry", "curriculum")}
    assert set(contract["forbidden_modules"]) == concrete
