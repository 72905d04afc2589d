"""The explorer's API fuzzed from its own OpenAPI schema (schemathesis): whatever the schema
allows — and the malformed requests it derives — must never produce a server error.

Schemathesis is used through its Python API (a Hypothesis strategy per operation inside plain
tests), not through its pytest plugin's parametrization, which reaches into pytest internals
and broke with pytest 9.2 (``'Function' object has no attribute '_nodeid'``).
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from cnnlab.explorer import create_app


@pytest.fixture(scope="module")
def explorer_app(runs_root, data_dir):
    return create_app([runs_root / "lenet", runs_root / "cifar"], str(data_dir))


@pytest.fixture(scope="module")
def operations(explorer_app) -> list:
    schema = schemathesis.openapi.from_asgi("/openapi.json", explorer_app)
    return [result.ok() for result in schema.get_all_operations()]


def test_the_schema_lists_every_endpoint(operations):
    paths = {(op.method.upper(), op.path) for op in operations}
    assert {
        ("GET", "/api/runs"),
        ("GET", "/api/runs/{name}/summary"),
        ("POST", "/api/runs/{name}/analyze"),
        ("POST", "/api/runs/{name}/cam"),
        ("POST", "/api/runs/{name}/kernel"),
        ("POST", "/api/runs/{name}/explain"),
        ("POST", "/api/runs/{name}/gradient"),
        ("GET", "/api/runs/{name}/report"),
        ("POST", "/api/runs/{name}/upload"),
        ("GET", "/api/presets"),
        ("GET", "/api/arithmetic"),
        ("GET", "/api/backprop"),
        ("POST", "/api/runs/{name}/backprop"),
    } <= paths


def _fuzz(strategy, label: str, tried: dict[str, int], mode: GenerationMode) -> None:
    @settings(
        max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(case=strategy)
    def check(case) -> None:
        response = case.call()
        tried[label] = tried.get(label, 0) + 1
        assert response.status_code < 500, (label, case.body, response.text[:200])
        assert "Traceback" not in response.text
        if response.status_code >= 400:  # the page shows detail as it is: always a sentence
            assert isinstance(response.json()["detail"], str), (label, response.text[:200])

    try:
        check()
    except Unsatisfiable:  # nothing to make invalid (no body, no free parameter)
        if mode is GenerationMode.POSITIVE:
            raise


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_request_the_schema_allows_breaks_the_server(operations, mode):
    tried: dict[str, int] = {}
    for operation in operations:
        # most generated names would be unknown runs (404); aim at a real one
        fixed = {"name": "lenet"} if "{name}" in operation.path else None
        strategy = operation.as_strategy(generation_mode=mode, path_parameters=fixed)
        _fuzz(strategy, f"{operation.method.upper()} {operation.path}", tried, mode)
    labels = {f"{op.method.upper()} {op.path}" for op in operations}
    must = (
        labels
        if mode is GenerationMode.POSITIVE
        else {label for label in labels if label.startswith("POST") or "arithmetic" in label}
    )
    assert must <= set(tried), must - set(tried)
