"""Cohere's Python SDK embedding through a live seqenc server: ``ClientV2.embed`` (POST
/v2/embed) and ``Client.embed`` (POST /v1/embed) return seqenc's encode() vectors, as floats
and base64 float32, and binary/ubinary as the packed sign bits of those vectors; truncate,
max_tokens and output_dimension do what Cohere documents; refusals arrive as the SDK's
exception types with seqenc's reason in their body."""

from __future__ import annotations

import base64
import string

import numpy as np
import pytest
from tokenizers import Tokenizer

cohere = pytest.importorskip("cohere", reason="Cohere's SDK: pip install -e '.[dev]'")

TEXTS = ["A plane is taking off.", "A man is playing a guitar.",
         "Zoë's café — 東京 😀", "short"]
MODEL = "seqenc-mini"
# Single letters are one token each in the test model's vocabulary (checked below), so a
# text of N letters is N tokens plus [CLS] and [SEP], and its cut versions can be written out.
LETTERS = [string.ascii_lowercase[i % 26] for i in range(600)]


def _floats(rows) -> np.ndarray:
    return np.array(rows, dtype=np.float32)


def test_v2_float_equals_encode(cohere_v2, live):
    response = cohere_v2.embed(model=MODEL, texts=TEXTS, input_type="search_document",
                        embedding_types=["float"])
    expected, report = live.model.encode(TEXTS, return_report=True)
    np.testing.assert_allclose(_floats(response.embeddings.float_), expected, atol=1e-6)
    assert response.texts == TEXTS and response.id
    assert response.meta.billed_units.input_tokens == report.n_tokens
    assert response.embeddings.binary is None  # only the types asked for


def test_v2_without_embedding_types_is_float(cohere_v2, live):
    response = cohere_v2.embed(model=MODEL, texts=TEXTS[:2], input_type="search_query")
    np.testing.assert_allclose(_floats(response.embeddings.float_),
                               live.model.encode(TEXTS[:2]), atol=1e-6)


