"""Model backends of the reranking and sparse routes, for the same ``BatchQueue`` the
embedding routes use (one queue and worker thread per loaded model, same limits).

The queue carries token-id lists and sizes batches by their length. A (query, document) pair
also needs its token types, so ``RerankBackend`` folds them into the ids it queues
(``id + type * vocab_size``) and unfolds them in the worker: lengths, and so batching, stay
exact, and the queue needs no second kind of job.

Both compute in the server's ``--dtype`` (Settings.dtype), as the embedding backend does: a
bfloat16 copy of the model is made at start-up (CrossEncoder.model_for,
SparseEncoder.modules_for); scores and weights come out float32 either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from seqenc.allocator import tune_memory
from seqenc.choices import DTYPES, check_choice
from seqenc.threads import set_threads

from .tokenization import Tokenization


class RerankBackend:
    """A CrossEncoder: pairs -> folded ids (HTTP side), folded ids -> raw logits (worker)."""

    kind = "rerank"

    def __init__(self, model: Any, threads: int | None = None, dtype: str = "float32"):
        self.dtype = check_choice("dtype", dtype, DTYPES)
        set_threads(threads)  # process-wide; see seqenc/threads.py
        tune_memory()
        self.model = model
        model.model_for(dtype)  # convert now, not on the first request
        self.vocab_size = model.model.encoder.cfg.vocab_size
        self.threads = torch.get_num_threads()

    @property
    def max_length(self) -> int:
        return self.model.max_length

    def encode(self, query: str, texts: Sequence[str], truncate: bool,
               direction: str) -> tuple[list[list[int]], dict[int, str]]:
        """Folded ids of (query, text) pairs and which were cut (index -> first/second/both).
        Raises seqenc.pairs.PairTooLong without ``truncate``."""
        tokenized = self.model.tokenizer.encode([(query, t) for t in texts], truncate,
                                                "longest_first", direction)
        folded = [[i + t * self.vocab_size for i, t in zip(ids, types, strict=True)]
                  for ids, types in zip(tokenized.ids, tokenized.type_ids, strict=True)]
        return folded, tokenized.cut

    def run(self, folded: list[list[int]], flags: Sequence[bool]) -> np.ndarray:
        """(B, C) raw logits of B folded id lists (``flags`` is the queue's per-request
        switch, unused here: activation happens on the HTTP side)."""
        ids = [[i % self.vocab_size for i in row] for row in folded]
        types = [[i // self.vocab_size for i in row] for row in folded]
        return self.model.logits_ids(ids, types, self.dtype).cpu().numpy()

    def warm_up(self) -> None:
        self.run(self.encode("warm up", ["warm up"], True, "right")[0], [False])

    def describe(self) -> dict[str, Any]:
        return {**self.model.describe(), "dtype": self.dtype}


class SparseBackend:
    """A SparseEncoder: texts -> ids (HTTP side), ids -> (B, V) SPLADE weights (worker)."""

    kind = "sparse"

    def __init__(self, model: Any, threads: int | None = None, dtype: str = "float32"):
        self.dtype = check_choice("dtype", dtype, DTYPES)
        set_threads(threads)  # process-wide; see seqenc/threads.py
        tune_memory()
        self.model = model
        model.modules_for(dtype)  # convert now, not on the first request
        self.tokenization = Tokenization(model.tokenizer.tokenizer, model.max_seq_length,
                                         model.vocab_size)
        self.threads = torch.get_num_threads()

    def run(self, ids: list[list[int]], flags: Sequence[bool]) -> np.ndarray:
        return self.model.weights_ids(ids, self.dtype).cpu().numpy()

    def warm_up(self) -> None:
        self.run(self.tokenization.encode(["warm up"]), [False])

    def describe(self) -> dict[str, Any]:
        return {**self.model.describe(), "dtype": self.dtype}


def sparse_rows(weights: np.ndarray) -> list[list[dict[str, float]]]:
    """(B, V) weights -> TEI's [[{"index", "value"}, ...], ...], non-zero only, by index."""
    rows = []
    for row in weights:
        nonzero = np.flatnonzero(row)
        rows.append([{"index": int(i), "value": float(row[i])} for i in nonzero])
    return rows
