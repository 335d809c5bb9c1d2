"""Start-up, overload and shutdown: /health before the model is ready, 429 when full, SIGTERM
drains what is in flight and exits 0, a missing model exits 4."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
import torch

from seqenc.server.app import create_app
from seqenc.server.settings import Settings

from .support import ServerProcess, heavy_texts, metric, running, wait_for

WAIT = 120.0  # bounds waits; never asserted on


def test_health_is_503_until_the_model_is_loaded_and_warm(model):
    gate = threading.Event()

    def loader():
        assert gate.wait(WAIT)
        return model

    with running(create_app(loader, Settings())) as url, httpx.Client(base_url=url) as c:
        response = c.get("/health")
        assert response.status_code == 503
        assert response.json() == {"error": "not ready: loading the model",
                                   "error_type": "not_ready"}
        for method, route, body in (("POST", "/embed", {"inputs": "x"}),
                                    ("POST", "/v1/embeddings", {"input": "x"}),
                                    ("POST", "/tokenize", {"inputs": "x"}), ("GET", "/info", None)):
            assert c.request(method, route, json=body).status_code == 503
        gate.set()
        wait_for(lambda: c.get("/health").status_code == 200, "the model to load", WAIT)
        got = c.post("/embed", json={"inputs": "ready now"}).json()
        np.testing.assert_allclose(got[0], model.encode("ready now"), atol=1e-6)


def test_failed_load_is_reported_by_health():
    failed = threading.Event()

    def loader():
        raise RuntimeError("weights are corrupt")

    app = create_app(loader, Settings(), on_load_error=lambda e: failed.set())
    with running(app) as url, httpx.Client(base_url=url) as c:
        assert failed.wait(WAIT)
        response = c.get("/health")
        assert response.status_code == 503
        assert response.json()["error"] == ("the model failed to load: RuntimeError: weights "
                                            "are corrupt")
        assert c.post("/embed", json={"inputs": "x"}).status_code == 503


def test_missing_model_exits_4_before_listening(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "seqenc.server", "--port", "0", "--model",
         str(tmp_path / "no-such-model")], capture_output=True, text=True, timeout=WAIT)
    assert result.returncode == 4, result.stderr
    assert "Error: no model directory" in result.stderr
    assert "listening" not in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="asks for a GPU the machine must lack")
def test_missing_gpu_exits_4_before_listening():
    result = subprocess.run([sys.executable, "-m", "seqenc.server", "--port", "0", "--device",
                             "cuda"], capture_output=True, text=True, timeout=WAIT)
    assert result.returncode == 4, result.stderr
    assert "PyTorch sees no GPU" in result.stderr
    assert "listening" not in result.stderr


def test_model_that_fails_to_load_exits_4(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    result = subprocess.run([sys.executable, "-m", "seqenc.server", "--port", "0", "--model",
                             str(tmp_path)], capture_output=True, text=True, timeout=WAIT)
    assert result.returncode == 4, result.stderr
    assert "listening" in result.stderr  # it got as far as serving /health (503)
    assert "Error: the model failed to load" in result.stderr


@pytest.mark.parametrize("delay", [0.0, 1.0])
def test_sigterm_while_the_model_loads_exits_0(delay):
    # Before the fix: exit -6 (SIGABRT), the loader thread killed inside torch at exit.
    proc = ServerProcess("--threads", "1", "--log-level", "info")
    try:
        time.sleep(delay)  # at once, or in the middle of loading
        proc.terminate()
        assert proc.proc.wait(WAIT) == 0, proc.output()
        assert "Traceback" not in proc.output()
    finally:
        proc.stop()


def test_sigterm_while_a_load_hangs_exits_0_after_the_graceful_timeout(tmp_path):
    # A load that never reaches its next stage (config.json is a FIFO nobody writes: a hung
    # network filesystem) used to keep the process alive for ever after SIGTERM.
    model = tmp_path / "stuck-model"
    model.mkdir()
    os.mkfifo(model / "config.json")
    proc = ServerProcess("--model", str(model), "--graceful-timeout", "1", "--threads", "1",
                         "--log-level", "info")
    try:
        def loading() -> bool:
            try:
                return "loading the model" in httpx.get(f"{proc.url}/health", timeout=10).text
            except httpx.TransportError:
                return False

        wait_for(loading, "/health to say the model is loading", WAIT)
        proc.terminate()
        assert proc.proc.wait(WAIT) == 0, proc.output()
        assert "the model load did not stop within --graceful-timeout (1s)" in proc.output()
        assert "Traceback" not in proc.output()
    finally:
        proc.stop()


def test_sigterm_the_moment_it_listens_exits_0():
    # Sent as soon as the address is printed, the signal can come before uvicorn has set its
    # handlers: it was ignored then, and the server ran on.
    proc = subprocess.Popen([sys.executable, "-m", "seqenc.server", "--port", "0", "--threads",
                             "1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    try:
        for line in proc.stderr:
            if b"listening on" in line:
                proc.send_signal(signal.SIGTERM)
                break
        _, rest = proc.communicate(timeout=WAIT)  # keep reading: its log goes on
        assert proc.returncode == 0, rest.decode(errors="replace")[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_port_in_use_exits_1():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "seqenc.server", "--port", str(port)],
                                capture_output=True, text=True, timeout=WAIT)
    assert result.returncode == 1, result.stderr
    assert f"Error: cannot listen on 127.0.0.1:{port}" in result.stderr


@pytest.mark.parametrize("args", [["--max-batch-tokens", "0"], ["--port", "70000"],
                                  ["--dtype", "float16"], ["--api-key", ""]])
def test_bad_options_are_usage_errors(args):
    result = subprocess.run([sys.executable, "-m", "seqenc.server", *args],
                            capture_output=True, text=True, timeout=WAIT)
    assert result.returncode == 2, result.stderr


def test_seqenc_serve_is_registered_with_the_main_cli():
    result = subprocess.run([sys.executable, "-m", "seqenc.cli", "serve", "--help"],
                            capture_output=True, text=True, timeout=WAIT)
    assert result.returncode == 0, result.stderr
    for option in ("--api-key", "--max-batch-tokens", "--max-client-batch-size",
                   "--max-concurrent-requests", "--payload-limit", "--dtype", "--log-level"):
        assert option in result.stdout


def test_server_cli_module_imports_nothing_heavy():
    code = ("import sys, seqenc.server.cli, seqenc.server; "
            "heavy = {'torch', 'fastapi', 'uvicorn', 'numpy'} & set(sys.modules); "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=WAIT)


# ---- one small server: first overloaded, then stopped with SIGTERM ----------------------------


@pytest.fixture(scope="module")
def small_server() -> Iterator[ServerProcess]:
    with ServerProcess.ready("--max-concurrent-requests", "2", "--log-level", "info",
                             "--threads", "1") as proc:
        yield proc


def test_overload_is_429_never_5xx(small_server):
    heavy = {"inputs": heavy_texts(), "truncate": True}
    with small_server.client(api_key=None, timeout=300) as c, \
            concurrent.futures.ThreadPoolExecutor(16) as pool:
        blockers = [pool.submit(c.post, "/embed", json=heavy) for _ in range(2)]
        wait_for(lambda: metric(c, "seqenc_queue_requests") == 2, "two requests in progress")
        burst = [pool.submit(c.post, "/embed", json={"inputs": [f"burst {i}"]})
                 for i in range(12)]
        responses = [f.result() for f in burst]
        assert [b.result().status_code for b in blockers] == [200, 200]
        statuses = [r.status_code for r in responses]
        assert set(statuses) <= {200, 429}, statuses
        assert 429 in statuses
        refused = next(r for r in responses if r.status_code == 429)
        assert refused.json()["error_type"] == "overloaded"
        assert "max_concurrent_requests=2" in refused.json()["error"]
        wait_for(lambda: metric(c, "seqenc_queue_requests") == 0, "the slots to free")
        assert c.post("/embed", json={"inputs": "after the burst"}).status_code == 200
        assert metric(c, "seqenc_requests_total", route="/embed", method="POST",
                      status="429") == statuses.count(429)


def read_http_response(sock: socket.socket) -> tuple[int, bytes]:
    """Status and body of one response on a connection the server closes after it."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_sigterm_finishes_in_flight_requests_then_exits_0(small_server, model):
    url = urlsplit(small_server.url)
    # A request whose body is half sent: in flight, and it stays so until we finish it.
    body = json.dumps({"inputs": ["drain me", "and me too"]}).encode()
    slow = socket.create_connection((url.hostname, url.port), timeout=WAIT)
    slow.sendall(b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:10])
    with small_server.client(api_key=None, timeout=300) as c, \
            concurrent.futures.ThreadPoolExecutor(2) as pool:
        heavy = pool.submit(c.post, "/embed", json={"inputs": heavy_texts(), "truncate": True})
        wait_for(lambda: metric(c, "seqenc_queue_requests") == 1, "the heavy request")
        small_server.terminate()

        def refused() -> bool:
            try:
                socket.create_connection((url.hostname, url.port), timeout=5).close()
            except ConnectionRefusedError:
                return True
            return False

        wait_for(refused, "the server to stop accepting connections", WAIT)
        assert small_server.proc.poll() is None  # still draining: the slow request is open
        slow.sendall(body[10:])
        status, reply = read_http_response(slow)
        slow.close()
        heavy_response = heavy.result()
    assert status == 200, reply
    np.testing.assert_allclose(json.loads(reply), model.encode(["drain me", "and me too"]),
                               atol=1e-6)
    assert heavy_response.status_code == 200 and len(heavy_response.json()) == 32
    assert small_server.proc.wait(WAIT) == 0
    output = small_server.output()
    assert "Traceback" not in output
    assert "Application shutdown complete" in output
