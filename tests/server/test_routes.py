"""Every route of the real server, against SentenceEncoder run in this process."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest
from tokenizers import Tokenizer

from .support import API_KEY, LONG_TEXT, SENTENCES, error_body, metric


def vectors(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.array(response.json(), dtype=np.float32)


# ---- health, info, docs ---------------------------------------------------------------------


def test_health_is_public(server):
    with server.client(api_key=None) as anonymous:
        response = anonymous.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_info_reports_model_and_limits(client, model):
    info = client.get("/info").json()
    assert info["dimension"] == model.dimension == 384
    assert info["max_input_length"] == model.max_seq_length == 256
    assert info["pooling"] == "mean" and info["normalize"] is True
    assert info["model_id"] == "all-MiniLM-L6-v2"
    assert info["max_batch_tokens"] == 8192
    assert info["max_client_batch_size"] == 32
    assert info["max_concurrent_requests"] == 512
    assert info["payload_limit"] == 200_000
    assert info["threads"] == 1 and info["model_dtype"] == "float32"
    assert info["device"] == "cpu"
    assert info["version"]
    assert {"/v1/embeddings", "/embed", "/v2/embed", "/v1/embed"} <= set(info["routes"])


def test_openapi_documents_routes_and_errors(server):
    with server.client(api_key=None) as anonymous:
        spec = anonymous.get("/openapi.json").json()
        assert anonymous.get("/docs").status_code == 200
    paths = spec["paths"]
    assert {"/v1/embeddings", "/embed", "/similarity", "/tokenize", "/health", "/info",
            "/metrics", "/v2/embed", "/v1/embed"} <= set(paths)
    cohere = paths["/v2/embed"]["post"]
    assert cohere["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ErrorResponse")
    assert cohere["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/CohereEmbedByTypeResponse")
    responses = paths["/embed"]["post"]["responses"]
    assert {"200", "400", "401", "413", "422", "429", "503"} <= set(responses)
    assert paths["/embed"]["post"]["security"] == [{"bearer": []}]
    assert "security" not in paths["/health"]["get"]
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert responses["422"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ErrorResponse")
    assert "HTTPValidationError" not in spec["components"]["schemas"]


# ---- /v1/embeddings --------------------------------------------------------------------------


def test_openai_embeddings_equal_encode(client, model, corpus):
    texts = corpus[:20]
    response = client.post("/v1/embeddings", json={"input": texts, "model": "my-model"})
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list" and body["model"] == "my-model"
    assert [d["index"] for d in body["data"]] == list(range(len(texts)))
    assert all(d["object"] == "embedding" for d in body["data"])
    got = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
    expected, report = model.encode(texts, return_report=True)
    # The server may cut a request into passes other than encode's batches of 32 (to pad
    # less); a different padded length moves the last bits.
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert body["usage"] == {"prompt_tokens": report.n_tokens, "total_tokens": report.n_tokens}


def test_one_server_batch_equals_encode_exactly(client, model):
    # Lengths 9-11 tokens: cheaper as one padded pass than split, so the server runs this
    # request as the one batch encode makes of it: same rows, same order, same padding.
    texts = [f"The {animal} sat quietly on the old mat{'.' * k}"
             for k, animal in enumerate(["cat", "dog", "bird", "horse", "cow", "fox", "owl"])]
    lengths = [len(ids) for ids in model.tokenizer.encode(texts).ids]
    assert len(set(lengths)) > 1  # padding is exercised
    passes = metric(client, "seqenc_batch_size_count")
    rows = metric(client, "seqenc_batch_size_sum")
    got = vectors(client.post("/embed", json={"inputs": texts}))
    assert metric(client, "seqenc_batch_size_count") == passes + 1
    assert metric(client, "seqenc_batch_size_sum") == rows + len(texts)
    np.testing.assert_array_equal(got, model.encode(texts))


def test_openai_single_string_and_default_model_name(client, model):
    body = client.post("/v1/embeddings", json={"input": "A plane is taking off."}).json()
    assert len(body["data"]) == 1 and body["model"] == "all-MiniLM-L6-v2"
    np.testing.assert_allclose(body["data"][0]["embedding"],
                               model.encode("A plane is taking off."), atol=1e-6)


def test_openai_base64_is_little_endian_float32(client):
    texts = SENTENCES[:3]
    floats = client.post("/v1/embeddings", json={"input": texts}).json()["data"]
    packed = client.post("/v1/embeddings",
                         json={"input": texts, "encoding_format": "base64"}).json()["data"]
    for f, p in zip(floats, packed, strict=True):
        decoded = np.frombuffer(base64.b64decode(p["embedding"]), dtype="<f4")
        np.testing.assert_array_equal(decoded, np.array(f["embedding"], dtype=np.float32))


def test_openai_dimensions_truncate_then_renormalise(client, model):
    texts = SENTENCES[:4]
    body = client.post("/v1/embeddings", json={"input": texts, "dimensions": 64}).json()
    got = np.array([d["embedding"] for d in body["data"]], dtype=np.float32)
    full = model.encode(texts)[:, :64]
    assert got.shape == (4, 64)
    np.testing.assert_allclose(got, full / np.linalg.norm(full, axis=1, keepdims=True),
                               atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("k", [0, -3, 385])
def test_openai_dimensions_out_of_range(client, k):
    response = client.post("/v1/embeddings", json={"input": "x", "dimensions": k})
    assert response.status_code == 422
    assert error_body(response)["error_type"] == "validation"
    assert "dimensions" in error_body(response)["error"]


def test_token_ids_give_the_same_vectors_as_text(client, model):
    texts = ["The cat sat on the mat.", "A plane is taking off."]
    ids = [[t["id"] for t in tokens] for tokens in
           client.post("/tokenize", json={"inputs": texts}).json()]
    assert ids == model.tokenizer.encode(texts).ids
    from_text = client.post("/v1/embeddings", json={"input": texts}).json()["data"]
    from_ids = client.post("/v1/embeddings", json={"input": ids}).json()
    one = client.post("/v1/embeddings", json={"input": ids[1]}).json()
    assert from_ids["usage"]["prompt_tokens"] == sum(map(len, ids))
    for a, b in zip(from_text, from_ids["data"], strict=True):
        assert a["embedding"] == b["embedding"]
    assert one["data"][0]["embedding"] == from_text[1]["embedding"]


@pytest.mark.parametrize("ids, fragment", [
    ([[101, 30522, 102]], "token id 30522"),
    ([[101, -1, 102]], "token id -1"),
    ([[101, 102], []], "input 1 is an empty list"),
])
def test_bad_token_ids(client, ids, fragment):
    response = client.post("/v1/embeddings", json={"input": ids})
    assert response.status_code == 422
    assert error_body(response)["error_type"] == "validation"
    assert fragment in error_body(response)["error"]


def test_token_ids_longer_than_the_model_takes(client):
    response = client.post("/v1/embeddings", json={"input": [[101] + [1000] * 300 + [102]]})
    assert response.status_code == 422
    assert error_body(response)["error_type"] == "input_too_long"
    assert "input 0 has 302 tokens" in error_body(response)["error"]


# ---- /embed --------------------------------------------------------------------------------


def test_embed_string_and_list(client, model):
    single = vectors(client.post("/embed", json={"inputs": "The cat sat on the mat."}))
    assert single.shape == (1, 384)
    many = vectors(client.post("/embed", json={"inputs": SENTENCES}))
    np.testing.assert_allclose(many, model.encode(SENTENCES), atol=1e-6)
    np.testing.assert_allclose(single[0], many[3], atol=1e-6)


def test_embed_without_normalisation(client, model):
    raw = vectors(client.post("/embed", json={"inputs": SENTENCES[:3], "normalize": False}))
    np.testing.assert_allclose(raw, model.encode(SENTENCES[:3], normalize=False), atol=1e-5)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)


def test_embed_refuses_overlong_input_naming_its_index(client):
    response = client.post("/embed", json={"inputs": ["short", LONG_TEXT]})
    assert response.status_code == 422
    body = response.json()
    assert body["error_type"] == "input_too_long"
    assert body["error"].startswith("input 1 has ") and "256" in body["error"]


def test_embed_right_truncation_matches_encode(client, model):
    got = vectors(client.post("/embed", json={"inputs": [LONG_TEXT, "short"],
                                              "truncate": True}))
    np.testing.assert_allclose(got, model.encode([LONG_TEXT, "short"]), atol=1e-6)


def test_embed_left_truncation_keeps_the_end(client, model):
    got = vectors(client.post("/embed", json={"inputs": LONG_TEXT, "truncate": True,
                                              "truncation_direction": "Left"}))
    vocab = Tokenizer.from_str(model.tokenizer.tokenizer.to_str())
    vocab.no_truncation()
    full = vocab.encode(LONG_TEXT, add_special_tokens=False).ids
    assert len(full) > 254
    kept = [vocab.token_to_id("[CLS]"), *full[-254:], vocab.token_to_id("[SEP]")]
    response = client.post("/v1/embeddings", json={"input": kept})
    assert response.status_code == 200, response.text
    by_ids = response.json()["data"][0]["embedding"]
    np.testing.assert_array_equal(got[0], np.array(by_ids, dtype=np.float32))
    right = vectors(client.post("/embed", json={"inputs": LONG_TEXT, "truncate": True}))
    assert not np.allclose(got, right, atol=1e-3)


def test_unicode_and_control_characters(client, model):
    texts = ["東京 🙂", "\u0000 nul and \t tab", " x "]
    np.testing.assert_allclose(vectors(client.post("/embed", json={"inputs": texts})),
                               model.encode(texts), atol=1e-6)


# ---- /similarity, /tokenize ------------------------------------------------------------------


def test_similarity_is_cosine_of_encode(client, model):
    source, sentences = "A man is playing a guitar.", ["A man plays the guitar.",
                                                       "Stocks fell sharply.", "A cat sleeps."]
    response = client.post("/similarity", json={"inputs": {"source_sentence": source,
                                                           "sentences": sentences}})
    assert response.status_code == 200
    scores = np.array(response.json())
    vecs = model.encode([source, *sentences])
    np.testing.assert_allclose(scores, vecs[1:] @ vecs[0], atol=1e-6)
    assert scores.argmax() == 0


def test_similarity_without_sentences(client):
    response = client.post("/similarity",
                           json={"inputs": {"source_sentence": "x", "sentences": []}})
    assert response.status_code == 422 and response.json()["error_type"] == "empty"


def test_tokenize_lists_tokens_with_offsets(client):
    text = "Hello wörld, tokenizers!"
    [tokens] = client.post("/tokenize", json={"inputs": text}).json()
    assert tokens[0] == {"id": 101, "text": "[CLS]", "special": True, "start": None,
                         "stop": None}
    assert tokens[-1]["text"] == "[SEP]" and tokens[-1]["special"]
    for t in tokens[1:-1]:
        assert not t["special"] and t["text"] == text[t["start"]:t["stop"]]
    assert [t["text"] for t in tokens[1:3]] == ["Hello", "wörld"]
    plain = client.post("/tokenize", json={"inputs": [text, "a"],
                                           "add_special_tokens": False}).json()
    assert [t["id"] for t in plain[0]] == [t["id"] for t in tokens[1:-1]]
    assert len(plain) == 2


def test_tokenize_does_not_truncate(client):
    [tokens] = client.post("/tokenize", json={"inputs": LONG_TEXT}).json()
    assert len(tokens) > 256


# ---- /metrics ---------------------------------------------------------------------------------


def test_metrics_count_requests_and_batches(client):
    before = metric(client, "seqenc_requests_total", route="/embed", method="POST",
                    status="200")
    texts_before = metric(client, "seqenc_texts_total")
    client.post("/embed", json={"inputs": ["one", "two", "three"]})
    assert metric(client, "seqenc_requests_total", route="/embed", method="POST",
                  status="200") == before + 1
    assert metric(client, "seqenc_texts_total") == texts_before + 3
    client.post("/embed", json={"inputs": []})
    assert metric(client, "seqenc_requests_total", route="/embed", method="POST",
                  status="422") >= 1
    text = client.get("/metrics").text
    for name in ("seqenc_queue_requests", "seqenc_queue_texts", "seqenc_batch_size_bucket",
                 "seqenc_batch_tokens_bucket", "seqenc_tokenization_duration_seconds_bucket",
                 "seqenc_queue_duration_seconds_bucket",
                 "seqenc_inference_duration_seconds_bucket"):
        assert name in text
    assert metric(client, "seqenc_batch_size_count") >= 1


def test_api_key_header_is_case_insensitive_in_scheme(server):
    with httpx.Client(base_url=server.url,
                      headers={"Authorization": f"bearer {API_KEY}"}) as c:
        assert c.get("/info").status_code == 200
