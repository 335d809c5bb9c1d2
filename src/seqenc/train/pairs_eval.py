"""`seqenc evaluate` and `seqenc predict` for cross-encoders (pair models).

A one-output cross-encoder scores pairs: evaluation reports Spearman and Pearson correlation
of its scores (sigmoid of the logit) with the gold scores, as `seqenc train pairs` does on its
dev set (and MSE against gold / ``max_score`` when that is given). A cross-encoder with several
outputs classifies pairs: accuracy, macro-F1 and per-class precision/recall/F1 over the
labels of its config.json ``id2label``. Prediction writes one row per pair: its score, or its
label and class probabilities.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from seqenc.atomic import atomic_path
from seqenc.crossencoder import CrossEncoder
from seqenc.io.errors import InputError

from .data import LabelledTexts, encode_labels
from .metrics import classification_report
from .pairs import PairData, correlations, scores_of
from .predict import write_predictions


def is_pair_model(model_dir: str | Path) -> bool:
    """Whether ``model_dir`` holds a *ForSequenceClassification cross-encoder."""
    from seqenc.checkpoint import CheckpointError

    from .pairs import is_cross_encoder

    try:
        return (Path(model_dir) / "config.json").is_file() and is_cross_encoder(str(model_dir))
    except (CheckpointError, ValueError):
        return False


def labels_of(model: CrossEncoder) -> list[str]:
    """Output i's label, from config.json's id2label (keys may be strings or integers)."""
    known = model.config.get("id2label") or {}
    return [str(known.get(str(i), known.get(i, f"LABEL_{i}"))) for i in range(model.num_labels)]


def evaluate_pairs(model: CrossEncoder, data: PairData, target_column: str,
                   max_score: float | None = None, batch_size: int = 64) -> dict[str, Any]:
    """Correlations (one output) or a classification report (several), as a JSON-able dict."""
    pairs = list(zip(data.firsts, data.seconds, strict=True))
    if model.num_labels == 1:
        if max_score is not None and not max_score > 0:
            raise ValueError(f"max_score must be > 0, got {max_score}")
        gold = scores_of(data, target_column, max_score or 1.0) if max_score is not None \
            else _numbers(data, target_column)
        predicted = np.asarray(model.predict(pairs, batch_size), dtype=np.float64)
        result: dict[str, Any] = {"n": len(pairs), **correlations(predicted, gold)}
        if max_score is not None:
            result["mse"] = float(np.mean((predicted - gold) ** 2))
        return result
    labels = labels_of(model)
    gold = encode_labels(LabelledTexts(data.firsts, data.targets, data.lines, data.source,
                                       target_column), labels)
    logits = np.asarray(model.predict(pairs, batch_size, raw=True))
    return classification_report(gold, logits.argmax(axis=1), labels).to_dict()


def _numbers(data: PairData, column: str) -> np.ndarray:
    out = np.empty(len(data), dtype=np.float64)
    for i, (text, line) in enumerate(zip(data.targets, data.lines, strict=True)):
        try:
            out[i] = float(text)
        except (TypeError, ValueError):
            raise InputError(f"score {text!r} is not a number", file=data.source, line=line,
                             field=column) from None
    return out


def format_report(result: dict[str, Any]) -> str:
    """The text form: correlations, or the classification report's table."""
    if "spearman" in result:
        lines = [f"examples  {result['n']}", f"spearman  {result['spearman']:.4f}",
                 f"pearson   {result['pearson']:.4f}"]
        if "mse" in result:
            lines.append(f"mse       {result['mse']:.6f}")
        return "\n".join(lines)
    from .metrics import ClassificationReport, ClassMetrics

    report = ClassificationReport(result["accuracy"], result["macro_f1"],
                                  [ClassMetrics(**c) for c in result["per_class"]],
                                  np.asarray(result["confusion"]), result["n"])
    return report.format()


def predict_pairs(model: CrossEncoder, data: PairData, output: str | None,
                  batch_size: int = 64) -> None:
    """One row per pair to ``output`` (.jsonl or .csv, written atomically) or stdout:
    {"line", "score"} for one output, {"line", "label", "probabilities"} for several."""
    pairs = list(zip(data.firsts, data.seconds, strict=True))
    if model.num_labels > 1:
        probs = np.asarray(model.predict(pairs, batch_size, apply_softmax=True))
        write_predictions(output, data.lines, labels_of(model), probs)
        return
    scores = np.asarray(model.predict(pairs, batch_size))
    if output is None:
        _write_scores(sys.stdout, "jsonl", data.lines, scores)
        return
    fmt = "csv" if Path(output).suffix.lower() == ".csv" else "jsonl"
    with atomic_path(output) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        _write_scores(f, fmt, data.lines, scores)


def _write_scores(stream: TextIO, fmt: str, lines: Sequence[int], scores: np.ndarray) -> None:
    if fmt == "csv":
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(["line", "score"])
        writer.writerows([line, f"{s:.6g}"] for line, s in zip(lines, scores, strict=True))
        return
    for line, s in zip(lines, scores, strict=True):
        stream.write(json.dumps({"line": line, "score": round(float(s), 6)}) + "\n")
