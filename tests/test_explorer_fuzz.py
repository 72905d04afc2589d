"""The explorer's API fuzzed from its own OpenAPI schema (schemathesis): whatever the schema
allows — and the malformed bodies it derives — must never produce a server error."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from cnnlab.explorer import create_app


@pytest.fixture(scope="module")
def explorer_app(runs_root, data_dir):
    return create_app([runs_root / "lenet", runs_root / "cifar"], str(data_dir))


@pytest.fixture
def api_schema(explorer_app):
    return schemathesis.openapi.from_asgi("/openapi.json", explorer_app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_the_schema_allows_breaks_the_server(case):
    if "{name}" in case.path:  # most generated names are unknown runs (404); aim at real ones
        case.path_parameters = {**(case.path_parameters or {}), "name": "lenet"}
    response = case.call()
    assert response.status_code < 500, (case.path, response.text[:200])
    assert "Traceback" not in response.text
