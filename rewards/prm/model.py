"""The process reward model: a causal-LM trunk (LoRA) + a 2-way head read at step-end tokens.

Math-Shepherd (Wang et al. 2024) and TRL's former ``PRMTrainer`` frame a PRM as token
classification: the solution's steps are joined by a separator token, and the classifier's
output at each separator is that step's verdict. Here the separator is ``"\\n"`` (a token of
its own in SmolLM2's tokenizer), so one step per line, as ``StepSplitter`` splits the
policy's completions::

    <chat prompt> step_1 \\n step_2 \\n ... step_S \\n
                         ^ score 1        ^ score S      P(correct) = softmax(head(h_t))[1]

Loading choice: the trunk comes from ``rl.models.load_policy`` (built-in names, the local-only
resolution, LoRA through ``rl.config.LoraConfig`` and the autocast dtype, all as for the
policy), but the forward pass calls the inner decoder (``get_decoder()``, e.g. ``LlamaModel``)
rather than the CausalLM with ``output_hidden_states=True``: the head needs only the last
hidden state, and skipping the LM head saves computing [B, T, vocab] logits (49k wide for
SmolLM2) that would be thrown away. peft injects LoRA into the decoder's layers in place, so
the adapter is active either way.

Example::

    prm, tok = build_prm("tiny-random", lora=LoraConfig(r=8, alpha=16))
    prm.step_scores(tok, [task.messages], [["2 + 3 = 5", "5 * 4 = 21"]])   # [[0.51, 0.49]]
    prm.save("runs/prm", tok); prm2, tok2 = load_prm("runs/prm")
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from rl.rollout.chat import render_prompt
from rl.types import Message, Task

CONFIG_FILE = "prm_config.json"
HEAD_FILE = "head.safetensors"


def newline_id(tokenizer) -> int:
    """The id of the ``"\\n"`` token; raises when the tokenizer does not make it one token."""
    ids = tokenizer("\n", add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(f"'\\n' is {len(ids)} tokens {ids} in this tokenizer: the PRM needs one")
    return ids[0]


def encode(tokenizer, prompt_messages: list[Message], steps: list[str]) -> tuple[list[int], list[int]]:
    """Token ids of the chat prompt + each step followed by a ``"\\n"`` token.

    Returns:
        ``(input_ids, step_end_positions)``: ``step_end_positions[j]`` is the index in
        ``input_ids`` of step j's terminating newline (where its score is read). Steps are
        stripped; each is tokenised on its own, so a newline never merges with step text.
    """
    nl = newline_id(tokenizer)
    ids = render_prompt(tokenizer, prompt_messages)
    positions = []
    for step in steps:
        ids = ids + tokenizer(step.strip(), add_special_tokens=False)["input_ids"] + [nl]
        positions.append(len(ids) - 1)
    return ids, positions


def collate(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token rows: ``(input_ids_bt, attention_mask_bt)``, both long."""
    width = max(len(r) for r in rows)
    input_ids_bt = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask_bt = torch.zeros((len(rows), width), dtype=torch.long)
    for b, row in enumerate(rows):
        input_ids_bt[b, : len(row)] = torch.tensor(row, dtype=torch.long)
        attention_mask_bt[b, : len(row)] = 1
    return input_ids_bt, attention_mask_bt


