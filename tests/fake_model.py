"""A stand-in for SentenceEncoder with the interface the CLI uses, for fast, exact CLI tests,
and the CLI's input and output files in each format (write_input, read_output).

Vectors are a deterministic function of each text alone (a seeded random unit vector), so a
test can say which row belongs to which record whatever the chunking. A text counts
``len(text.split()) + 2`` tokens, like [CLS] words [SEP].
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seqenc.quantize import quantize

# records of every kind the CLI tests feed (an empty one, non-ASCII ones)
TEXTS = ["The cat sat on the mat.", "Ein Hund bellt.", "", "naïve café ☕", "last one"]


def fake_vector(text: str, dimension: int = 16) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
    v = np.random.default_rng(seed).standard_normal(dimension).astype(np.float32)
    return v / np.linalg.norm(v)


def fake_vectors(texts: list[str], dimension: int = 16) -> np.ndarray:
    if not texts:
        return np.empty((0, dimension), np.float32)
    return np.stack([fake_vector(t, dimension) for t in texts])


@dataclass
class FakeReport:
    n_texts: int
    n_tokens: int
    n_truncated: int
    truncated_indices: list[int]
    seconds: float = 0.0


@dataclass
class FakeModel:
    dimension: int = 16
    max_seq_length: int = 8
    fail_on_call: int | None = None  # raise RuntimeError on this call (1-based)
    interrupt_on_call: int | None = None  # raise KeyboardInterrupt on this call
    block_on_call: int | None = None  # create `marker` then sleep, waiting for a signal
    marker: str | None = None
    calls: list[dict] = field(default_factory=list)

    def encode(self, texts, batch_size=32, pooling=None, normalize=None, precision="float32",
               output="sentence", dtype="float32", show_progress=False, truncate=True,
               return_report=False, ranges=None):
        texts = list(texts)
        self.calls.append(dict(n=len(texts), batch_size=batch_size, pooling=pooling,
                               normalize=normalize, precision=precision, dtype=dtype,
                               truncate=truncate, ranges=ranges))
        n = len(self.calls)
        if n == self.fail_on_call:
            raise RuntimeError("fake model failure")
        if n == self.interrupt_on_call:
            raise KeyboardInterrupt
        if n == self.block_on_call:
            open(self.marker, "w").close()
            time.sleep(120)
        tokens = [len(t.split()) + 2 for t in texts]
        truncated = [i for i, k in enumerate(tokens) if k > self.max_seq_length]
        if truncated and not truncate:
            raise ValueError(f"input {truncated[0]} is too long")
        vectors = quantize(fake_vectors(texts, self.dimension), precision, ranges)
        report = FakeReport(len(texts), sum(min(k, self.max_seq_length) for k in tokens),
                            len(truncated), truncated)
        return (vectors, report) if return_report else vectors

    def describe(self) -> dict:
        return {"path": os.devnull, "architecture": "fake", "parameters": 1234, "layers": 1,
                "heads": 1, "dimension": self.dimension, "max_seq_length": self.max_seq_length,
                "normalize": True}


def use_fake_model(monkeypatch) -> FakeModel:
    """Make the CLI load a FakeModel (whatever --model says) and return it."""
    from seqenc import cli

    model = FakeModel()
    monkeypatch.setattr(cli, "load_model", lambda name, device="cpu": model)
    return model


def run(*args, input=None):
    """``seqenc ARGS`` in-process (click's CliRunner); arguments may be paths or numbers."""
    from click.testing import CliRunner

    from seqenc import cli

    return CliRunner().invoke(cli.main, [str(a) for a in args], input=input)


def write_input(path: Path, texts: list[str]) -> list:
    """Write ``texts`` in the format of ``path``; returns the ids the reader will give them."""
    fmt = path.suffix[1:]
    if fmt == "txt":
        path.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    elif fmt in ("csv", "tsv"):
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, delimiter="," if fmt == "csv" else "\t",
                           quoting=csv.QUOTE_MINIMAL if fmt == "csv" else csv.QUOTE_NONE)
            w.writerow(["text"])
            w.writerows([[t] for t in texts])
    else:  # parquet: pyarrow is the io extra, imported only here
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"text": texts}), path, row_group_size=2)
    return list(range(1, len(texts) + 1))


def read_output(path: Path) -> tuple[list | None, np.ndarray]:
    if path.suffix == ".npy":
        return None, np.load(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        return table.column("id").to_pylist(), np.array(table.column("vector").to_pylist())
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [r["id"] for r in rows], np.array([r["embedding"] for r in rows], np.float32)
