"""Helpers for the server tests: the real server (``python -m seqenc.server``) in a subprocess
on 127.0.0.1, on a port it picks itself; an app under uvicorn in a thread of the test process
(where a test must hold the model still); reading /metrics; bounded polling."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

API_KEY = "test-key-3f9a"
PAYLOAD_LIMIT = 200_000
STARTUP_TIMEOUT = 180.0  # a bound on waiting, never an assertion on speed
CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "bench" / "corpus.txt"

SENTENCES = [
    "A man is playing a guitar.",
    "A plane is taking off.",
    "Stocks fell sharply on Wall Street after the report.",
    "The cat sat on the mat.",
    "  spaces around  ",
    "Ünïcödé wörks, 東京 too — and emoji 🙂.",
    "short",
    "A longer sentence that talks about the weather in the mountains and the valleys below.",
]
LONG_TEXT = " ".join(f"word{i % 50} is here" for i in range(200)) + " and this is the very end"


def heavy_texts(n: int = 32) -> list[str]:
    """n texts of 256 tokens once truncated: 32 of them fill one forward pass of the default
    8192-token budget, which holds the worker for a good while on CPU."""
    return [f"{i} " + LONG_TEXT for i in range(n)]


class ServerProcess:
    """``python -m seqenc.server ARGS`` with its output in a temp file; ``launcher`` replaces
    ``python -m seqenc.server`` (a zipapp, say), ``env`` the environment."""

    def __init__(self, *args: str, launcher: list[str] | None = None,
                 env: dict[str, str] | None = None):
        self.log_path = Path(tempfile.mkstemp(prefix="seqenc-serve-", suffix=".log")[1])
        self._log = self.log_path.open("wb")
        cmd = [*(launcher or [sys.executable, "-m", "seqenc.server"]), "--host", "127.0.0.1",
               "--port", "0", *args]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env)
        self.url = self._wait_for_port()

    @classmethod
    @contextmanager
    def ready(cls, *args: str, **kwargs) -> Iterator[ServerProcess]:
        """A server that answers /health, stopped on the way out (SIGTERM, then kill)."""
        proc = cls(*args, **kwargs)
        try:
            proc.wait_ready()
            yield proc
        finally:
            proc.stop()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _wait_for_port(self) -> str:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            found = re.search(r"seqenc: listening on (http://127\.0\.0\.1:\d+)", self.output())
            if found:
                return found.group(1)
            if self.proc.poll() is not None:
                pytest.fail(f"server exited with {self.proc.returncode}:\n{self.output()}")
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"server printed no address in {STARTUP_TIMEOUT}s:\n{self.output()}")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    pytest.fail(f"server exited with {self.proc.returncode}:\n{self.output()}")
                try:
                    if client.get("/health").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        pytest.fail(f"server not healthy within {STARTUP_TIMEOUT}s:\n{self.output()}")

    def client(self, api_key: str | None = API_KEY, timeout: float = 120) -> httpx.Client:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        self.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
        self.log_path.unlink(missing_ok=True)


OPENAI_ROUTES = frozenset({"/v1/embeddings", "/embeddings"})


def error_body(response: httpx.Response) -> dict[str, str]:
    """An error response as ``{"error": message, "error_type": type}``, after checking its
    exact shape: OpenAI's routes answer OpenAI's ``{"error": {"message", "type", "param",
    "code"}}`` (what the openai SDK reads), every other route seqenc's own."""
    body = response.json()
    if response.request.url.path in OPENAI_ROUTES:
        assert set(body) == {"error"}, body
        assert set(body["error"]) == {"message", "type", "param", "code"}, body
        return {"error": body["error"]["message"], "error_type": body["error"]["type"]}
    assert set(body) == {"error", "error_type"}, body
    return body


def metric(client: httpx.Client, name: str, **labels: str) -> float:
    """One sample from /metrics (0 if absent)."""
    text = client.get("/metrics").text
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        sample, _, label_text = key.partition("{")
        if sample == name and ",".join(sorted(label_text.rstrip("}").split(","))) == want:
            return float(value)
    return 0.0


def wait_for(predicate, what: str, timeout: float = 60.0) -> None:
    """Poll ``predicate`` until true; fail (not hang) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


@contextmanager
def running(app, wait: float = 120.0) -> Iterator[str]:
    """The app under uvicorn in a thread of this process, on a free loopback port."""
    import uvicorn

    from seqenc.server.cli import bind_socket

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    sock = bind_socket("127.0.0.1", 0)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(wait)
