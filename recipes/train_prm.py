"""Process reward model on chain_math: sample -> Monte Carlo step labels -> train -> evaluate.

    python recipes/train_prm.py                                    # all stages
    python recipes/train_prm.py --stages '[eval]'                  # re-evaluate a trained PRM
    python recipes/train_prm.py --labels exact                     # ablation: exact step labels
    horizon prm --config recipes/configs/prm_chain_math.yaml --mc_k 8

Smoke run: ``--sampler tiny-random --num_tasks 4 --mc_k 2 --eval_tasks 2 --best_of_n 2``.
The PRM lands in ``<output_dir>/prm`` (use it with ``--reward.prm`` in recipes/grpo_prm_chain_math.py);
``eval/prm.json`` holds step AUC, first-error accuracy, false alarms and best-of-N next to
the position-only and arithmetic-check baselines, ``eval/calibration.png`` the calibration.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "prm_chain_math.yaml"


def main(argv: list[str]) -> int:
    """Run ``horizon prm`` with this recipe's config unless ``--config`` is given."""
    from rl.cli import run_recipe

    return run_recipe("prm", DEFAULT_CONFIG, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
