"""Prediction output: one row per input with its label and class probabilities.

jsonl: {"line": 3, "label": "1", "probabilities": {"0": 0.02, "1": 0.98}}
csv:   line,label,p_0,p_1

Files are written atomically (a temporary file renamed over the target), so an interrupted
run never leaves a half-written output.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import numpy as np

from seqenc.atomic import atomic_path


def _write(stream: TextIO, fmt: str, lines: Sequence[int], labels: Sequence[str],
           probs: np.ndarray) -> None:
    best = probs.argmax(axis=1)
    if fmt == "csv":
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(["line", "label", *(f"p_{label}" for label in labels)])
        for line, k, row in zip(lines, best, probs, strict=True):
            writer.writerow([line, labels[k], *(f"{p:.6g}" for p in row)])
        return
    for line, k, row in zip(lines, best, probs, strict=True):
        record = {"line": line, "label": labels[k],
                  "probabilities": {label: round(float(p), 6) for label, p in zip(labels, row,
                                                                                 strict=True)}}
        stream.write(json.dumps(record) + "\n")


def write_predictions(output: str | Path | None, lines: Sequence[int], labels: Sequence[str],
                      probs: np.ndarray) -> None:
    """To ``output`` (.jsonl or .csv), or JSON lines on stdout when it is None."""
    if output is None:
        _write(sys.stdout, "jsonl", lines, labels, probs)
        return
    fmt = "csv" if Path(output).suffix.lower() == ".csv" else "jsonl"
    with atomic_path(output) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        _write(f, fmt, lines, labels, probs)
