"""benchmarks/sts_silver.py: silver pairs for distillation come from the training file's
sentences only, leave out the gold and excluded pairs, and read back through `train pairs`'
own reader with the gold file's options."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from seqenc.train.pairs import read_pairs, scores_of

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "sts_silver.py"
GOLD = [("A man is playing a guitar.", "A man plays the guitar.", 4.8),
        ("A woman is slicing an onion.", "A woman is cutting an onion.", 4.2),
        ("A dog runs in the park.", "A cat sleeps on the sofa.", 0.6),
        ("The stock market fell sharply.", "Shares dropped on Monday.", 3.1),
        ("A child is riding a horse.", "A kid rides a pony.", 3.9),
        ("Two men are playing chess.", "The men play a board game.", 3.4)]
DEV = [("A man is playing a guitar.", "A woman is slicing an onion.", 0.2)]


@pytest.fixture(scope="module")
def silver():
    spec = importlib.util.spec_from_file_location("sts_silver", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(path: Path, rows) -> Path:
    path.write_text("".join(f"g\tf\t2012\t{i:04d}\t{s:.3f}\t{a}\t{b}\n"
                            for i, (a, b, s) in enumerate(rows)))
    return path


def test_neighbours_equal_a_brute_force_search(silver):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(37, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index, cosine = silver.neighbours(vectors, 4, block=5)
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    expected = np.argsort(-sims, axis=1, kind="stable")[:, :4]
    np.testing.assert_array_equal(index, expected)
    np.testing.assert_allclose(cosine, np.take_along_axis(sims, expected, axis=1), rtol=1e-6)


def test_silver_pairs_read_back_and_leave_gold_and_dev_out(tmp_path, silver):
    train, dev = _write(tmp_path / "train.tsv", GOLD), _write(tmp_path / "dev.tsv", DEV)
    out = tmp_path / "silver.tsv"
    summary = silver.build(silver.parse_args([
        "--train", str(train), "--exclude", str(dev), "-o", str(out), "--top-k", "3",
        "--random", "1", "--threads", "1"]), echo=lambda m: None)
    data = read_pairs(str(out), "5", "6", "4", header=False, fmt="tsv")
    scores = scores_of(data, "4", 5.0)  # on the gold scale: the same --max-score reads it
    assert len(data) == summary["silver_pairs"] > 0
    assert 0 <= scores.min() and scores.max() <= 1
    sentences = {s for a, b, _ in GOLD for s in (a, b)}
    pairs = {frozenset(p) for p in zip(data.firsts, data.seconds, strict=True)}
    assert all(a in sentences and b in sentences and a != b for a, b in pairs)
    assert len(pairs) == len(data)  # each unordered pair once
    assert not pairs & {frozenset((a, b)) for a, b, _ in GOLD + DEV}
    assert summary["excluded_pairs_seen"] == 1
    # the least-squares line has the lowest MSE against gold / 5 on the train pairs; the
    # quantile mapping gives the train pairs exactly the gold scores' distribution
    mappings = summary["mappings"]
    assert mappings["fit"]["mse_vs_gold"] <= mappings["clip"]["mse_vs_gold"] + 1e-9
    assert mappings["quantile"]["histogram"] == summary["gold_histogram"]
    assert mappings["quantile"]["mean"] == pytest.approx(np.mean([s for *_, s in GOLD]) / 5,
                                                         abs=1e-4)
    kept = silver.build(silver.parse_args([
        "--train", str(train), "-o", str(tmp_path / "all.tsv"), "--top-k", "0", "--random",
        "0", "--keep-gold", "--threads", "1"]), echo=lambda m: None)
    assert kept["silver_pairs"] == len(GOLD) and kept["by_kind"]["gold"]["pairs"] == len(GOLD)
