"""Monte Carlo (Math-Shepherd) step labels only: ``horizon prm --stages '[label]'``.

    python recipes/label_steps.py --mc_k 8 --num_tasks 300

Writes ``<output_dir>/labels`` (TRL stepwise rows: prompt, completions = steps, labels, plus
soft_labels and chain_math's exact_labels) and ``labels/quality.json`` (MC labels vs exact).
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "prm_chain_math.yaml"


def main(argv: list[str]) -> int:
    from rl.cli import main as cli_main
    from rl.cli import split_args

    config, _, _ = split_args(argv)
    return cli_main(["prm", *([] if config else ["--config", str(DEFAULT_CONFIG)]), "--stages", "[label]", *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
