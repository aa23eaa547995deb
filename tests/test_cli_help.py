"""Every subcommand answers --help with its purpose, an example and where its keys are, in well
under a second and without loading torch, matplotlib or a tracker."""

import subprocess
import sys

import pytest

from rl.cli import COMMANDS, HELP, USAGE, main

HEAVY = ("torch", "transformers", "matplotlib", "tensorboard", "trackio")


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_subcommand_help(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"horizon {command}")
    assert "Keys:" in out or "horizon keys" in out
    assert f"\n  {command} " in USAGE, f"{command} is missing from USAGE"


@pytest.mark.parametrize("command", ["plot", "models"])
def test_new_commands_help_has_purpose_and_example(command):
    assert "Example: horizon " + command in HELP[command] and "Keys:" in HELP[command]


def test_help_is_fast_and_does_not_import_heavy_modules():
    code = ("import sys, time; t = time.perf_counter(); from rl.cli import COMMANDS, main\n"
            "for c in COMMANDS: main([c, '--help'])\n"
            "print(time.perf_counter() - t, [m for m in %r if m in sys.modules])" % (HEAVY,))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    seconds, imported = out.strip().splitlines()[-1].split(" ", 1)
    assert imported == "[]", f"--help imported {imported}"
    assert float(seconds) < 1.0, f"--help of every command took {seconds} s"
