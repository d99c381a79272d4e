"""schemathesis against the app's own OpenAPI document, with a fixed budget per operation:
no 5xx, and every response conforms to the documented status codes, content types and schemas.

Requests carry a valid API key of a client with every scope, so generated calls get past
authentication and exercise validation and the services.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

EXAMPLES_PER_OPERATION = 4
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def test_every_operation_answers_within_its_documented_contract(world):
    world.member(points=100)
    schema = schemathesis.openapi.from_asgi("/openapi.json", world.http.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 15
    failures: list[str] = []

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def exercise(case):
            response = case.call(headers=world.a.headers)
            case.validate_response(response, checks=CHECKS)

        try:
            exercise()
        except Exception as failure:
            failures.append(f"{operation.label}: {failure}"[:2000])

    assert not failures, "\n\n".join(failures)
