"""Text -> token ids, through a Hugging Face ``tokenizer.json`` and the `tokenizers` library."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import Encoding, Tokenizer


@dataclass
class TokenizedTexts:
    """Unpadded token ids per text, and which texts were cut at max_length."""

    ids: list[list[int]]  # N lists of ids, [CLS] ... [SEP] included
    truncated: list[int]  # indices of texts longer than max_length

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.ids), dtype=np.int64, count=len(self.ids))


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, T) int64, padded with pad_id
    attention_mask: torch.Tensor  # (B, T) bool, True = real token


class TextTokenizer:
    """Wraps ``tokenizers.Tokenizer``: truncation at max_length is reported, never silent."""

    def __init__(self, tokenizer: Tokenizer, max_length: int, pad_id: int | None = None):
        self.tokenizer = tokenizer
        self.max_length = max_length
        padding = tokenizer.padding or {}
        self.pad_id = pad_id if pad_id is not None else padding.get("pad_id", 0)
        # Padding is ours to do per batch; truncation keeps `overflowing` filled so we can count.
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length)
        self._untruncated: Tokenizer | None = None

    @classmethod
    def from_file(cls, path: str | Path, max_length: int, pad_id: int | None = None):
        return cls(Tokenizer.from_file(str(path)), max_length, pad_id)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, texts: Sequence[str]) -> TokenizedTexts:
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"input {i} is {type(text).__name__}, expected str")
        encodings: list[Encoding] = self.tokenizer.encode_batch(list(texts))
        return TokenizedTexts(
            ids=[e.ids for e in encodings],
            truncated=[i for i, e in enumerate(encodings) if e.overflowing],
        )

    def tokens(self, text: str) -> list[str]:
        return self.tokenizer.encode(text).tokens

    def set_max_length(self, max_length: int) -> None:
        self.max_length = max_length
        self.tokenizer.enable_truncation(max_length)

    def count_tokens(self, text: str) -> int:
        """Length before truncation, [CLS]/[SEP] included.

        Uses its own untruncated copy: toggling truncation on the shared tokenizer would race
        with a concurrent ``encode`` in a threaded server.
        """
        if self._untruncated is None:
            self._untruncated = Tokenizer.from_str(self.tokenizer.to_str())
            self._untruncated.no_truncation()
        return len(self._untruncated.encode(text).ids)

    def pad(self, ids: Sequence[Sequence[int]]) -> Batch:
        """Right-pad a list of id lists to the longest: (B, T) ids and keep-mask."""
        T = max((len(x) for x in ids), default=0)
        input_ids = np.full((len(ids), T), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(ids), T), dtype=bool)
        for row, seq in enumerate(ids):
            input_ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = True
        return Batch(torch.from_numpy(input_ids), torch.from_numpy(mask))
