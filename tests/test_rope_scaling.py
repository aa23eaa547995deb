"""RoPE scaling (``rope_scaling``): validated before any model loads, applied through the
transformers config (the rotary embedding really changes, not just the config), and handed to
vLLM as the same override (its ModelConfig and its rotary cos/sin agree with transformers').

tiny-random: head_dim 32 (16 frequencies), rope_theta 1e4, native max_position_embeddings 2048.
"""

import math

import pytest
import torch

from rl.config import RopeScalingConfig, VLLMConfig, load_config
from rl.trainer.config import TrainConfig
from rl.errors import ConfigError
from rl.models import apply_rope_scaling, check_model_available, load_policy
from rl.rollout.vllm import vllm_overrides

TYPES = ("linear", "dynamic", "yarn")
NATIVE, THETA, DIM = 2048, 1e4, 32


def _policy(tiny_path, rope=None):
    return load_policy(str(tiny_path), lora=None, dtype="float32", device="cpu", trainable=False, rope_scaling=rope)


def _cos_sin(policy, positions):
    """transformers' rotary embedding of ``policy`` at ``positions``: (cos, sin) ``[P, 32]``."""
    rotary = policy.model.model.rotary_emb
    x = torch.zeros(1, len(positions), DIM)
    cos, sin = rotary(x, torch.tensor([positions]))
    return cos[0], sin[0]


@pytest.fixture(scope="module")
def unscaled(tiny_path):
    return _policy(tiny_path)


@pytest.mark.parametrize("kind", TYPES)
def test_each_type_reaches_the_model_config_and_changes_its_rotary_embedding(tiny_path, unscaled, kind):
    policy = _policy(tiny_path, RopeScalingConfig(type=kind, factor=2.0))
    params = policy.model.config.rope_parameters
    assert params["rope_type"] == kind and params["factor"] == 2.0 and params["rope_theta"] == THETA
    assert policy.rope_scaling == params and policy.context_length == 2 * NATIVE
    assert unscaled.rope_scaling is None and unscaled.context_length == NATIVE
    rotary, base = policy.model.model.rotary_emb, unscaled.model.model.rotary_emb
    inv_freq_base = 1.0 / THETA ** (torch.arange(0, DIM, 2).float() / DIM)
    torch.testing.assert_close(base.inv_freq, inv_freq_base)
    if kind == "linear":  # position interpolation: every frequency / factor, no attention scaling
        assert policy.model.config.max_position_embeddings == NATIVE  # vLLM multiplies it by factor
        torch.testing.assert_close(rotary.inv_freq, inv_freq_base / 2)
        assert rotary.attention_scaling == 1.0
    elif kind == "yarn":  # the fastest frequencies kept, the slowest interpolated, and a temperature
        assert policy.model.config.max_position_embeddings == 2 * NATIVE
        assert params["original_max_position_embeddings"] == NATIVE
        assert rotary.inv_freq[0] == inv_freq_base[0] and rotary.inv_freq[-1] == inv_freq_base[-1] / 2
        assert rotary.attention_scaling == pytest.approx(0.1 * math.log(2) + 1)  # 1.0693
    else:  # dynamic NTK: unscaled up to the native length, a larger base past it
        assert policy.model.config.max_position_embeddings == NATIVE
        torch.testing.assert_close(rotary.inv_freq, inv_freq_base)
        _cos_sin(policy, [3000])  # a sequence of 3001 tokens: base' = base (2 x 3001/2048 - 1)^(32/30)
        grown = THETA * (2 * 3001 / NATIVE - 1) ** (DIM / (DIM - 2))
        torch.testing.assert_close(rotary.inv_freq, 1.0 / grown ** (torch.arange(0, DIM, 2).float() / DIM))
    # applied, not just stored: the model's logits past the native length change
    ids, pos = torch.tensor([[1, 17, 33, 49]]), torch.tensor([[3000, 3001, 3002, 3003]])
    with torch.no_grad():
        scaled = policy.model(input_ids=ids, position_ids=pos).logits
        plain = unscaled.model(input_ids=ids, position_ids=pos).logits
    assert (scaled - plain).abs().max() > 1e-4


def test_the_same_scaling_is_kept_and_another_refused_on_a_scaled_config(tiny_path):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_path)
    params, context = apply_rope_scaling(config, RopeScalingConfig(type="yarn", factor=2.0), "tiny")
    assert context == 2 * NATIVE and config.rope_parameters == params
    # a student saved by a YaRN run: its config.json scales already; the same scaling is a no-op
    assert apply_rope_scaling(config, {"type": "yarn", "factor": 2}, "student") == (params, 2 * NATIVE)
    assert apply_rope_scaling(config, None, "student") == (params, 2 * NATIVE)
    assert config.max_position_embeddings == 2 * NATIVE  # not doubled twice
    with pytest.raises(ConfigError, match="rope_scaling.*already scales RoPE.*type: none"):
        apply_rope_scaling(config, RopeScalingConfig(type="linear", factor=2.0), "student")


