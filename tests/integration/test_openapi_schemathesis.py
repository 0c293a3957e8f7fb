"""schemathesis, through its Python API, holds the running API to its own OpenAPI document.

The real app listens on a real socket, with the sandbox as PortOne, once as configured by default and
once with the redirect flow's URLs (which turn its answers into 303s). Every operation gets generated
requests that fit the document and requests that do not. A few requests are also built by hand so that
the success answers (200, 201, 204) and a replay (409) are checked too: random ids rarely get past
`prepare`. No answer may be a 5xx, and every status, content type and body must be one the document
promises for that operation.

schemathesis calls the API with `requests`, which blocks, while the servers run on the test's event
loop. So generation and calls run in a worker thread, and the loop keeps serving.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import Case as GenericCase
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.schemas import APIOperation as GenericOperation
from schemathesis.schemas import BaseSchema
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from idgate.domain import Role
from idgate.entrypoints.settings import Settings
from tests.conftest import Sandbox, SettingsFactory, prepared_certification, running_api
from tests.stores import api_token

Operation = GenericOperation[Any, Any, Any, Any]
Case = GenericCase[Operation]
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Per operation and per mode (fitting, not fitting): about 270 requests, a few seconds.
EXAMPLES = 25
SEEDED_SUBJECT = "acct-fuzz"


@dataclass
class Tally:
    """What the run sent and what came back, per operation."""

    operations: list[str] = field(default_factory=list)  # every operation the document describes
    statuses: dict[str, Counter[int]] = field(default_factory=dict)

    def record(self, case: Case, status: int) -> None:
        self.statuses.setdefault(f"{case.method} {case.path}", Counter())[status] += 1

    @property
    def requests(self) -> int:
        return sum(sum(counter.values()) for counter in self.statuses.values())

    def seen(self) -> set[int]:
        return {status for counter in self.statuses.values() for status in counter}


@dataclass(frozen=True)
class Seeds:
    """Values only a real flow can produce: prepared merchant_uids, PortOne imp_uids, API tokens."""

    verify: dict[str, Any]
    redirect: dict[str, Any]
    redirect_status: int  # 303 where the redirect flow has URLs, else 200 and the decision as JSON
    service_token: str
    admin_token: str
    reviewer_token: str


async def _token(settings: Settings, role: Role) -> str:
    return await api_token(settings, role, f"fuzz-{role.value}")


async def _seeds(api: httpx.AsyncClient, sandbox: Sandbox, settings: Settings) -> Seeds:
    return Seeds(
        verify=await prepared_certification(api, sandbox, "adult", SEEDED_SUBJECT),
        redirect=await prepared_certification(api, sandbox, "minor"),
        redirect_status=303 if settings.http.deny_url else 200,
        service_token=await _token(settings, Role.SERVICE),
        admin_token=await _token(settings, Role.ADMIN),
        reviewer_token=await _token(settings, Role.REVIEWER),
    )


def _exchange(case: Case, session: requests.Session, tally: Tally, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    response = case.call(session=session, headers=headers, timeout=10)
    tally.record(case, response.status_code)
    case.validate_response(response, checks=CHECKS)
    return response.status_code


def _run_seeded(schema: BaseSchema, seeds: Seeds, session: requests.Session, tally: Tally) -> None:
    verify = schema["/certifications"]["POST"]
    identity = schema["/identities/{subject}"]
    subject = {"subject": SEEDED_SUBJECT}
    expected = [
        (schema["/certifications/prepare"]["POST"].Case(body={"subject": "acct-other"}), None, 201),
        (verify.Case(body=seeds.verify, media_type="application/json"), None, 200),
        (verify.Case(body=seeds.verify, media_type="application/json"), None, 409),
        (schema["/certifications/redirect"]["GET"].Case(query=seeds.redirect), None, seeds.redirect_status),
        (identity["GET"].Case(path_parameters=subject), None, 401),
        (identity["GET"].Case(path_parameters=subject), seeds.admin_token, 403),
        (identity["GET"].Case(path_parameters=subject), seeds.service_token, 200),
        (identity["DELETE"].Case(path_parameters=subject), seeds.admin_token, 204),
        (identity["DELETE"].Case(path_parameters=subject), seeds.admin_token, 404),
    ]
    for case, token, status in expected:
        assert _exchange(case, session, tally, token) == status, f"{case.method} {case.path}"


def _fuzz(operation: Operation, mode: GenerationMode, tokens: list[str | None], **context: Any) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,  # a request's time is the server's, not the example's
        database=None,
        derandomize=True,  # the same requests on every run
        # No shrinking: a failure is reported as generated, so one cannot become minutes of minimising.
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(case=operation.as_strategy(generation_mode=mode), token=st.sampled_from(tokens))
    def exchange(case: Case, token: str | None) -> None:
        _exchange(case, token=token, **context)

    exchange()


def _modes(operation: Operation) -> list[GenerationMode]:
    """Requests that do not fit the document exist only where it constrains something."""
    inputs = [operation.path_parameters, operation.query, operation.headers, operation.body]
    if any(len(group) for group in inputs):
        return [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    return [GenerationMode.POSITIVE]


def _tokens(operation: Operation, seeds: Seeds) -> list[str | None]:
    """The token that lets the operation past authorisation first (Hypothesis favours early choices),
    so generated subjects reach validation and lookup; then none, and the other role's."""
    if operation.method.upper() == "DELETE":
        return [seeds.admin_token, None, seeds.service_token]
    if operation.path.startswith("/reviews"):
        return [seeds.reviewer_token, None, seeds.service_token]
    return [seeds.service_token, None, seeds.admin_token]  # ignored where no security is documented


def _run(base_url: str, seeds: Seeds) -> Tally:
    schema = schemathesis.openapi.from_url(f"{base_url}/schema/openapi.json")
    tally = Tally()
    with requests.Session() as session:
        _run_seeded(schema, seeds, session, tally)
        for result in schema.get_all_operations():
            assert isinstance(result, Ok), result  # the document itself is valid
            operation = result.ok()
            tally.operations.append(f"{operation.method.upper()} {operation.path}")
            for mode in _modes(operation):
                _fuzz(operation, mode, _tokens(operation, seeds), session=session, tally=tally)
    return tally


@pytest.mark.parametrize("redirect_urls", [False, True], ids=["default", "redirect-urls"])
async def test_every_answer_is_one_the_openapi_document_promises(
    sandbox: Sandbox, settings_for: SettingsFactory, redirect_urls: bool
) -> None:
    urls = {"allow_url": "https://shop.example/verified", "deny_url": "https://shop.example/refused"}
    settings = settings_for(sandbox, http=urls) if redirect_urls else settings_for(sandbox)
    async with running_api(settings) as api:
        seeds = await _seeds(api, sandbox, settings)
        started = time.monotonic()
        tally = await asyncio.to_thread(_run, str(api.base_url).rstrip("/"), seeds)
        elapsed = time.monotonic() - started
    print(f"\nschemathesis: {len(tally.operations)} operations, {tally.requests} requests in {elapsed:.1f}s")
    for operation, statuses in sorted(tally.statuses.items()):
        print(f"  {operation}: {dict(sorted(statuses.items()))}")
    assert sorted(tally.statuses) == sorted(tally.operations)  # each one was exercised
    assert {200, 201, 204, 400, 401, 403, 404, 409, seeds.redirect_status} <= tally.seen()
