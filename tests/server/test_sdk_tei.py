"""Hugging Face's ``InferenceClient`` given a live seqenc server's URL, as it is pointed at a
text-embeddings-inference endpoint: ``feature_extraction`` and ``sentence_similarity`` post to
the root (TEI's default route), ``get_endpoint_info`` and ``health_check`` read /info and
/health. Vectors and scores equal seqenc's own encode(). (huggingface_hub has no rerank or
sparse method; TEI's /rerank and /embed_sparse shapes are tested in test_search.py.)"""

from __future__ import annotations

import httpx
import numpy as np
import pytest

hub = pytest.importorskip("huggingface_hub", reason="pip install -e '.[dev]'")

TEXTS = ["A plane is taking off.", "A man is playing a guitar.", "Stocks fell sharply.",
         "Ünïcödé wörks, 東京 too — and emoji 🙂."]
LONG = " ".join(f"word{i}" for i in range(400)) + " and the very end"


@pytest.fixture(scope="module")
def client(live):
    return hub.InferenceClient(model=live.url, api_key=live.key, timeout=120)


def test_feature_extraction_equals_encode(client, live):
    one = client.feature_extraction(TEXTS[0])
    assert one.dtype == np.float32 and one.shape == (1, live.model.dimension)
    np.testing.assert_allclose(one[0], live.model.encode(TEXTS[0]), atol=1e-6)
    many = client.feature_extraction(TEXTS)
    np.testing.assert_allclose(many, live.model.encode(TEXTS), atol=1e-6)


def test_feature_extraction_without_normalising(client, live):
    raw = client.feature_extraction(TEXTS, normalize=False)
    np.testing.assert_allclose(raw, live.model.encode(TEXTS, normalize=False), atol=1e-5)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)


@pytest.mark.parametrize("normalize", [True, False])
def test_feature_extraction_dimensions(client, live, normalize):
    # InferenceClient sends dimensions in the body (TEI's /embed takes them): the first k,
    # L2-normalised again when normalising
    got = client.feature_extraction(TEXTS, dimensions=32, normalize=normalize)
    full = live.model.encode(TEXTS, normalize=normalize)[:, :32]
    if normalize:
        full = full / np.linalg.norm(full, axis=1, keepdims=True)
    assert got.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(got, full, atol=1e-5)
    with pytest.raises(hub.errors.HfHubHTTPError) as caught:
        client.feature_extraction(TEXTS[0], dimensions=live.model.dimension + 1)
    assert caught.value.response.status_code == 422
    assert "dimensions must be between 1 and" in str(caught.value)


def test_feature_extraction_truncates_in_the_sdks_lower_case_direction(client, live):
    # InferenceClient spells the direction "left"/"right"; TEI's schema "Left"/"Right"
    left = client.feature_extraction(LONG, truncate=True, truncation_direction="left")
    right = client.feature_extraction(LONG, truncate=True, truncation_direction="right")
    with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {live.key}"},
                      timeout=120) as c:
        tei_left = c.post("/embed", json={"inputs": LONG, "truncate": True,
                                          "truncation_direction": "Left"}).json()
    np.testing.assert_array_equal(left, np.array(tei_left, dtype=np.float32))
    np.testing.assert_allclose(right[0], live.model.encode(LONG), atol=1e-6)  # encode: right
    assert not np.allclose(left, right, atol=1e-3)


def test_a_too_long_input_without_truncate_is_an_http_422(client):
    with pytest.raises(hub.errors.HfHubHTTPError) as caught:
        client.feature_extraction(LONG, truncate=False)
    assert caught.value.response.status_code == 422
    assert "more than the maximum of 256" in str(caught.value)


def test_a_prompt_name_is_refused_not_ignored(client):
    # TEI prepends the named prompt; seqenc has none, and ignoring it would embed other text
    with pytest.raises(hub.errors.HfHubHTTPError) as caught:
        client.feature_extraction(TEXTS[0], prompt_name="query")
    assert caught.value.response.status_code == 422
    assert "no prompts" in str(caught.value)


def test_sentence_similarity_equals_cosine_of_encode(client, live):
    scores = client.sentence_similarity(TEXTS[0], TEXTS[1:])
    vectors = live.model.encode(TEXTS, normalize=True)
    np.testing.assert_allclose(scores, vectors[1:] @ vectors[0], atol=1e-6)


def test_similarity_takes_teis_parameters_object(live):
    # TEI's /similarity documents truncate and truncation_direction under "parameters"
    inputs = {"source_sentence": LONG, "sentences": [TEXTS[0], LONG]}
    with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {live.key}"},
                      timeout=120) as c:
        tei = c.post("/similarity", json={"inputs": inputs, "parameters": {
            "truncate": True, "truncation_direction": "left"}})
        top_level = c.post("/similarity", json={"inputs": inputs, "truncate": True,
                                                "truncation_direction": "Left"})
        refused = c.post("/similarity", json={"inputs": inputs, "parameters": {}})
    assert tei.status_code == 200, tei.text
    assert tei.json() == top_level.json()
    assert refused.status_code == 422 and refused.json()["error_type"] == "input_too_long"


def test_endpoint_info_and_health(live):
    # these two refuse to run unless the provider is named ("not supported on 'None'")
    client = hub.InferenceClient(model=live.url, provider="hf-inference", api_key=live.key)
    info = client.get_endpoint_info()
    # the fields TEI's /info and seqenc's share
    assert info["model_id"] == "seqenc-mini"
    assert info["max_input_length"] == live.model.max_seq_length
    assert info["max_client_batch_size"] == live.max_client_batch_size
    assert {"max_batch_tokens", "max_concurrent_requests", "version"} <= set(info)
    assert client.health_check() is True


def test_the_root_route_serves_reranking_by_the_bodys_shape(live):
    # TEI's POST / on a reranker takes /rerank's body; seqenc's root picks the route by shape
    body = {"query": "How many people live in Berlin?", "raw_scores": True,
            "texts": ["Berlin has 3.5 million people.", "Paris is in France."]}
    with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {live.key}"},
                      timeout=120) as c:
        root, rerank = c.post("/", json=body), c.post("/rerank", json=body)
    assert root.status_code == 200 and root.json() == rerank.json()
    logits = live.reranker.predict([(body["query"], t) for t in body["texts"]], raw=True)
    got = {r["index"]: r["score"] for r in root.json()}
    np.testing.assert_allclose([got[0], got[1]], logits, rtol=1e-6)
