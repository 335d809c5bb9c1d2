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

import numpy as np

from .backend import Backend
from .tokenization import Tokenization


class RerankBackend(Backend):
    """A CrossEncoder: pairs -> folded ids (HTTP side), folded ids -> raw logits (worker)."""

    kind = "rerank"

    def prepare(self) -> None:
        self.model.model_for(self.dtype)
        self.vocab_size = self.model.model.encoder.cfg.vocab_size

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


class SparseBackend(Backend):
    """A SparseEncoder: texts -> ids (HTTP side), ids -> (B, V) SPLADE weights (worker)."""

    kind = "sparse"

    def prepare(self) -> None:
        self.model.modules_for(self.dtype)
        self.tokenization = Tokenization(self.model.tokenizer.tokenizer,
                                         self.model.max_seq_length, self.model.vocab_size)

    def run(self, ids: list[list[int]], flags: Sequence[bool]) -> np.ndarray:
        return self.model.weights_ids(ids, self.dtype).cpu().numpy()

    def warm_up(self) -> None:
        self.run(self.tokenization.encode(["warm up"]), [False])


def sparse_rows(weights: np.ndarray) -> list[list[dict[str, float]]]:
    """(B, V) weights -> TEI's [[{"index", "value"}, ...], ...], non-zero only, by index."""
    rows = []
    for row in weights:
        nonzero = np.flatnonzero(row)
        rows.append([{"index": int(i), "value": float(row[i])} for i in nonzero])
    return rows
