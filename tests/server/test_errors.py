"""Bad requests get a clear 4xx JSON error, never a 500; the server keeps serving after them."""

from __future__ import annotations

import concurrent.futures
import json
import socket
import threading
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest

from seqenc.server.app import create_app
from seqenc.server.settings import Settings

from .support import (
    API_KEY,
    LONG_TEXT,
    PAYLOAD_LIMIT,
    error_body,
    heavy_texts,
    metric,
    running,
    wait_for,
)

WAIT = 120.0  # bounds waits; never asserted on


def assert_error(response: httpx.Response, status: int, error_type: str,
                 fragment: str = "") -> str:
    assert response.status_code == status, response.text
    body = error_body(response)  # checks the route's exact shape
    assert body["error_type"] == error_type
    assert fragment in body["error"]
    return body["error"]


@pytest.mark.parametrize("route, body, error_type, fragment", [
    ("/embed", {"inputs": []}, "empty", "empty"),
    ("/v1/embeddings", {"input": []}, "empty", "empty"),
    ("/tokenize", {"inputs": []}, "empty", "empty"),
    ("/embed", {}, "validation", "inputs: Field required"),
    ("/v1/embeddings", {"model": "x"}, "validation", "input: Field required"),
    ("/embed", {"inputs": ["x"] * 33}, "too_many_inputs", "33 inputs"),
    ("/similarity", {"inputs": {"source_sentence": "s", "sentences": ["x"] * 32}},
     "too_many_inputs", "33 inputs"),
    ("/embed", {"inputs": 5}, "validation", "inputs must be a string or a list of strings"),
    ("/embed", {"inputs": ["a", 1]}, "validation", "inputs must be"),
    ("/v1/embeddings", {"input": [1, "a"]}, "validation", "input must be a string"),
    ("/v1/embeddings", {"input": [[1, 2], 3]}, "validation", "input must be"),
    ("/v1/embeddings", {"input": [1.5]}, "validation", "input must be"),
    ("/v1/embeddings", {"input": [True]}, "validation", "input must be"),
    ("/v1/embeddings", {"input": "x", "encoding_format": "int8"}, "validation",
     "encoding_format"),
    ("/v1/embeddings", {"input": "x", "dimensions": "8"}, "validation", "dimensions"),
    ("/embed", {"inputs": "x", "normalize": "yes"}, "validation", "normalize"),
    ("/embed", {"inputs": "x", "truncation_direction": "Up"}, "validation",
     "truncation_direction"),
    ("/similarity", {"inputs": "x"}, "validation", "inputs"),
    ("/similarity", {"inputs": {"source_sentence": 1, "sentences": ["a"]}}, "validation",
     "inputs.source_sentence"),
    ("/tokenize", {"inputs": "x", "add_special_tokens": 1}, "validation",
     "add_special_tokens"),
    ("/embed", [1, 2], "validation", "must be a JSON object"),
    ("/embed", "just a string", "validation", "must be a JSON object"),
    ("/embed", None, "validation", "a JSON object"),
])
def test_invalid_requests_are_422(client, route, body, error_type, fragment):
    response = client.post(route, content=json.dumps(body),
                           headers={"Content-Type": "application/json"})
    assert_error(response, 422, error_type, fragment)


@pytest.mark.parametrize("raw", [b"{", b'{"inputs": "x",}', b"not json", b"\xff\xfe\x00",
                                 b'{"inputs": "\xff"}', b"[1, 2"])
def test_bodies_that_are_not_json_are_400(client, raw):
    response = client.post("/embed", content=raw, headers={"Content-Type": "application/json"})
    assert_error(response, 400, "invalid_json")


def test_missing_body_is_422(client):
    assert_error(client.post("/embed", headers={"Content-Type": "application/json"}), 422,
                 "validation", "request body is required")


@pytest.mark.parametrize("content_type", [None, "application/x-www-form-urlencoded",
                                          "text/plain", "multipart/form-data; boundary=x"])
def test_bodies_not_declared_json_are_415(client, content_type):
    # `curl -d` sends form encoding; a cross-site <form> or fetch() can send text/plain
    # without a preflight: neither is read (issue 17).
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/embed", content=b'{"inputs": "hi"}', headers=headers)
    assert_error(response, 415, "unsupported_media_type", "application/json")
    ok = client.post("/embed", content=b'{"inputs": "hi"}',
                     headers={"Content-Type": "application/json; charset=utf-8"})
    assert ok.status_code == 200


def test_unknown_fields_are_ignored(client):
    response = client.post("/v1/embeddings", json={"input": "x", "user": "u", "extra": [1]})
    assert response.status_code == 200


def test_unknown_route_and_wrong_method(client):
    assert_error(client.get("/nope"), 404, "not_found")
    response = client.get("/embed")
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["allow"]
    assert_error(client.post("/health"), 405, "method_not_allowed")


def test_overlong_input_names_the_index(client):
    texts = ["ok", "fine", LONG_TEXT, LONG_TEXT]
    message = assert_error(client.post("/v1/embeddings", json={"input": texts}), 422,
                           "input_too_long")
    assert message.startswith("input 2 has ")


