"""Schema-driven fuzz of the live web API from its own OpenAPI document: never a 5xx.

schemathesis generates requests for every operation of `/api/openapi.json`
(paths, query strings, JSON bodies, with and without the admin token) and
checks each answer: no server error, a status code the document lists, a
body that matches the documented schema and content type. Bounded: at most
`EXAMPLES` generated cases per operation (about 20 operations).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from web_support import lab_and_web

EXAMPLES = 12


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    with lab_and_web(tmp_path_factory.mktemp("fuzz")) as (base, token, *_):
        yield base, token


@pytest.fixture(scope="module")
def web_schema(live_api: tuple[str, str]) -> schemathesis.BaseSchema:
    base, _token = live_api
    return schemathesis.openapi.from_url(f"{base}/api/openapi.json")


schema = schemathesis.pytest.from_fixture("web_schema")


def _check(case: schemathesis.Case, base: str, headers: dict[str, str]) -> None:
    response = case.call(base_url=base, headers=headers, timeout=30)
    assert response.status_code < 500, f"{case.method} {case.path}: {response.text[:500]}"
    case.validate_response(response)


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)


@schema.parametrize()
@FUZZ
def test_api_fuzz_without_token(case: schemathesis.Case, live_api: tuple[str, str]) -> None:
    _check(case, live_api[0], {})


@schema.parametrize()
@FUZZ
def test_api_fuzz_with_token(case: schemathesis.Case, live_api: tuple[str, str]) -> None:
    base, token = live_api
    _check(case, base, {"Authorization": f"Bearer {token}"})
