"""Helpers of the Ray engine's tests: texts, and the single-machine reference they must equal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from click.testing import CliRunner

from seqenc import cli

CORPUS = Path(__file__).resolve().parents[2].parent / "shared/data/bench/corpus.txt"


def texts(n: int, start: int = 0) -> list[str]:
    if CORPUS.exists():
        lines = CORPUS.read_text(encoding="utf-8").splitlines()
        return lines[start : start + n]
    return [f"sentence number {i} about the river market" for i in range(start, start + n)]


def single_machine(path: Path, out: Path, *args: str) -> pa.Table:
    """`seqenc encode` of one file, the reference the Ray output must equal."""
    result = CliRunner().invoke(cli.main, ["encode", str(path), "-o", str(out), "-q", *args])
    assert result.exit_code == 0, result.output
    return pq.read_table(out)


def assert_same(ray_rows: pa.Table, reference: pa.Table) -> None:
    assert ray_rows.column("id").to_pylist() == reference.column("id").to_pylist()
    a = np.array(ray_rows.column("vector").to_pylist(), dtype=np.float64)
    b = np.array(reference.column("vector").to_pylist(), dtype=np.float64)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() >= 0.99999
