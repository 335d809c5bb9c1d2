"""Classification metrics from a confusion matrix: accuracy, macro-F1, per-class P/R/F1."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class ClassMetrics:
    label: str
    precision: float
    recall: float
    f1: float
    support: int  # gold examples of this class


@dataclass
class ClassificationReport:
    accuracy: float
    macro_f1: float
    per_class: list[ClassMetrics]
    confusion: np.ndarray  # (C, C): row = gold, column = predicted
    n: int

    def to_dict(self) -> dict:
        return {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "n": self.n,
            "per_class": [vars(c) for c in self.per_class],
            "confusion": self.confusion.tolist(),
        }

    def format(self) -> str:
        width = max(8, *(len(c.label) for c in self.per_class))
        lines = [
            f"examples  {self.n}",
            f"accuracy  {self.accuracy:.4f}",
            f"macro-F1  {self.macro_f1:.4f}",
            "",
            f"{'label':<{width}}  precision  recall  f1      support",
        ]
        for c in self.per_class:
            lines.append(
                f"{c.label:<{width}}  {c.precision:9.4f}  {c.recall:6.4f}  {c.f1:6.4f}  "
                f"{c.support:7d}"
            )
        return "\n".join(lines)


def confusion_matrix(gold: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(gold), np.asarray(predicted)), 1)
    return matrix


def classification_report(
    gold: np.ndarray, predicted: np.ndarray, labels: Sequence[str]
) -> ClassificationReport:
    """Precision/recall/F1 are 0 where undefined (no predictions or no gold of a class), as
    scikit-learn's zero_division=0; macro-F1 averages over every label of the model."""
    gold, predicted = np.asarray(gold), np.asarray(predicted)
    if gold.shape != predicted.shape:
        raise ValueError(f"gold {gold.shape} and predicted {predicted.shape} differ in shape")
    matrix = confusion_matrix(gold, predicted, len(labels))
    true_pos = np.diag(matrix).astype(np.float64)
    predicted_count = matrix.sum(axis=0)
    support = matrix.sum(axis=1)
    precision = np.divide(true_pos, predicted_count, out=np.zeros_like(true_pos),
                          where=predicted_count > 0)
    recall = np.divide(true_pos, support, out=np.zeros_like(true_pos), where=support > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(true_pos),
                   where=denominator > 0)
    per_class = [
        ClassMetrics(label, float(p), float(r), float(f), int(s))
        for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
    ]
    n = int(matrix.sum())
    return ClassificationReport(
        accuracy=float(true_pos.sum() / n) if n else 0.0,
        macro_f1=float(f1.mean()),
        per_class=per_class,
        confusion=matrix,
        n=n,
    )