def test_bad_values_name_the_key_before_any_model_loads(tiny_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"rope_scaling.type.*'ntk'.*\['linear', 'dynamic', 'yarn'\]"):
        RopeScalingConfig(type="ntk", factor=2.0)
    with pytest.raises(ConfigError, match=r"rope_scaling.type.*'ntk'.*'linear', 'dynamic', 'yarn'"):
        load_config(TrainConfig, None, ["--rope_scaling.type", "ntk", "--rope_scaling.factor", "2"])
    for factor in (1.0, 0.5):
        with pytest.raises(ConfigError, match="rope_scaling.factor.*must be > 1"):
            RopeScalingConfig(type="yarn", factor=factor)
    RopeScalingConfig(factor=0.5)  # type none: off, the factor is not read
    import transformers

    def no_weights(*a, **k):
        raise AssertionError("weights loaded before the rope_scaling check")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_weights)
    too_long = RopeScalingConfig(type="linear", factor=2.0, max_position_embeddings=5000)
    with pytest.raises(ConfigError, match=r"rope_scaling.max_position_embeddings.*2.0 x 2048 = 4096"):
        check_model_available(str(tiny_path), too_long)
    with pytest.raises(ConfigError, match=r"rope_scaling.max_position_embeddings"):
        _policy(tiny_path, too_long)


def test_vllm_kwargs_carry_the_same_rope_parameters_and_raise_max_model_len(tiny_path, unscaled):
    cfg = VLLMConfig(max_model_len=1024)
    assert vllm_overrides(unscaled, cfg) == {"max_model_len": 1024}
    for kind in TYPES:
        policy = _policy(tiny_path, RopeScalingConfig(type=kind, factor=2.0, max_position_embeddings=3000))
        out = vllm_overrides(policy, cfg)
        assert out["max_model_len"] == 3000 == policy.context_length
        hf = out["hf_overrides"]
        assert {k: v for k, v in hf["rope_parameters"].items() if k != "max_trained_positions"} == policy.rope_scaling
        if kind == "dynamic":  # vLLM's one base = transformers' at the extended context (3000 / 2048)
            assert hf["rope_parameters"]["max_trained_positions"] == NATIVE and hf["max_position_embeddings"] == 3000
        else:
            assert hf["max_position_embeddings"] == policy.model.config.max_position_embeddings
        assert vllm_overrides(policy, VLLMConfig(max_model_len=8192))["max_model_len"] == 8192  # never lowered


def test_vllm_model_config_and_rotary_match_transformers(tiny_path):
    """vLLM's ModelConfig built from VLLMEngine's kwargs (no engine: ~0.03 s after the import),
    and the rotary embedding vLLM's Llama builds from it: the same cos/sin as transformers'."""
    pytest.importorskip("vllm")
    from vllm.config import VllmConfig, set_current_vllm_config
    from vllm.engine.arg_utils import EngineArgs
    from vllm.model_executor.layers.rotary_embedding import get_rope

    positions = [0, 777, 2047, 3000, 4095]
    for kind in TYPES:
        policy = _policy(tiny_path, RopeScalingConfig(type=kind, factor=2.0))
        kwargs = vllm_overrides(policy, VLLMConfig())
        mc = EngineArgs(model=str(tiny_path), tokenizer=str(tiny_path), **kwargs).create_model_config()
        assert mc.max_model_len == 2 * NATIVE
        assert mc.hf_config.rope_parameters["rope_type"] == kind and mc.hf_config.rope_parameters["factor"] == 2.0
        with set_current_vllm_config(VllmConfig()):  # as vllm's LlamaAttention builds it
            rope = get_rope(DIM, mc.hf_config.max_position_embeddings, True, mc.hf_config.rope_parameters,
                            torch.float32)
        cos_v, sin_v = rope.cos_sin_cache[positions].chunk(2, dim=-1)
        cos_h, sin_h = _cos_sin(policy, positions)  # dynamic: at the longest position, as vLLM
        torch.testing.assert_close(cos_h[:, : DIM // 2], cos_v, atol=2e-5, rtol=0)
        torch.testing.assert_close(sin_h[:, : DIM // 2], sin_v, atol=2e-5, rtol=0)
