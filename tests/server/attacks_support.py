"""Helpers for the attack tests (issue 17's attacks, split by kind into test_attacks_*.py):
the limits the attacked server runs with, raw sockets, peak memory.
The server itself is conftest's ``target`` fixture."""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from .support import ServerProcess

READ_TIMEOUT = 1.5  # the server's --read-timeout here: short, so that stalls end soon
BOUND = 60.0  # bounds every wait; a server that never closes fails the test at this bound
PAYLOAD = 200_000
BUFFERED = 300_000
MAX_CONNECTIONS = 16
JSON = {"Content-Type": "application/json"}


def address(server: ServerProcess) -> tuple[str, int]:
    url = urlsplit(server.url)
    return url.hostname or "127.0.0.1", url.port or 80


def post_raw(client: httpx.Client, route: str, body: bytes) -> httpx.Response:
    return client.post(route, content=body, headers=JSON)


def closed_by_server(sock: socket.socket, timeout: float = BOUND) -> bytes:
    """Everything the server sends until it closes the connection; fails after ``timeout``."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        pytest.fail(f"the server kept the connection open for {timeout}s")
    except ConnectionResetError:
        pass
    return data


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def reset_peak_rss(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # Linux: VmHWM := current RSS
