"""Every subcommand answers --help with its purpose and where its keys are, without loading torch."""

import subprocess
import sys

import pytest

from rl.cli import COMMANDS, main


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_subcommand_help(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"horizon {command}") and "horizon keys" in out


def test_help_does_not_import_torch():
    code = "import sys; from rl.cli import main; main(['train', '--help']); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("False")
