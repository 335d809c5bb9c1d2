"""The model backend: one forward pass from token ids to sentence vectors.

``SentenceEncoder.embed_ids`` is the inner step of ``encode`` (pad, encoder, pooling), so a
server batch gives the same vectors as ``encode`` for the same padded batch; the backend adds
per-row normalisation. Only the batching queue's worker thread calls it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.hooks import RemovableHandle

from seqenc.allocator import tune_memory
from seqenc.choices import DTYPES, check_choice
from seqenc.threads import set_threads


class Backend:
    """What every model backend (embedding, rerank, sparse) does at start-up: set the
    process's threads and allocator, and make the model's copy for ``dtype`` now
    (``prepare``), not on the first request."""

    def __init__(self, model: Any, dtype: str = "float32", threads: int | None = None):
        self.dtype = check_choice("dtype", dtype, DTYPES)
        set_threads(threads)  # process-wide; see seqenc/threads.py
        tune_memory()  # a server runs batch after batch: reuse activation buffers
        self.model = model
        self.prepare()
        self.threads = torch.get_num_threads()

    def prepare(self) -> None:
        """Ready the model for the first request: its inference copy for ``self.dtype``."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {**self.model.describe(), "dtype": self.dtype}


class ModelBackend(Backend):
    """Forward passes of a ``SentenceEncoder`` on already tokenised inputs."""

    def prepare(self) -> None:
        self.model.encoder_for(self.dtype)

    def embed(self, ids: list[list[int]], normalize: Sequence[bool]) -> np.ndarray:
        """(B, D) float32 vectors of B id lists; row i is L2-normalised where normalize[i]."""
        vectors = self.model.embed_ids(ids, self.dtype)  # (B, D)
        with torch.inference_mode():
            if any(normalize):
                flags = torch.tensor(list(normalize), device=vectors.device).unsqueeze(-1)
                vectors = torch.where(flags, torch.nn.functional.normalize(vectors, dim=-1),
                                      vectors)
        return vectors.cpu().numpy()

    def warm_up(self, ids: list[int]) -> None:
        """One pass so the first client does not pay for lazy initialisation."""
        self.embed([ids], [True])


def interrupt_passes(worker: threading.Thread) -> RemovableHandle:
    """Make the forward pass running in ``worker`` raise PassInterrupted at its next module
    call (a layer, a linear: well under a pass), for shutdown past --graceful-timeout. Torch
    cannot stop a kernel midway, and the process must not exit while one runs (queue.py),
    but it can stop between two. A global hook, added only at shutdown: no cost before."""
    from .queue import PassInterrupted

    def stop(module: torch.nn.Module, args: Any) -> None:
        if threading.current_thread() is worker:
            raise PassInterrupted

    return torch.nn.modules.module.register_module_forward_pre_hook(stop)
