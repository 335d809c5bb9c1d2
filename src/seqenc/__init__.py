"""seqenc: a Transformer sequence encoder written from first principles.

Imports are lazy so that ``import seqenc`` (and the CLI's start-up) stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from .threads import calm_openmp_waits

calm_openmp_waits()  # before torch loads its OpenMP runtime: see threads.py
__version__ = "0.1.0"

_LAZY = {
    "EncoderConfig": "seqenc.nn.config",
    "Encoder": "seqenc.nn.encoder",
    "SentenceEncoder": "seqenc.model",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'seqenc' has no attribute {name!r}")


__all__ = ["Encoder", "EncoderConfig", "SentenceEncoder", "__version__"]
