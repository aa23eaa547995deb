"""Distil a teacher into a student on chain_math: oracle traces -> verifier -> LoRA SFT -> eval.

Launch (CPU preset, SmolLM2-135M-Instruct student, chain_math's exact oracle as teacher):

    python recipes/distill.py
    python recipes/distill.py --teacher.kind model --teacher.model path/to/teacher --teacher.samples_per_task 4
    python recipes/distill.py --teacher.kind openai --teacher.base_url http://localhost:8000/v1 \\
        --teacher.model Qwen/Qwen2.5-7B-Instruct --teacher.samples_per_task 4
    horizon distill --config recipes/configs/distill_chain_math.yaml --sft.max_steps 40

Smoke run in seconds: ``--model tiny-random --num_tasks 32 --sft.max_steps 2 --eval.tasks_per_horizon 2``.

Writes ``<output_dir>/model`` (the merged student: the warm start of GRPO / PRM runs via
``--model runs/distill_chain_math/model``), the traces dataset with provenance, and greedy
pass@1 per horizon before and after in ``eval/`` (with ``horizon_curve.png``).
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "distill_chain_math.yaml"


def main(argv: list[str]) -> int:
    """Run ``horizon distill`` with this recipe's config unless ``--config`` is given."""
    from rl.cli import run_recipe

    return run_recipe("distill", DEFAULT_CONFIG, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