def test_v2_every_served_type_is_a_view_of_the_vectors(cohere_v2, live):
    response = cohere_v2.embed(model=MODEL, texts=TEXTS, input_type="clustering",
                        embedding_types=["float", "base64", "binary", "ubinary"])
    e = response.embeddings
    floats = _floats(e.float_)
    np.testing.assert_allclose(floats, live.model.encode(TEXTS), atol=1e-6)
    decoded = np.stack([np.frombuffer(base64.b64decode(s), dtype="<f4") for s in e.base64])
    np.testing.assert_array_equal(decoded, floats)  # the same float32 values, bit for bit
    # Cohere's packed binary: 1/8 of the float length, bit = value > 0, first dimension in the
    # high bit; ubinary 0..255, binary the same byte - 128 (-128..127)
    bits = floats > 0
    ubinary = np.array(e.ubinary)
    assert ubinary.shape == (len(TEXTS), floats.shape[1] // 8)
    assert ubinary.min() >= 0 and ubinary.max() <= 255
    np.testing.assert_array_equal(np.unpackbits(ubinary.astype(np.uint8), axis=1), bits)
    assert ubinary[0, 0] == sum(int(b) << (7 - j) for j, b in enumerate(bits[0, :8]))
    np.testing.assert_array_equal(np.array(e.binary), ubinary - 128)


def test_input_type_changes_nothing(cohere_v2):
    # seqenc's models have no query/document prompts: every text input_type is the same model
    got = {t: _floats(cohere_v2.embed(model=MODEL, texts=TEXTS, input_type=t).embeddings.float_)
           for t in ("search_document", "search_query", "classification", "clustering")}
    for vectors in got.values():
        np.testing.assert_array_equal(vectors, got["search_document"])


def test_v1_plain_floats_and_by_type(cohere_v1, live):
    expected = live.model.encode(TEXTS)
    plain = cohere_v1.embed(texts=TEXTS, model=MODEL, input_type="search_document")
    assert plain.response_type == "embeddings_floats" and plain.texts == TEXTS
    np.testing.assert_allclose(_floats(plain.embeddings), expected, atol=1e-6)
    typed = cohere_v1.embed(texts=TEXTS, model=MODEL, embedding_types=["float", "ubinary"])
    assert typed.response_type == "embeddings_by_type"
    np.testing.assert_allclose(_floats(typed.embeddings.float_), expected, atol=1e-6)
    np.testing.assert_array_equal(np.array(typed.embeddings.ubinary),
                                  np.packbits(expected > 0, axis=1))


def _letters(live) -> str:
    tokenizer = Tokenizer.from_str(live.model.tokenizer.tokenizer.to_str())
    tokenizer.no_truncation()  # the model's own copy cuts at max_seq_length
    ids = tokenizer.encode(" ".join(LETTERS)).ids
    assert len(ids) == len(LETTERS) + 2 > live.model.max_seq_length  # the premise above
    return " ".join(LETTERS)


def test_truncate_end_and_start_keep_that_side(cohere_v2, live):
    text, keep = _letters(live), live.model.max_seq_length - 2
    head = " ".join(LETTERS[:keep])  # fits exactly: END's cut
    tail = " ".join(LETTERS[-keep:])  # START's cut
    for truncate, reference in (("END", head), ("START", tail)):
        got = cohere_v2.embed(model=MODEL, texts=[text], input_type="search_document",
                       truncate=truncate).embeddings.float_
        np.testing.assert_allclose(_floats(got), live.model.encode([reference]), atol=1e-6)
    assert not np.allclose(live.model.encode([head]), live.model.encode([tail]), atol=1e-3)


def test_truncate_none_refuses_a_long_text(cohere_v2, cohere_v1, live):
    for call in (lambda: cohere_v2.embed(model=MODEL, texts=["ok", _letters(live)],
                                  input_type="search_query", truncate="NONE"),
                 lambda: cohere_v1.embed(texts=["ok", _letters(live)], truncate="NONE")):
        with pytest.raises(cohere.UnprocessableEntityError) as caught:
            call()
        assert caught.value.body["error_type"] == "input_too_long"
        assert caught.value.body["error"] == ("input 1 has 602 tokens, more than the maximum "
                                              'of 256; shorten it or set truncate to "END" or '
                                              '"START"')


def test_max_tokens_caps_each_text(cohere_v2, live):
    text = " ".join(LETTERS[:40])
    got = cohere_v2.embed(model=MODEL, texts=[text, "a b"], input_type="search_document",
                   max_tokens=8).embeddings.float_  # 6 letters + [CLS] + [SEP]
    np.testing.assert_allclose(_floats(got), live.model.encode([" ".join(LETTERS[:6]), "a b"]),
                               atol=1e-6)
    with pytest.raises(cohere.UnprocessableEntityError) as caught:
        cohere_v2.embed(model=MODEL, texts=[text], input_type="search_document", max_tokens=8,
                 truncate="NONE")
    assert "more than the maximum of 8" in caught.value.body["error"]
    with pytest.raises(cohere.UnprocessableEntityError) as caught:
        cohere_v2.embed(model=MODEL, texts=[text], input_type="search_document", max_tokens=2)
    assert "max_tokens must be more than 2" in caught.value.body["error"]


def test_output_dimension_keeps_the_first_k_renormalised(cohere_v2, live):
    got = _floats(cohere_v2.embed(model=MODEL, texts=TEXTS, input_type="search_document",
                           output_dimension=64).embeddings.float_)
    cut = live.model.encode(TEXTS)[:, :64].astype(np.float64)
    np.testing.assert_allclose(got, cut / np.linalg.norm(cut, axis=1, keepdims=True),
                               atol=1e-6)
    with pytest.raises(cohere.UnprocessableEntityError) as caught:
        cohere_v2.embed(model=MODEL, texts=TEXTS, input_type="search_document",
                        output_dimension=385)
    assert caught.value.body["error"] == "output_dimension must be between 1 and 384, got 385"


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"embedding_types": ["float", "int8"]}, "embedding_types int8 is not served"),
    ({"embedding_types": ["uint8"]}, "embedding_types uint8 is not served"),
    ({"input_type": "image"}, "images are not served"),
    ({"images": ["data:image/png;base64,iVBORw0KGgo="]}, "images are not served"),
    ({"texts": []}, "texts is empty"),
    ({"texts": ["x"] * 17}, "more than max_client_batch_size=16"),
    ({"texts": ["ok", " "]}, "texts[1]"),
    ({"truncate": "MIDDLE"}, "truncate"),
])
def test_refusals_name_the_field(cohere_v2, kwargs, reason):
    with pytest.raises(cohere.UnprocessableEntityError) as caught:
        cohere_v2.embed(**{"model": MODEL, "texts": TEXTS, "input_type": "search_query", **kwargs})
    assert caught.value.status_code == 422
    assert reason in caught.value.body["error"]
    assert reason in str(caught.value)  # what a user of the SDK sees


def test_v1_refusals_and_auth(cohere_v1, live):
    with pytest.raises(cohere.UnprocessableEntityError) as caught:
        cohere_v1.embed(texts=[], batching=False)  # the SDK's batching would refuse [] itself
    assert caught.value.body["error_type"] == "empty"
    wrong = cohere.ClientV2(base_url=live.url, api_key="wrong", timeout=120)
    with pytest.raises(cohere.UnauthorizedError) as caught:
        wrong.embed(model=MODEL, texts=TEXTS, input_type="search_query")
    assert caught.value.status_code == 401
