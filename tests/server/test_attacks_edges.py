"""Issue 17's sharp edges and shutdown, against real server subprocesses: no redirect built
from the Host header, cross-site text/plain posts refused, request smuggling framing refused,
/info without the model's path, API keys visible ASCII; SIGTERM does not wait for stalled
connections and work cut off by the graceful timeout says so. Waits are bounded; nothing
asserts on speed."""

from __future__ import annotations

import concurrent.futures
import socket
import subprocess
import sys

import pytest

from seqenc.server.settings import Settings

from .attacks_support import (
    BOUND,
    address,
    closed_by_server,
)
from .support import ServerProcess, heavy_texts, metric, wait_for

# ---- sharp edges --------------------------------------------------------------------------------


def test_no_redirect_built_from_the_host_header(anon):
    response = anon.post("/embed/", json={"inputs": "x"}, headers={"Host": "evil.example"})
    assert response.status_code == 404
    assert "location" not in response.headers


def test_cross_site_text_plain_post_is_415_without_a_key(anon):
    response = anon.post("/embed", content=b'{"inputs": "x"}',
                         headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert response.json()["error_type"] == "unsupported_media_type"


def test_content_length_with_chunked_is_400_and_closes(target):
    host, port = address(target)
    with socket.create_connection((host, port), timeout=BOUND) as sock:
        sock.sendall(b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 15\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"f\r\n{\"inputs\": \"x\"}\r\n0\r\n\r\n")
        reply = closed_by_server(sock)
    assert reply.startswith(b"HTTP/1.1 400"), reply
    assert b"invalid_request" in reply


def test_info_names_the_model_without_its_path(anon):
    info = anon.get("/info").json()
    assert info["model_path"] is None
    assert info["model_id"] == "all-MiniLM-L6-v2"


def test_api_key_is_visible_ascii_or_a_usage_error():
    with pytest.raises(ValueError, match="visible ASCII"):
        Settings(api_key="clé")
    with pytest.raises(ValueError, match="visible ASCII"):
        Settings(api_key="two words")
    result = subprocess.run([sys.executable, "-m", "seqenc.server", "--api-key", "ключ"],
                            capture_output=True, text=True, timeout=BOUND)
    assert result.returncode == 2, result.stderr
    assert "visible ASCII" in result.stderr


# ---- shutdown: stalled connections do not hold it up; cut-off work says so --------------------


def test_sigterm_does_not_wait_for_stalled_connections():
    with ServerProcess.ready("--graceful-timeout", "600", "--read-timeout", "1", "--threads",
                             "1", "--log-level", "info") as proc:
        host, port = address(proc)
        stalled = []
        for data in (b"", b"POST /embed HTTP/1.1\r\nHost: x\r\n",
                     b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"inp"):
            stalled.append(socket.create_connection((host, port), timeout=BOUND))
            stalled[-1].sendall(data)
        with proc.client(api_key=None, timeout=300) as c, \
                concurrent.futures.ThreadPoolExecutor(1) as pool:
            work = pool.submit(c.post, "/embed", json={"inputs": heavy_texts(8),
                                                       "truncate": True})
            wait_for(lambda: metric(c, "seqenc_queue_requests") == 1, "work in flight", BOUND)
            proc.terminate()
            assert work.result().status_code == 200  # real work finishes
        assert proc.proc.wait(BOUND) == 0  # not after --graceful-timeout's 600 s
        for sock in stalled:
            sock.close()
        assert "Traceback" not in proc.output()


def test_work_cut_off_by_the_graceful_timeout_is_503_without_a_traceback():
    with ServerProcess.ready("--graceful-timeout", "0.2", "--threads", "1", "--log-level",
                             "info") as proc:
        with proc.client(api_key=None, timeout=300) as c, \
                concurrent.futures.ThreadPoolExecutor(3) as pool:
            heavy = {"inputs": heavy_texts(), "truncate": True}
            work = [pool.submit(c.post, "/embed", json=heavy) for _ in range(3)]
            wait_for(lambda: metric(c, "seqenc_queue_requests") == 3, "work in flight", BOUND)
            proc.terminate()
            statuses = [w.result().status_code for w in work]
        assert 503 in statuses and set(statuses) <= {200, 503}, statuses
        assert proc.proc.wait(BOUND) == 0
        output = proc.output()
        assert "Traceback" not in output and "CancelledError" not in output
        assert "cut short: shutdown outlasted --graceful-timeout" in output
