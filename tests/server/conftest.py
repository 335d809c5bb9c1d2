"""Server test fixtures: one real server subprocess shared by the whole session."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from .support import API_KEY, CORPUS, PAYLOAD_LIMIT, SENTENCES, ServerProcess


@pytest.fixture(scope="session")
def server() -> Iterator[ServerProcess]:
    """The shared server: API key required, payload limit PAYLOAD_LIMIT, defaults otherwise."""
    with ServerProcess.ready("--api-key", API_KEY, "--payload-limit", str(PAYLOAD_LIMIT),
                             "--log-level", "warning", "--threads", "1") as proc:
        yield proc


@pytest.fixture(scope="session")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


@pytest.fixture(scope="session")
def model():
    from seqenc.model import SentenceEncoder

    return SentenceEncoder.from_pretrained(None)


@pytest.fixture(scope="session")
def corpus() -> list[str]:
    """Real sentences from the shared benchmark corpus, or the built-in few without it."""
    if CORPUS.exists():
        lines = [line for line in CORPUS.read_text(encoding="utf-8").splitlines() if line]
        return lines[:64]
    return SENTENCES * 8

