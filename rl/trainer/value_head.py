"""The PPO critic: a linear value head on the policy's last hidden state (shared trunk).

Why a shared trunk rather than a separate critic model: on a CPU (and on one small GPU) the
forward pass is the cost, and one forward of the LoRA policy gives both the logits and the
hidden states the head reads, with no second model in memory. The value loss trains the head
and, scaled by ``vf_coef``, the LoRA weights of the trunk (as in the shared-trunk PPO of
Ouyang et al. 2022's baselines and TRL's former ``AutoModelForCausalLMWithValueHead``). The head
starts at zero, so the first values are 0 and the first advantages are the plain returns.

``values_bt[:, t]`` is V of the state in which token ``t`` was chosen: it is read from the
hidden state at position ``t - 1``, aligned like ``rl.trainer.update.token_logprobs`` (position 0 gets 0).
"""

from __future__ import annotations

import torch


class ValueHead(torch.nn.Module):
    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = torch.nn.Linear(hidden_size, 1)
        torch.nn.init.zeros_(self.linear.weight)
        torch.nn.init.zeros_(self.linear.bias)

    def forward(self, hidden_bth: torch.Tensor) -> torch.Tensor:
        """``[B, T, H]`` last-layer hidden states -> ``[B, T]`` values aligned with logprobs."""
        values_bt = self.linear(hidden_bth[:, :-1].float()).squeeze(-1)
        return torch.nn.functional.pad(values_bt, (1, 0))


def build_value_head(policy) -> ValueHead:
    """A zero-initialised head sized for ``policy``'s hidden states, on its device."""
    config = policy.model.config
    return ValueHead(config.hidden_size).to(policy.device)