# ---- authentication -----------------------------------------------------------------------


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer wrong"},
    {"Authorization": API_KEY},
    {"Authorization": f"Basic {API_KEY}"},
    {"Authorization": f"Bearer {API_KEY}x"},
    {"Authorization": "Bearer"},
])
def test_missing_or_wrong_api_key_is_401(server, headers):
    with httpx.Client(base_url=server.url, headers=headers) as c:
        for method, route in (("POST", "/embed"), ("POST", "/v1/embeddings"),
                              ("POST", "/similarity"), ("POST", "/tokenize"),
                              ("GET", "/info"), ("GET", "/metrics"), ("GET", "/nope")):
            response = c.request(method, route, json={"inputs": "x"})
            assert_error(response, 401, "unauthorized")
            assert response.headers["www-authenticate"] == "Bearer"
        assert c.get("/health").status_code == 200


# ---- payload limit ------------------------------------------------------------------------


JSON = {"Content-Type": "application/json"}


def padded_body(size: int) -> bytes:
    """A valid /embed body of exactly ``size`` bytes."""
    head = b'{"inputs": "hello"'
    return head + b" " * (size - len(head) - 1) + b"}"


def test_body_at_the_limit_is_accepted(client):
    response = client.post("/embed", content=padded_body(PAYLOAD_LIMIT), headers=JSON)
    assert response.status_code == 200


def test_body_over_the_limit_is_413(client):
    assert_error(client.post("/embed", content=padded_body(PAYLOAD_LIMIT + 1), headers=JSON), 413,
                 "payload_too_large", f"payload limit of {PAYLOAD_LIMIT} bytes")


def test_streamed_body_over_the_limit_is_413_without_content_length(client):
    def chunks():
        for _ in range(30):
            yield b" " * 10_000  # 300 kB in all, sent chunked

    response = client.post("/embed", content=chunks())
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "payload_too_large")


def test_lying_content_length_is_caught_by_counting(server):
    # Content-Length says 10 bytes; the client then sends far more. Counted, not trusted.
    host, port = urlsplit(server.url).hostname, urlsplit(server.url).port
    body = padded_body(PAYLOAD_LIMIT * 2)
    with socket.create_connection((host, port), timeout=60) as sock:
        sock.sendall(b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
                     b"Content-Type: application/json\r\n"
                     b"Authorization: Bearer " + API_KEY.encode() + b"\r\n\r\n" + body)
        reply = sock.recv(65536)
    # h11 reads exactly 10 bytes as the body: an invalid JSON prefix, not a crash or a hang
    assert reply.startswith(b"HTTP/1.1 400")


def test_server_still_healthy_after_the_bad_requests(client, model):
    got = client.post("/embed", json={"inputs": "still here"}).json()
    np.testing.assert_allclose(got[0], model.encode("still here"), atol=1e-6)


# ---- a client that goes away ----------------------------------------------------------------


class HeldModel:
    """The real model, with a forward pass that can be held until the test lets it go, and a
    record of the rows of every pass: a test can then hold the worker for as long as it needs,
    whatever the machine's load, and see exactly which texts ran."""

    def __init__(self, model):
        self._model = model
        self.rows: list[int] = []  # rows of each forward pass after the warm-up
        self.hold_next = False
        self.holding = threading.Event()
        self.release = threading.Event()

    def __getattr__(self, name):
        return getattr(self._model, name)

    def embed_ids(self, ids, dtype="float32", pooling=None):
        if self.hold_next:
            self.hold_next = False
            self.holding.set()
            assert self.release.wait(WAIT), "the test never released the pass"
        self.rows.append(len(ids))
        return self._model.embed_ids(ids, dtype, pooling)


def test_client_disconnect_drops_its_queued_work(model):
    """A request queued behind a long one is dropped when its client disconnects: its texts
    never run, and later requests are unaffected. The long one's pass is held until the
    server has noticed the disconnect, so the order of events is the same on any machine."""
    held = HeldModel(model)
    with running(create_app(held, Settings())) as url, \
            httpx.Client(base_url=url, timeout=WAIT) as c, \
            concurrent.futures.ThreadPoolExecutor(1) as pool:
        wait_for(lambda: c.get("/health").status_code == 200, "the model", WAIT)
        warm_up_passes = len(held.rows)
        held.hold_next = True
        blocker = pool.submit(c.post, "/embed", json={"inputs": heavy_texts(), "truncate": True})
        assert held.holding.wait(WAIT)  # the worker is inside the blocker's pass
        body = json.dumps({"inputs": heavy_texts(), "truncate": True}).encode()
        url_parts = urlsplit(url)
        sock = socket.create_connection((url_parts.hostname, url_parts.port), timeout=WAIT)
        sock.sendall(b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                     b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        wait_for(lambda: metric(c, "seqenc_queue_texts") == 32, "the second request queued",
                 WAIT)
        sock.close()
        wait_for(lambda: metric(c, "seqenc_requests_cancelled_total") == 1,
                 "the server to notice the disconnect", WAIT)
        assert metric(c, "seqenc_queue_texts") == 0  # dropped from the queue, not run
        held.release.set()
        assert blocker.result().status_code == 200
        wait_for(lambda: metric(c, "seqenc_queue_requests") == 0, "the queue to empty", WAIT)
        got = c.post("/embed", json={"inputs": "after the disconnect"}).json()
        assert held.rows[warm_up_passes:] == [32, 1]  # the blocker, then the last request
        assert metric(c, "seqenc_texts_total") == 33
    np.testing.assert_allclose(got[0], model.encode("after the disconnect"), atol=1e-6)
