"""OpenAPI-driven fuzzing: schemathesis generates requests from the app's OpenAPI document
(valid ones and deliberately invalid ones), sends them to the real server, and checks that
none gets a 5xx and every response matches the documented status codes, content types and
schemas."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

schemathesis = pytest.importorskip("schemathesis", reason="pip install -e '.[dev]'")
from schemathesis.checks import positive_data_acceptance  # noqa: E402

from seqenc.server.app import create_app  # noqa: E402
from seqenc.server.settings import Settings  # noqa: E402

from .support import API_KEY  # noqa: E402

# The document the shared server serves at /openapi.json (it has an API key, so the document
# declares bearer auth); building the app loads no model. Loading it from the running server
# would need the schema at collection time, before any fixture has started a server.
schema = schemathesis.openapi.from_dict(
    create_app(lambda: None, Settings(api_key=API_KEY)).openapi())


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzz(case, server):
    # Some limits cannot be written in JSON Schema: an input's length in tokens, token ids
    # inside the vocabulary, max_client_batch_size and dimensions <= the model's (set at run
    # time). Schema-valid requests over them get a documented 422, so "every schema-valid
    # request is accepted" is not checked; everything else is.
    case.call_and_validate(base_url=server.url,
                           headers={"Authorization": f"Bearer {API_KEY}"},
                           excluded_checks=[positive_data_acceptance])
