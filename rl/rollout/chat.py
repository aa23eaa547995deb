"""Chat rendering: messages -> the token ids a model is prompted with."""

from __future__ import annotations

from rl.types import Message


def render_prompt(tokenizer, messages: list[Message]) -> list[int]:
    """Token ids of ``messages`` through the chat template, ending with the assistant header, or,
    when the last message is the assistant's (a prefilled start of its answer, e.g. the oracle
    steps of ``rl.trainer.given_steps``), ending inside that message: the model continues it."""
    if messages and messages[-1]["role"] == "assistant":
        text = tokenizer.apply_chat_template(messages, continue_final_message=True, tokenize=False)
    else:
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]
