import subprocess
import sys


def test_help_is_lazy_and_does_not_import_torch():
    code = "import sys, rl.cli; rl.cli.main(['--help']); assert 'torch' not in sys.modules, 'torch imported'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "horizon <command>" in proc.stdout


def test_config_error_is_one_line_and_exit_code_2():
    proc = subprocess.run([sys.executable, "-m", "rl.cli", "train", "--max_step", "3"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "horizon: error: unknown config key 'max_step' — did you mean 'max_steps'?"


def test_keys_lists_every_config_key():
    proc = subprocess.run([sys.executable, "-m", "rl.cli", "keys"], capture_output=True, text=True)
    assert "rollout.group_size = 8" in proc.stdout and "algorithm.clip_high = 0.28" in proc.stdout
