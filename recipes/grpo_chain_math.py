"""GRPO with LoRA on chain_math ("Start with 7. Add 5. Multiply by 3. ...").

Launch (CPU preset, SmolLM2-135M-Instruct; measured on 2 cores: ~36 s per step with vLLM,
~69 s with the transformers engine):

    python recipes/grpo_chain_math.py --config recipes/configs/grpo_chain_math.yaml
    python recipes/grpo_chain_math.py --model smollm2-135m-instruct --max_steps 3
    horizon train --config recipes/configs/grpo_chain_math.yaml --rollout.group_size 4

Smoke run in seconds: ``--model tiny-random --max_steps 2``.

What it should reach: the base SmolLM2-135M-Instruct solves almost no chain_math problems
(greedy 5% at horizon 1, ~0% at 4 and beyond), so from the base model most groups have
all-zero rewards and GRPO has little signal; ``correct/mean`` stays near its start for the
first dozens of steps (measured: reward/mean 0-0.01 over 4 steps). Start from the distilled
student for a learning curve: ``python recipes/distill.py``, then ``--model
runs/distill_chain_math/model`` (recipes/compare_algorithms.py does this for three algorithms).
Metrics land in ``<output_dir>/metrics.jsonl`` (reward, KL, clip fractions, entropy,
tokens/s, step time), every episode in ``rollouts/step_N.jsonl``.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "grpo_chain_math.yaml"


def main(argv: list[str]) -> int:
    """Run ``horizon train`` with this recipe's config unless ``--config`` is given."""
    from rl.cli import run_recipe

    return run_recipe("train", DEFAULT_CONFIG, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
