"""Fixtures of the Ray engine's tests: a local runtime (for the modules that ask for it) and
mixed inputs with bad records."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ray_support import texts


@pytest.fixture(scope="module")
def ray_runtime(request: pytest.FixtureRequest):
    """A local runtime started as `seqenc encode --engine ray` starts one, with 2 CPUs: one per
    module that asks for it (starting Ray takes seconds; each job starts its own actors). Not
    for test_ray_runtime.py and test_ray_slow_agents.py, which start runtimes themselves. If a
    test of the module failed, the node's logs are kept (a warning says where): a worker's
    death is explained only there."""
    ray = pytest.importorskip("ray")
    from seqenc.ray.runtime import start_runtime, stop_runtime

    assert "site-packages" in ray.__file__  # the real Ray, not this tests/ray directory
    failed = request.session.testsfailed
    assert start_runtime(ray, None, num_cpus=2)
    yield ray
    kept = stop_runtime(ray, keep_logs=request.session.testsfailed > failed)
    if kept is not None:
        warnings.warn(f"the Ray node's logs are in {kept}", stacklevel=1)


@pytest.fixture
def mixed_inputs(tmp_path: Path) -> dict[str, Path]:
    """txt, jsonl, parquet and csv inputs, the first two with bad records."""
    d = tmp_path / "in"
    d.mkdir()
    txt = d / "a.txt"
    lines = [t.encode() for t in texts(37)]
    lines[5] = b"bad \xff byte"
    txt.write_bytes(b"\n".join(lines) + b"\n")
    jsonl = d / "b.jsonl"
    rows = [json.dumps({"text": t}) for t in texts(23, start=100)]
    rows[3], rows[22] = "{not json", json.dumps({"body": "no text field"})
    jsonl.write_text("\n".join(rows) + "\n", encoding="utf-8")
    parquet = d / "c.parquet"
    pq.write_table(pa.table({"text": texts(30, start=200)}), parquet, row_group_size=7)
    csv = d / "d.csv"  # quoted fields with commas, quotes and a line break
    rows = [t.replace('"', '""') for t in texts(11, start=300)] + ['say ""hi"", then\nleave']
    csv.write_text("n,text\n" + "".join(f'{i},"{t}"\n' for i, t in enumerate(rows)),
                   encoding="utf-8")
    return {"txt": txt, "jsonl": jsonl, "parquet": parquet, "csv": csv}
