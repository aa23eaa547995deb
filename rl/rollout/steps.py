"""Split a completion's tokens into reasoning steps (default: one step per non-empty line)."""

from __future__ import annotations

from rl.types import Step


class LineStepSplitter:
    """Token spans of the non-empty lines of a completion.

    A step runs from the token after the previous newline through the token that holds the
    next newline (so its last token is the step-separator token where a PRM reads its score);
    a trailing line without a newline is a step too. Single-token decodes are cached: with
    byte-level BPE a newline is always inside one token.
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
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
            if "\n" in piece:
                if text.strip():
                    steps.append(Step(text.strip(), start, i + 1))
                start, text = i + 1, ""
        if text.strip():
            end = len(token_ids)
            while end > start and not self.piece(token_ids[end - 1]).strip():
                end -= 1  # drop a trailing EOS / whitespace token from the last step
            steps.append(Step(text.strip(), start, end))
        return steps
