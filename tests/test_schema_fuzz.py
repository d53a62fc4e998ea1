"""Schemathesis requests generated from the OpenAPI schema, against a live server.

The schema (drf-spectacular, GET /api/schema) describes every API operation, so the
requests reach device registration and listing with a pay_admin token as well as the
bundle push. No generated request may get a 5xx response.

NOTE: schemathesis 4.32.5's pytest integration (schema.parametrize with from_fixture)
fails on pytest 9 (it sets Function._nodeid), so this test drives its Python API
(operation.as_strategy) with hypothesis directly.
"""

from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.battery import report

EXAMPLES_PER_OPERATION = 40


@pytest.mark.django_db(transaction=True)
def test_generated_requests_get_no_5xx(live_server, pay_admin_token):
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/schema", timeout=30)
    headers = {"Authorization": f"Bearer {pay_admin_token}"}
    answers: Counter = Counter()
    failures: list = []
    operations = [result.ok() for result in schema.get_all_operations()]

    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def call(case):
            response = case.call(base_url=live_server.url, headers=headers, timeout=60)
            answers[f"{response.status_code // 100}xx"] += 1
            if response.status_code >= 500:
                failures.append((case.method, case.path, case.body, response.text[:300]))

        call()

    report("Schemathesis over HTTP", operations=len(operations), cases=sum(answers.values()),
           **{key: answers[key] for key in ("2xx", "4xx", "5xx")})
    assert len(operations) >= 4
    assert answers["5xx"] == 0, failures[:10]
