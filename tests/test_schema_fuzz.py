"""Schemathesis against the server's own OpenAPI document, on a fresh server.

Every operation of `GET /schema/openapi.json` except the Cognito settings is
called with inputs that Schemathesis generates from the document, valid and
invalid, with the agent and admin tokens sent. No request may get a 5xx, and
every error body must be the server's JSON error.

NOTE: the document declares path parameters only (no request bodies, no
query parameters), so generated requests vary the path. The bodies and
queries are covered by tests/test_hostile_inputs.py.

The operations run through `as_strategy` rather than the pytest plugin,
because `schemathesis.pytest.from_fixture` of Schemathesis 4.32.5 uses
`Node._nodeid`, which pytest 9.2 no longer has.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.conftest import ServerProcess

NOW = "2025-03-16T12:00:00Z"
NODE = "node-1"
WALL_TIME_S = 240
MAX_EXAMPLES = 100
# Calls that could lock the test out of its own server or turn Cognito on.
LOCKOUT_PATHS = ("/api/v1/security/cognito",)
LOCKOUT_KEY_PREFIXES = ("security.", "addr")


@pytest.fixture
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("fuzz") / "data", now=NOW).start()
    with server.client() as http:
        node = {"id": NODE, "hostName": "host-1"}
        assert http.post("/api/v1/node", json=node).status_code == 200
        assert http.put(f"/nodes/{NODE}/a.log", content=b"a\n").status_code == 204
    yield server
    server.stop()


def changes_security(case: Any) -> bool:
    """Tell whether a configKV body sets a key that could lock the test out."""
    if case.path != "/api/v1/configKV" or not isinstance(case.body, dict):
        return False
    kv_map = case.body.get("kvMap")
    if not isinstance(kv_map, dict):
        return False
    return any(
        isinstance(key, str) and key.startswith(LOCKOUT_KEY_PREFIXES) for key in kv_map
    )


def security_settings(server: ServerProcess) -> tuple[Any, Any]:
    with server.client() as http:
        config = http.get("/api/v1/config").json()
    return config["addr"], config["security"]


def label_of(operation: Any) -> str:
    return f"{operation.method.upper()} {operation.path}"


def fuzz_operation(
    operation: Any,
    mode: GenerationMode,
    path_parameters: dict[str, str],
    *,
    tokens: dict[str, str],
    deadline: float,
    statuses: Counter[tuple[str, int]],
) -> None:
    """Send up to MAX_EXAMPLES generated requests of one operation, counting statuses."""
    label = label_of(operation)

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
    )
    @given(case=operation.as_strategy(mode, path_parameters=path_parameters))
    def call(case: Any) -> None:
        # Examples past the deadline are generated but not sent.
        if time.monotonic() > deadline or changes_security(case):
            return
        response = case.call(headers=tokens, timeout=30)
        statuses[(label, response.status_code)] += 1
        assert response.status_code < 500, (
            case.method,
            response.request.url,
            response.text[:500],
        )
        if response.status_code >= 400 and response.content:
            error = json.loads(response.content)
            assert error["statusCode"] == response.status_code
            assert isinstance(error["message"], str)

    # A document without constraints has no invalid value for a plain string
    # parameter, so a negative run may have nothing to send.
    with contextlib.suppress(Unsatisfiable):
        call()


@pytest.mark.timeout(WALL_TIME_S + 60)
def test_schema_operations_no_server_error(fuzz_server: ServerProcess):
    schema = schemathesis.openapi.from_url(f"{fuzz_server.url}/schema/openapi.json")
    tokens = fuzz_server.tokens()
    security_before = security_settings(fuzz_server)
    deadline = time.monotonic() + WALL_TIME_S
    statuses: Counter[tuple[str, int]] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    tested = [op for op in operations if op.path not in LOCKOUT_PATHS]
    assert len(tested) >= 20

    for operation in tested:
        # Random node ids only reach the 404 of an unknown node, so the node
        # routes also run with the registered node and generated file paths.
        fixed: list[dict[str, str]] = [{}]
        if "{node_id}" in operation.path:
            fixed.append({"node_id": NODE})
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for path_parameters in fixed:
                fuzz_operation(
                    operation,
                    mode,
                    path_parameters,
                    tokens=tokens,
                    deadline=deadline,
                    statuses=statuses,
                )

    reached = {label for label, _ in statuses}
    assert reached == {label_of(operation) for operation in tested}
    assert sum(statuses.values()) >= 10 * len(tested), statuses
    assert security_settings(fuzz_server) == security_before
    with fuzz_server.client() as http:
        assert http.post("/api/v1/node", json={"id": "node-2"}).status_code == 200
