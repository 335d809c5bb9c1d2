"""Request validation on the token level: texts -> ids within max_length, token-id inputs
checked, and /tokenize's token listing. Runs on the HTTP side, never in the model's thread.

The server keeps its own copy of the model's ``tokenizers.Tokenizer`` with truncation off, so
that it can see how long an input really is, cut either end (``TextTokenizer`` only cuts the
right), and never touch the settings of the copy ``SentenceEncoder`` uses. (Likewise
``TextTokenizer.count_tokens`` counts on an untruncated copy of its own: nothing is flipped.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tokenizers import Encoding, Tokenizer

Direction = Literal["right", "left"]


class InputTooLong(ValueError):
    """An input has more tokens than the model takes and truncation was not asked for."""

    def __init__(self, index: int, length: int, max_length: int):
        self.index, self.length, self.max_length = index, length, max_length
        super().__init__(self.message())

    def message(self, fix: str = "set truncate=true") -> str:
        """The reason, ending in how to avoid it (``fix``: in the route's own terms)."""
        return (f"input {self.index} has {self.length} tokens, more than the maximum of "
                f"{self.max_length}; shorten it or {fix}")


class TooManyTokens(ValueError):
    """/tokenize's answer would list more tokens than allowed (its size is bounded)."""


class InvalidTokenIds(ValueError):
    """A token-id input is empty or holds an id outside the vocabulary."""


@dataclass
class Token:
    id: int
    text: str
    special: bool
    start: int | None  # character offsets into the input; None for added special tokens
    stop: int | None


class Tokenization:
    """Texts -> token ids the way ``SentenceEncoder`` makes them, plus left truncation."""

    def __init__(self, tokenizer: Tokenizer, max_length: int, vocab_size: int):
        self.tokenizer = Tokenizer.from_str(tokenizer.to_str())  # ours alone; see module doc
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.max_length = max_length
        self.vocab_size = vocab_size
        self._n_special = self.tokenizer.num_special_tokens_to_add(False)
        if max_length <= self._n_special:
            raise ValueError(f"max_length {max_length} leaves no room beside special tokens")

    @classmethod
    def from_model(cls, model: Any) -> Tokenization:
        """From a SentenceEncoder (its tokenizer, max_seq_length and vocabulary size)."""
        return cls(model.tokenizer.tokenizer, model.max_seq_length,
                   model.describe()["vocab_size"])

    def encode(
        self, texts: Sequence[str], truncate: bool = False, direction: Direction = "right",
        max_length: int | None = None,
    ) -> list[list[int]]:
        """Ids with special tokens. Over-long texts raise InputTooLong (naming the first), or
        with ``truncate`` keep their first (right) or last (left) tokens, specials kept.
        ``max_length`` (a client's own cap, Cohere's max_tokens) lowers the model's."""
        limit = self.max_length if max_length is None else min(max_length, self.max_length)
        if limit <= self._n_special:
            raise ValueError(f"max_length {limit} leaves no room beside special tokens")
        encodings = self.tokenizer.encode_batch(list(texts))
        ids = [e.ids for e in encodings]
        for i, e in enumerate(encodings):
            if len(e.ids) <= limit:
                continue
            if not truncate:
                raise InputTooLong(i, len(e.ids), limit)
            ids[i] = self._truncate(texts[i], direction, limit)
        return ids

    @property
    def n_special(self) -> int:
        """Special tokens added to every text (a length cap must leave room beyond them)."""
        return self._n_special

    def _truncate(self, text: str, direction: Direction, limit: int) -> list[int]:
        # Cut before adding special tokens, then add them: what tokenizers' own truncation
        # does, so "right" gives exactly SentenceEncoder's ids.
        content = self.tokenizer.encode(text, add_special_tokens=False)
        content.truncate(limit - self._n_special, direction=direction)
        return self.tokenizer.post_process(content).ids

    def check_ids(self, inputs: Sequence[Sequence[int]]) -> list[list[int]]:
        """Token-id inputs are used as given (special tokens included, as /tokenize returns
        them): each must be non-empty, within max_length and inside the vocabulary."""
        for i, ids in enumerate(inputs):
            if not ids:
                raise InvalidTokenIds(f"input {i} is an empty list of token ids")
            if len(ids) > self.max_length:
                raise InputTooLong(i, len(ids), self.max_length)
            bad = next((t for t in ids if not 0 <= t < self.vocab_size), None)
            if bad is not None:
                raise InvalidTokenIds(
                    f"input {i} holds token id {bad}, outside the vocabulary "
                    f"[0, {self.vocab_size})"
                )
        return [list(ids) for ids in inputs]

    def tokens(self, texts: Sequence[str], add_special_tokens: bool = True,
               max_tokens: int | None = None) -> list[list[Token]]:
        """Every token of every text, untruncated, with its character span. TooManyTokens if
        they number more than ``max_tokens`` in all (checked before listing them)."""
        if max_tokens is None:
            encodings = self.tokenizer.encode_batch(list(texts),
                                                    add_special_tokens=add_special_tokens)
        else:  # one at a time, stopping as soon as the total is past the limit
            encodings, total = [], 0
            for i, text in enumerate(texts):
                encodings.append(self.tokenizer.encode(text,
                                                       add_special_tokens=add_special_tokens))
                total += len(encodings[-1].ids)
                if total > max_tokens:
                    raise TooManyTokens(
                        f"inputs 0..{i} have {total} tokens, more than the {max_tokens} one "
                        "/tokenize request may list; split them")
        return [_tokens(text, e) for text, e in zip(texts, encodings, strict=True)]


def _tokens(text: str, encoding: Encoding) -> list[Token]:
    out = []
    for token_id, token, (start, stop), special in zip(
        encoding.ids, encoding.tokens, encoding.offsets, encoding.special_tokens_mask,
        strict=True,
    ):
        if special:
            out.append(Token(token_id, token, True, None, None))
        else:
            out.append(Token(token_id, text[start:stop], False, start, stop))
    return out
