"""Tiny data and models for the training tests: a few hundred short texts, a 2-layer d=32
encoder and a WordPiece tokenizer learnt from the texts. Everything runs in seconds on CPU."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

POSITIVE = ["good", "great", "fine", "lovely", "superb", "nice", "brilliant", "warm"]
NEGATIVE = ["bad", "awful", "poor", "terrible", "ugly", "dull", "boring", "weak"]
FILLER = ["the", "movie", "was", "really", "quite", "a", "film", "plot", "acting", "story",
          "it", "and", "very", "this", "cast", "ending"]
# Sizes of the test encoder (EncoderConfig fields); vocab_size comes from the tokenizer.
SIZES = {"d_model": 32, "n_heads": 4, "n_layers": 2, "d_ff": 64, "max_positions": 32,
         "dropout": 0.0, "attention_dropout": 0.0}


def make_examples(n: int, seed: int) -> list[tuple[str, int]]:
    """Short texts whose label is given by one sentiment word among filler words."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.randint(0, 1)
        words = rng.sample(FILLER, rng.randint(2, 6)) + [rng.choice(POSITIVE if label
                                                                    else NEGATIVE)]
        rng.shuffle(words)
        rows.append((" ".join(words), label))
    return rows


NUMBERS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
           "fourteen fifteen sixteen seventeen eighteen nineteen").split()


def counting_lines(n: int, seed: int) -> list[str]:
    """Runs of counting words ("four five six seven"): every masked word follows from its
    neighbours, so a tiny masked-LM can learn to fill them in within a few hundred steps."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        start, length = rng.randint(0, 13), rng.randint(4, 7)
        lines.append(" ".join(NUMBERS[start: start + length]))
    return lines


def write_tsv(path: Path, rows, header: bool = True) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        if header:
            f.write("sentence\tlabel\n")
        for text, label in rows:
            f.write(f"{text}\t{label}\n")
    return path


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, and two threads on two shared cores can stall
    each other in OpenMP barriers by orders of magnitude; restored after each test."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train-data")
    write_tsv(root / "train.tsv", make_examples(128, seed=1))
    write_tsv(root / "dev.tsv", make_examples(48, seed=2))
    (root / "sizes.json").write_text(json.dumps(SIZES))
    (root / "corpus.txt").write_text("\n".join(counting_lines(300, seed=3)) + "\n")
    return root


@pytest.fixture(scope="session")
def tokenizer_file(data_dir) -> Path:
    from seqenc.train.wordpiece import train_wordpiece

    texts = [line.split("\t")[0] for line in (data_dir / "train.tsv").read_text().splitlines()]
    path = data_dir / "tokenizer.json"
    train_wordpiece(texts, vocab_size=120, min_frequency=1).save(str(path))
    return path
