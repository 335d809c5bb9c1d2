"""The official ``openai`` Python client against a live seqenc server: its vectors equal
seqenc's own encode(), in every form the SDK sends (its default base64 that it decodes itself,
float, base64 kept, dimensions, one string, token ids), and errors arrive as the SDK's
exception types with seqenc's message in their text."""

from __future__ import annotations

import base64

import numpy as np
import pytest

openai = pytest.importorskip("openai", reason="the openai SDK: pip install -e '.[dev]'")

TEXTS = ["A plane is taking off.", "A man is playing a guitar.",
         "Ünïcödé wörks, 東京 too — and emoji 🙂.", "short"]
MODEL = "seqenc-mini"


@pytest.fixture(scope="module")
def client(live):
    # no retries: a test sees the first answer (the SDK retries 429 and 5xx by default)
    with openai.OpenAI(base_url=f"{live.url}/v1", api_key=live.key, max_retries=0) as c:
        yield c


def _matrix(response) -> np.ndarray:
    return np.array([d.embedding for d in response.data], dtype=np.float32)


def test_default_request_is_base64_decoded_by_the_sdk(client, live):
    raw = client.embeddings.with_raw_response.create(model=MODEL, input=TEXTS)
    # the SDK asked for base64 without being told to, and got strings back ...
    assert all(isinstance(d["embedding"], str) for d in raw.http_response.json()["data"])
    parsed = raw.parse()
    # ... which it decoded into the same floats encode() gives
    expected, report = live.model.encode(TEXTS, return_report=True)
    assert [d.index for d in parsed.data] == list(range(len(TEXTS)))
    np.testing.assert_allclose(_matrix(parsed), expected, atol=1e-6)
    assert parsed.model == MODEL and parsed.object == "list"
    assert parsed.usage.prompt_tokens == parsed.usage.total_tokens == report.n_tokens


def test_float_format_equals_encode(client, live):
    response = client.embeddings.create(model=MODEL, input=TEXTS, encoding_format="float")
    assert all(isinstance(d.embedding[0], float) for d in response.data)
    np.testing.assert_allclose(_matrix(response), live.model.encode(TEXTS), atol=1e-6)


def test_explicit_base64_is_left_to_the_caller_and_holds_float32(client):
    packed = client.embeddings.create(model=MODEL, input=TEXTS, encoding_format="base64")
    floats = client.embeddings.create(model=MODEL, input=TEXTS, encoding_format="float")
    for p, f in zip(packed.data, floats.data, strict=True):
        assert isinstance(p.embedding, str)  # asked for explicitly: the SDK does not decode
        decoded = np.frombuffer(base64.b64decode(p.embedding), dtype="<f4")
        np.testing.assert_array_equal(decoded, np.array(f.embedding, dtype=np.float32))


@pytest.mark.parametrize("encoding_format", ["float", None])
def test_dimensions_keep_the_first_k_renormalised(client, live, encoding_format):
    extra = {"encoding_format": encoding_format} if encoding_format else {}
    response = client.embeddings.create(model=MODEL, input=TEXTS, dimensions=64, **extra)
    full = live.model.encode(TEXTS)[:, :64]
    np.testing.assert_allclose(_matrix(response),
                               full / np.linalg.norm(full, axis=1, keepdims=True), atol=1e-6)


def test_one_string(client, live):
    response = client.embeddings.create(model=MODEL, input=TEXTS[0])
    assert len(response.data) == 1
    np.testing.assert_allclose(response.data[0].embedding, live.model.encode(TEXTS[0]),
                               atol=1e-6)


def test_token_ids_one_input_and_many(client, live):
    ids = live.model.tokenizer.encode(TEXTS[:2]).ids  # special tokens included
    expected = live.model.encode(TEXTS[:2])
    many = client.embeddings.create(model=MODEL, input=ids)
    np.testing.assert_allclose(_matrix(many), expected, atol=1e-6)
    assert many.usage.prompt_tokens == sum(map(len, ids))
    one = client.embeddings.create(model=MODEL, input=ids[1])
    np.testing.assert_allclose(_matrix(one), expected[1:], atol=1e-6)


def test_the_server_root_as_base_url_works_too(live):
    # TEI also serves the route at /embeddings: base_url without /v1 reaches it
    with openai.OpenAI(base_url=live.url, api_key=live.key, max_retries=0) as root:
        response = root.embeddings.create(model=MODEL, input=TEXTS[:1])
    np.testing.assert_allclose(_matrix(response), live.model.encode(TEXTS[:1]), atol=1e-6)


def test_async_client_equals_encode(live):
    import asyncio

    async def embed() -> np.ndarray:
        async with openai.AsyncOpenAI(base_url=f"{live.url}/v1", api_key=live.key,
                                      max_retries=0) as c:
            return _matrix(await c.embeddings.create(model=MODEL, input=TEXTS))

    np.testing.assert_allclose(asyncio.run(embed()), live.model.encode(TEXTS), atol=1e-6)


@pytest.mark.parametrize("kwargs, error, status, error_type, fragment", [
    ({"input": "   "}, "UnprocessableEntityError", 422, "empty", "input is empty"),
    ({"input": ["ok", ""]}, "UnprocessableEntityError", 422, "empty", "input[1]"),
    ({"input": "x", "dimensions": 4096}, "UnprocessableEntityError", 422, "validation",
     "dimensions must be between 1 and 384"),
    ({"input": [[101, 30522, 102]]}, "UnprocessableEntityError", 422, "validation",
     "token id 30522"),
    ({"input": ["a"] * 17}, "UnprocessableEntityError", 422, "too_many_inputs",
     "max_client_batch_size=16"),
    ({"input": "word " * 600}, "UnprocessableEntityError", 422, "input_too_long",
     "input 0 has 602 tokens, more than the maximum of 256"),
])
def test_errors_are_the_sdks_exceptions_with_seqencs_message(client, kwargs, error, status,
                                                             error_type, fragment):
    with pytest.raises(getattr(openai, error)) as caught:
        client.embeddings.create(model=MODEL, **kwargs)
    e = caught.value
    assert e.status_code == status and e.type == error_type
    assert fragment in str(e) and fragment in e.message  # the reason, not just "Error code"


def test_a_wrong_key_is_an_authentication_error(live):
    with openai.OpenAI(base_url=f"{live.url}/v1", api_key="wrong", max_retries=0) as c:
        with pytest.raises(openai.AuthenticationError) as caught:
            c.embeddings.create(model=MODEL, input="x")
    assert caught.value.status_code == 401 and caught.value.type == "unauthorized"
    assert "API key" in str(caught.value)
