"""Schemathesis against the app's own OpenAPI schema: no 500s, responses as documented.

The daemon allows no root here, so every generated trace request is refused (403) instead of
running commands: the generator explores the API, not the machine.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
)

from .conftest import AUTH, make_client


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx: schemathesis.SerializationContext, value: object) -> bytes:
    return str(value).encode("utf-8", "surrogatepass")


_tmp = Path(tempfile.mkdtemp(prefix="minicon-schema-"))
_client = make_client(_tmp, [])
schema = schemathesis.openapi.from_asgi("/openapi.json", _client.app)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms(case: schemathesis.Case) -> None:
    case.call_and_validate(
        headers=AUTH,
        checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
    )
