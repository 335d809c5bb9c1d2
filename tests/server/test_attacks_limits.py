"""Issue 17's attacks on the server's limits, replayed against a real server subprocess: every
working route takes a concurrency slot (429 with Retry-After), /tokenize's answer is bounded,
and connections have read deadlines, a cap and a cap on bytes buffered. Waits are bounded;
nothing asserts on speed."""

from __future__ import annotations

import concurrent.futures
import json
import select
import socket
import time

import pytest

from .attacks_support import (
    BOUND,
    MAX_CONNECTIONS,
    address,
    closed_by_server,
    post_raw,
)
from .support import error_body, heavy_texts, metric, wait_for

# ---- 3. /tokenize: a slot like every working route, and a bounded answer ----------------------


def test_every_working_route_takes_a_slot_and_429_says_when_to_retry(anon):
    heavy = {"inputs": heavy_texts(16), "truncate": True}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        blockers = [pool.submit(anon.post, "/embed", json=heavy) for _ in range(2)]
        wait_for(lambda: metric(anon, "seqenc_queue_requests") == 2, "both slots taken", BOUND)
        for route, body in (("/tokenize", {"inputs": ["a b c"] * 8}),
                            ("/embed", {"inputs": "x"}), ("/v1/embeddings", {"input": [101, 102]}),
                            ("/similarity", {"inputs": {"source_sentence": "a",
                                                        "sentences": ["b"]}})):
            response = anon.post(route, json=body)
            assert response.status_code == 429, (route, response.text)
            assert error_body(response)["error_type"] == "overloaded"
            assert response.headers["retry-after"] == "1"
        assert [b.result().status_code for b in blockers] == [200, 200]
    assert anon.post("/tokenize", json={"inputs": "a b c"}).status_code == 200


def test_tokenize_answer_is_bounded(anon):
    info = anon.get("/info").json()
    assert "max_tokenize_tokens" in info, info
    limit = info["max_tokenize_tokens"]
    assert limit == info["max_client_batch_size"] * info["max_input_length"]
    n = limit * 2 // 3  # tokens of text: two such inputs are past the limit, one is not
    response = anon.post("/tokenize", json={"inputs": ["a " * n] * 2})
    assert response.status_code == 422, response.text[:200]
    assert response.json()["error_type"] == "too_many_tokens"
    assert f"more than the {limit}" in response.json()["error"]
    assert len(anon.post("/tokenize", json={"inputs": "a " * n}).json()[0]) == n + 2


# ---- 4. connections: read deadlines, a cap, bytes buffered ------------------------------------


def test_idle_and_stalled_connections_are_closed(target):
    host, port = address(target)
    head = b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    stalls = {
        "sends nothing": b"",
        "half a head": b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Ty",
        "5 of 100 body bytes": head + b"Content-Length: 100\r\n\r\n" + b'{"inp',
        "a chunked body that stops": head + b"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"inp\r\n",
    }
    socks = {}
    for name, data in stalls.items():
        socks[name] = socket.create_connection((host, port), timeout=BOUND)
        socks[name].sendall(data)
    for name, sock in socks.items():
        reply = closed_by_server(sock)
        assert reply == b"", (name, reply)  # closed without an answer: the client stalled
        sock.close()


def test_a_trickled_body_is_cut_off(target):
    """A byte every 50 ms never pauses for the read timeout, but falls far below the body's
    minimum rate: the server closes it rather than wait for ever."""
    host, port = address(target)
    with socket.create_connection((host, port), timeout=BOUND) as sock:
        sock.sendall(b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        deadline = time.monotonic() + BOUND
        while time.monotonic() < deadline:
            try:
                sock.sendall(b"1\r\n \r\n")
            except (BrokenPipeError, ConnectionResetError):
                return
            if select.select([sock], [], [], 0.05)[0]:
                assert closed_by_server(sock) == b""
                return
        pytest.fail(f"a trickled body was still read after {BOUND}s")


def test_at_the_connection_cap_idle_ones_make_room_busy_ones_do_not(target, anon):
    host, port = address(target)
    # Idle connections fill the cap: a new client is still served (the idle longest goes).
    idle = [socket.create_connection((host, port), timeout=BOUND)
            for _ in range(MAX_CONNECTIONS + 2)]
    try:
        with target.client(api_key=None) as newcomer:
            assert newcomer.post("/embed", json={"inputs": "still served"}).status_code == 200
    finally:
        for sock in idle:
            sock.close()
    # Connections all busy sending a body: a new one gets 503 and is closed.
    head = (b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{")
    busy = []
    try:
        for _ in range(MAX_CONNECTIONS + 4):
            busy.append(socket.create_connection((host, port), timeout=BOUND))
            busy[-1].sendall(head)
            time.sleep(0.03)  # for the server to read the head: this one is busy, not idle
        replies = [closed_by_server(sock) for sock in busy]
    finally:
        for sock in busy:
            sock.close()
    refused = [r for r in replies if r.startswith(b"HTTP/1.1 503")]
    assert len(refused) >= 1, replies
    assert all(b"retry-after: 1" in r and b'"error_type": "overloaded"' in r for r in refused)
    assert anon.get("/health").status_code == 200


def test_bytes_buffered_across_requests_are_capped(target, anon):
    """One client holds 180 kB of a 200 kB body; another's 150 kB body would take the bytes
    buffered past --max-buffered-bytes (300 kB): 429 with Retry-After, not more memory."""
    host, port = address(target)
    big = json.dumps({"inputs": "y" + " " * 149_990}).encode()
    with socket.create_connection((host, port), timeout=BOUND) as holder:
        holder.sendall(b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       b"Content-Length: 200000\r\n\r\n" + b" " * 180_000)
        wait_for(lambda: metric(anon, "seqenc_buffered_request_bytes") == 180_000,
                 "the server to read the holder's bytes", BOUND)
        refused = post_raw(anon, "/embed", big)
        assert refused.status_code == 429, refused.text[:200]
        assert refused.headers["retry-after"] == "1"
        assert "max_buffered_bytes" in refused.json()["error"]
    wait_for(lambda: post_raw(anon, "/embed", big).status_code == 200,
             "the holder's bytes to be released", BOUND)
