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
    """Run ``horizon prm`` with this recipe's config unless ``--config`` is given."""
    from rl.cli import run_recipe

    return run_recipe("prm", DEFAULT_CONFIG, argv, ["--stages", "[label]"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
