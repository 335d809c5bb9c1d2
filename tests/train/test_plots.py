"""Learning curves are drawn without pyplot: the caller's matplotlib backend and figures stay."""

from __future__ import annotations

import sys

import pytest

from seqenc.train.plots import plot_learning_curves

matplotlib = pytest.importorskip("matplotlib")


def test_plot_leaves_the_global_backend_and_pyplot_alone(tmp_path):
    backend = matplotlib.get_backend()
    had_pyplot = "matplotlib.pyplot" in sys.modules
    records = [{"event": "train", "step": s, "loss": 1.0 / s} for s in range(1, 5)]
    records += [{"event": "eval", "step": 4, "loss": 0.3, "accuracy": 0.9}]
    out = plot_learning_curves(records, tmp_path / "curves.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert matplotlib.get_backend() == backend
    assert ("matplotlib.pyplot" in sys.modules) == had_pyplot
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]  # no temporary left
