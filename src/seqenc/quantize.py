"""Embedding quantisation with sentence-transformers' semantics (int8, uint8, binary, ubinary)."""

from __future__ import annotations

import numpy as np

from .choices import PRECISIONS, check_choice  # PRECISIONS re-exported: the one list lives there


def quantization_ranges(calibration: np.ndarray) -> np.ndarray:
    """Per-dimension [min; max] (2, D) from representative embeddings."""
    if calibration.ndim != 2 or calibration.shape[0] < 2:
        raise ValueError("int8/uint8 ranges need at least two calibration embeddings")
    return np.vstack((calibration.min(axis=0), calibration.max(axis=0)))


def quantize(
    embeddings: np.ndarray, precision: str, ranges: np.ndarray | None = None
) -> np.ndarray:
    """float32 (N, D) -> the precision's dtype. int8/uint8 bucket each dimension into 256 steps
    between ``ranges`` (default: this matrix's own min/max); binary packs sign bits (N, D/8)."""
    check_choice("precision", precision, PRECISIONS)
    if precision == "float32":
        return embeddings.astype(np.float32, copy=False)
    if precision in ("binary", "ubinary"):
        packed = np.packbits(embeddings > 0, axis=-1)
        return (packed - 128).astype(np.int8) if precision == "binary" else packed
    if ranges is None:
        ranges = quantization_ranges(embeddings)
    starts = ranges[0].astype(np.float32)
    steps = (ranges[1].astype(np.float32) - starts) / 255
    steps = np.where(steps == 0, 1, steps)
    buckets = np.clip(np.floor((embeddings - starts) / steps), 0, 255)
    return buckets.astype(np.uint8) if precision == "uint8" else (buckets - 128).astype(np.int8)
