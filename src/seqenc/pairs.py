"""Text pairs -> token ids through the tokenizer's pair template, truncation reported per side.

``tokenizer.json`` carries the family's pair template (BERT: ``[CLS] a [SEP] b [SEP]`` with
token types 0 then 1; RoBERTa: ``<s> a </s></s> b </s>``, all type 0), so pairs are encoded
exactly as transformers' fast tokenizer (and sentence-transformers' CrossEncoder) encode
them. Truncation uses the tokenizers library's strategies (longest_first by default, as
transformers): a pair too long for ``max_length`` is cut, and which side lost tokens
("first", "second" or "both") is recorded, never silent.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from tokenizers import Encoding, Tokenizer

from .choices import check_choice

STRATEGIES = ("longest_first", "only_first", "only_second")
DIRECTIONS = ("right", "left")


class PairTooLong(ValueError):
    """A pair longer than max_length where truncation was refused."""

    def __init__(self, index: int, n_tokens: int, max_length: int):
        super().__init__(f"pair {index} has {n_tokens} tokens, more than max_length="
                         f"{max_length}; allow truncation to cut it")
        self.index, self.n_tokens, self.max_length = index, n_tokens, max_length


@dataclass
class TokenizedPairs:
    ids: list[list[int]]  # N id lists, special tokens included
    type_ids: list[list[int]]  # token types (segment ids) of the same positions
    cut: dict[int, str] = field(default_factory=dict)  # pair index -> first | second | both

    @property
    def truncated(self) -> list[int]:
        return sorted(self.cut)


def _pairs(pairs: Sequence[Sequence[str]]) -> list[tuple[str, str]]:
    out = []
    for i, pair in enumerate(pairs):
        if isinstance(pair, str) or not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise TypeError(f"pair {i} must be a (text, text) pair, got {type(pair).__name__}")
        for side, text in zip(("first", "second"), pair, strict=True):
            if not isinstance(text, str):
                raise TypeError(f"pair {i}: the {side} text is {type(text).__name__}, "
                                "expected str")
        out.append((pair[0], pair[1]))
    return out


class PairTokenizer:
    """Encodes (a, b) pairs with truncation at ``max_length``; thread-safe (each strategy and
    direction has its own configured copy of the tokenizer, never toggled in place)."""

    def __init__(self, tokenizer: Tokenizer, max_length: int, pad_id: int = 0):
        self._source = tokenizer.to_str()
        self.max_length = max_length
        self.pad_id = pad_id
        self._copies: dict[tuple[str, str] | None, Tokenizer] = {}
        self._lock = threading.Lock()

    def _tokenizer(self, key: tuple[str, str] | None) -> Tokenizer:
        with self._lock:
            if key not in self._copies:
                tok = Tokenizer.from_str(self._source)
                tok.no_padding()
                if key is None:
                    tok.no_truncation()
                else:
                    tok.enable_truncation(self.max_length, strategy=key[0], direction=key[1])
                self._copies[key] = tok
            return self._copies[key]

    def set_max_length(self, max_length: int) -> None:
        with self._lock:
            self.max_length = max_length
            self._copies.clear()

    @property
    def vocab(self) -> Tokenizer:
        """A copy without truncation (for vocabulary look-ups and counting)."""
        return self._tokenizer(None)

    def encode(self, pairs: Sequence[Sequence[str]], truncate: bool = True,
               strategy: str = "longest_first", direction: str = "right") -> TokenizedPairs:
        """Pairs -> ids and token types. ``truncate=False`` raises PairTooLong for the first
        pair over max_length instead of cutting it."""
        check_choice("strategy", strategy, STRATEGIES)
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be right or left; got {direction!r}")
        checked = _pairs(pairs)
        try:
            encodings: list[Encoding] = self._tokenizer((strategy, direction)).encode_batch(
                checked)
        except Exception as e:  # only_first/only_second when the other side alone is too long
            raise ValueError(f"cannot truncate with strategy {strategy!r}: {e}") from None
        cut: dict[int, str] = {}
        over = [i for i, e in enumerate(encodings) if e.overflowing]
        if over:
            full = self.vocab.encode_batch([checked[i] for i in over])
            for i, whole in zip(over, full, strict=True):
                if not truncate:
                    raise PairTooLong(i, len(whole.ids), self.max_length)
                cut[i] = _which_side(encodings[i], whole)
        return TokenizedPairs([e.ids for e in encodings], [e.type_ids for e in encodings], cut)

    def count_tokens(self, first: str, second: str) -> int:
        return len(self.vocab.encode(first, second).ids)


def _which_side(truncated: Encoding, whole: Encoding) -> str:
    kept = [truncated.sequence_ids.count(s) for s in (0, 1)]
    full = [whole.sequence_ids.count(s) for s in (0, 1)]
    lost = [f > k for f, k in zip(full, kept, strict=True)]
    return "both" if all(lost) else "first" if lost[0] else "second"