class ProcessRewardModel(torch.nn.Module):
    """Causal-LM trunk + linear 2-way head (class 1 = "step correct").

    ``base`` is the trunk's model name or directory (saved so ``load_prm`` can rebuild it),
    ``lora`` the LoRA settings as a dict (None: the whole trunk is trained and saved).
    The head runs in float32; the trunk under ``autocast_dtype`` autocast when set.
    """

    def __init__(self, backbone, *, base: str, lora: dict[str, Any] | None, autocast_dtype=None):
        super().__init__()
        self.backbone = backbone
        self.head = torch.nn.Linear(backbone.config.hidden_size, 2)
        torch.nn.init.normal_(self.head.weight, std=0.02)
        torch.nn.init.zeros_(self.head.bias)
        self.base, self.lora, self.autocast_dtype = base, lora, autocast_dtype

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def decoder(self):
        model = self.backbone.get_base_model() if hasattr(self.backbone, "get_base_model") else self.backbone
        return model.get_decoder()

    def autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def forward(self, input_ids_bt: torch.Tensor, attention_mask_bt: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` ids and mask -> ``[B, T, 2]`` float32 logits at every position."""
        with self.autocast():
            hidden_bth = self.decoder()(input_ids=input_ids_bt, attention_mask=attention_mask_bt).last_hidden_state
        return self.head(hidden_bth.float())

    def step_logits(self, encoded: list[tuple[list[int], list[int]]], pad_id: int) -> list[torch.Tensor]:
        """Logits at the step ends of each ``encode`` result: one ``[S_b, 2]`` tensor per row."""
        input_ids_bt, attention_mask_bt = collate([ids for ids, _ in encoded], pad_id)
        logits_btc = self(input_ids_bt.to(self.device), attention_mask_bt.to(self.device))
        return [logits_btc[b, torch.tensor(pos, dtype=torch.long, device=self.device)]
                for b, (_, pos) in enumerate(encoded)]

    @torch.no_grad()
    def step_scores(self, tokenizer, prompts_messages: list[list[Message]], steps_list: list[list[str]],
                    batch_size: int = 16) -> list[list[float]]:
        """P(step correct) at every step end: ``out[i][j]`` for step j of solution i (eval mode)."""
        if len(prompts_messages) != len(steps_list):
            raise ValueError(f"{len(prompts_messages)} prompts but {len(steps_list)} step lists")
        was_training = self.training
        self.eval()
        try:
            out: list[list[float]] = []
            for start in range(0, len(steps_list), batch_size):
                encoded = [encode(tokenizer, m, s) for m, s in
                           zip(prompts_messages[start:start + batch_size], steps_list[start:start + batch_size])]
                for logits_sc in self.step_logits(encoded, tokenizer.pad_token_id):
                    out.append(torch.softmax(logits_sc, dim=-1)[:, 1].tolist())
            return out
        finally:
            self.train(was_training)

    def save(self, path: str | Path, tokenizer=None) -> Path:
        """Write the adapter (or the full trunk + tokenizer), the head and ``prm_config.json``.

        Returns ``path``. With LoRA only the adapter is written: ``load_prm`` rebuilds the
        trunk and tokenizer from ``base``, which must still resolve on the loading machine.
        """
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if self.lora is not None:
            self.backbone.save_pretrained(path / "adapter")  # the base's tokenizer is reused
        else:
            if tokenizer is None:
                raise ValueError("saving a full-trunk PRM needs its tokenizer: save(path, tokenizer)")
            self.backbone.save_pretrained(path / "backbone")
            tokenizer.save_pretrained(path / "backbone")
        save_file({k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}, path / HEAD_FILE)
        config = {"format": 1, "base": self.base, "lora": self.lora,
                  "hidden_size": self.head.in_features}
        (path / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        return path


def build_prm(name_or_path: str, *, lora=None, dtype: str = "auto", device: str = "auto",
              seed: int = 0) -> tuple[ProcessRewardModel, Any]:
    """A fresh PRM on ``name_or_path`` (a built-in model name or a local HF directory).

    ``lora`` is an ``rl.config.LoraConfig`` (None or r=0: train the whole trunk). The LoRA
    and head initialisation are seeded by ``seed`` (the global RNG is left as it was).

    Returns:
        ``(prm, tokenizer)``.
    """
    from rl.models import BUILTIN_MODELS, load_policy

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        policy = load_policy(name_or_path, lora=lora, dtype=dtype, device=device)
        base = name_or_path if name_or_path in BUILTIN_MODELS else str(Path(name_or_path).resolve())
        lora_dict = asdict(lora) if lora is not None and lora.r > 0 else None
        prm = ProcessRewardModel(policy.model, base=base, lora=lora_dict,
                                 autocast_dtype=policy.autocast_dtype).to(policy.device)
    return prm, policy.tokenizer


def load_prm(path: str | Path, device: str = "auto", *, dtype: str = "auto",
             trainable: bool = False) -> tuple[ProcessRewardModel, Any]:
    """Rebuild a PRM written by ``ProcessRewardModel.save``.

    Returns:
        ``(prm, tokenizer)``; the PRM is in eval mode, frozen unless ``trainable``.
    """
    from safetensors.torch import load_file

    from rl.models import load_policy

    path = Path(path)
    config = json.loads((path / CONFIG_FILE).read_text())
    if config["lora"] is not None:
        from peft import PeftModel

        policy = load_policy(config["base"], lora=None, dtype=dtype, device=device, trainable=False)
        backbone = PeftModel.from_pretrained(policy.model, path / "adapter", is_trainable=trainable)
    else:
        policy = load_policy(str(path / "backbone"), lora=None, dtype=dtype, device=device, trainable=trainable)
        backbone = policy.model
    prm = ProcessRewardModel(backbone, base=config["base"], lora=config["lora"],
                             autocast_dtype=policy.autocast_dtype)
    prm.head.load_state_dict(load_file(path / HEAD_FILE))
    prm.head.requires_grad_(trainable)
    return prm.to(policy.device).eval(), policy.tokenizer


def make_scorer(prm: ProcessRewardModel, tokenizer) -> Callable[[Task, list[str]], list[float]]:
    """``(task, steps) -> step scores``: the PRM as the scorer ``search.step_beam_search`` takes."""
    def score(task: Task, steps: list[str]) -> list[float]:
        return prm.step_scores(tokenizer, [task.messages], [steps])[0]

    return score
