"""Cohere's Python SDK against a live seqenc server: ``ClientV2.rerank`` (POST /v2/rerank) and
``Client.rerank`` (POST /v1/rerank) rank as seqenc's CrossEncoder.rank does, with its scores;
errors arrive as the SDK's exception types. Its embed calls: test_sdk_cohere_embed.py."""

from __future__ import annotations

import numpy as np
import pytest

cohere = pytest.importorskip("cohere", reason="Cohere's SDK: pip install -e '.[dev]'")

QUERY = "How many people live in Berlin?"
DOCUMENTS = ["Berlin has a population of 3.5 million.", "Paris is the capital of France.",
             "Zoë's café — 東京 😀", "Berlin " * 200, "The cat sat on the mat."]


def _check(results, expected) -> None:
    assert [r.index for r in results] == [d.index for d in expected]
    np.testing.assert_allclose([r.relevance_score for r in results],
                               [d.score for d in expected], rtol=1e-6)


def test_client_v2_rerank_equals_crossencoder_rank(cohere_v2, live):
    response = cohere_v2.rerank(model="seqenc-reranker", query=QUERY, documents=DOCUMENTS, top_n=3)
    # Cohere truncates long documents; so does seqenc's Cohere route (the 200-word one here)
    _check(response.results, live.reranker.rank(QUERY, DOCUMENTS, top_k=3))
    assert response.id


def test_client_v2_rerank_every_document_without_top_n(cohere_v2, live):
    response = cohere_v2.rerank(model="seqenc-reranker", query=QUERY, documents=DOCUMENTS)
    _check(response.results, live.reranker.rank(QUERY, DOCUMENTS))


def test_client_v1_rerank_returns_documents(cohere_v1, live):
    response = cohere_v1.rerank(model="seqenc-reranker", query=QUERY, documents=DOCUMENTS, top_n=2,
                         return_documents=True)
    expected = live.reranker.rank(QUERY, DOCUMENTS, top_k=2, return_documents=True)
    _check(response.results, expected)
    assert [r.document.text for r in response.results] == [d.text for d in expected]


def test_errors_are_the_sdks_exceptions(cohere_v2, live):
    with pytest.raises(cohere.UnprocessableEntityError) as caught:
        cohere_v2.rerank(model="m", query=QUERY, documents=[])
    assert caught.value.status_code == 422
    assert caught.value.body["error_type"] == "empty"
    with pytest.raises(cohere.UnprocessableEntityError) as caught:
        cohere_v2.rerank(model="m", query=QUERY, documents=["x"] * (live.max_client_batch_size + 1))
    assert caught.value.body["error_type"] == "too_many_inputs"
    wrong = cohere.ClientV2(base_url=live.url, api_key="wrong", timeout=120)
    with pytest.raises(cohere.UnauthorizedError) as caught:
        wrong.rerank(model="m", query=QUERY, documents=DOCUMENTS[:1])
    assert caught.value.status_code == 401
