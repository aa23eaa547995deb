"""Split a completion's tokens into reasoning steps (default: one step per non-empty line)."""

from __future__ import annotations

from rl.types import STEP_SEPARATOR, Step


class StepSplitter:
    """Token spans of the steps of a completion: its non-empty pieces between separators.

    A step runs from the token after the previous separator through the token that holds the
    next one (so its last token is the step-separator token where a PRM reads its score); a
    trailing piece without a separator is a step too. The step texts are those of
    ``rl.types.split_steps`` on the decoded completion. Single-token decodes are cached: with
    byte-level BPE a newline is always inside one token (a multi-character separator must be
    inside one token as well to be found).
    """

    def __init__(self, tokenizer, separator: str = STEP_SEPARATOR):
        self.tokenizer = tokenizer
        self.separator = separator
        self._piece: dict[int, str] = {}
        self._special = set(getattr(tokenizer, "all_special_ids", []) or [])

    def piece(self, token_id: int) -> str:
        if token_id not in self._piece:
            self._piece[token_id] = "" if token_id in self._special else self.tokenizer.decode([token_id])
        return self._piece[token_id]

    def __call__(self, token_ids: list[int]) -> list[Step]:
        steps: list[Step] = []
        start, text = 0, ""
        for i, tok in enumerate(token_ids):
            piece = self.piece(tok)
            text += piece
            if self.separator in piece:
                if text.strip():
                    steps.append(Step(text.strip(), start, i + 1))
                start, text = i + 1, ""
        if text.strip():
            end = len(token_ids)
            while end > start and not self.piece(token_ids[end - 1]).strip():
                end -= 1  # drop a trailing EOS / whitespace token from the last step
            steps.append(Step(text.strip(), start, end))
        return steps
