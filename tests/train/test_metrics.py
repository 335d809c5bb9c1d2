"""Our classification metrics against scikit-learn's on the same predictions."""

from __future__ import annotations

import numpy as np
import pytest

from seqenc.train.metrics import classification_report

sklearn_metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn is a dev extra")


def test_matches_sklearn_including_a_class_never_predicted():
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 4, size=200)
    predicted = np.where(rng.random(200) < 0.7, gold, rng.integers(0, 3, size=200))
    predicted[predicted == 3] = 0  # class "d" is never predicted: its precision is undefined
    report = classification_report(gold, predicted, ["a", "b", "c", "d"])
    assert report.accuracy == pytest.approx(sklearn_metrics.accuracy_score(gold, predicted))
    assert report.macro_f1 == pytest.approx(
        sklearn_metrics.f1_score(gold, predicted, average="macro", zero_division=0))
    p, r, f, s = sklearn_metrics.precision_recall_fscore_support(
        gold, predicted, labels=[0, 1, 2, 3], zero_division=0)
    np.testing.assert_allclose([c.precision for c in report.per_class], p)
    np.testing.assert_allclose([c.recall for c in report.per_class], r)
    np.testing.assert_allclose([c.f1 for c in report.per_class], f)
    assert [c.support for c in report.per_class] == s.tolist()
    assert report.per_class[3].precision == 0.0 and report.per_class[3].support > 0
    np.testing.assert_array_equal(report.confusion, sklearn_metrics.confusion_matrix(gold,
                                                                                     predicted))
    assert "macro-F1" in report.format()
