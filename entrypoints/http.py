"""The HTTP entrypoint (Litestar): thin handlers that parse, call one use case and shape the answer."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from datetime import date, datetime
from importlib import resources
from string import Template
from typing import Any
from urllib.parse import urlencode, urlsplit

import msgspec
import structlog
from litestar import Litestar, MediaType, Response, delete, get, post
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.config import OpenAPIConfig
from litestar.params import FromHeader, FromPath, FromQuery, JSONBody
from litestar.plugins.problem_details import (
    ProblemDetailsConfig,
    ProblemDetailsException,
    ProblemDetailsPlugin,
)
from litestar.response import Redirect

import idgate
from idgate.domain import (
    CertificationAlreadyUsed,
    CertificationNotFound,
    ConfigurationError,
    Forbidden,
    IdentityNotFound,
    IdgateError,
    InvalidRequest,
    PolicyDecision,
    ProviderTimeout,
    ProviderUnavailable,
    Role,
    StoreUnavailable,
    Unauthenticated,
    VerificationRejected,
    VerifiedIdentity,
    services,
)

from .bootstrap import Container, running
from .settings import Settings

log = structlog.get_logger("idgate.http")

# Most specific first: the first matching class decides the status.
_STATUS: tuple[tuple[type[IdgateError], int], ...] = (
    (InvalidRequest, 400),
    (Unauthenticated, 401),
    (Forbidden, 403),
    (CertificationNotFound, 404),
    (IdentityNotFound, 404),
    (CertificationAlreadyUsed, 409),
    (VerificationRejected, 422),
    (ProviderTimeout, 504),
    (ProviderUnavailable, 502),
    (StoreUnavailable, 503),
    (ConfigurationError, 500),
)


def status_for(error: IdgateError) -> int:
    return next((status for kind, status in _STATUS if isinstance(error, kind)), 500)


# ---- wire schemas -------------------------------------------------------------------------------
class PrepareIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    subject: str | None = None


class PrepareOut(msgspec.Struct, kw_only=True):
    merchant_uid: str
    expires_at: datetime


class VerifyIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    imp_uid: str
    merchant_uid: str | None = None
    subject: str | None = None


class Reason(msgspec.Struct, kw_only=True):
    policy: str
    version: str
    outcome: str
    code: str
    message: str
    enforced: bool


class DecisionOut(msgspec.Struct, kw_only=True):
    decision_id: str
    verdict: str
    reasons: list[Reason]
    imp_uid: str
    decided_at: datetime
    policy_set: str


def decision_out(decision: PolicyDecision) -> DecisionOut:
    return DecisionOut(
        decision_id=decision.decision_id,
        verdict=decision.verdict.value,
        reasons=[
            Reason(
                policy=r.policy,
                version=r.version,
                outcome=r.outcome.value,
                code=r.code,
                message=r.message,
                enforced=r.enforced,
            )
            for r in decision.results
        ],
        imp_uid=decision.imp_uid,
        decided_at=decision.decided_at,
        policy_set=decision.policy_set,
    )


# ---- handlers -----------------------------------------------------------------------------------
async def _verify(
    container: NamedDependency[Container], imp_uid: str, merchant_uid: str | None, subject: str | None
) -> PolicyDecision:
    decision = await container.verify(imp_uid, merchant_uid, subject)
    log.info("decision", decision_id=decision.decision_id, verdict=decision.verdict.value)
    return decision


@post("/certifications/prepare", status_code=201, summary="Issue a single-use merchant_uid")
async def prepare_certification(
    container: NamedDependency[Container], data: JSONBody[PrepareIn]
) -> PrepareOut:
    prepared = await services.prepare(
        subject=data.subject, store=container.store, clock=container.clock, rules=container.rules
    )
    return PrepareOut(merchant_uid=prepared.merchant_uid, expires_at=prepared.expires_at)


@post("/certifications", status_code=200, summary="Verify an imp_uid and decide")
async def verify_certification(
    container: NamedDependency[Container], data: JSONBody[VerifyIn]
) -> DecisionOut:
    return decision_out(await _verify(container, data.imp_uid, data.merchant_uid, data.subject))


@get("/certifications/redirect", summary="Redirect flow: verify, then send the browser on")
async def verify_redirect(
    container: NamedDependency[Container],
    imp_uid: FromQuery[str],
    merchant_uid: FromQuery[str | None] = None,
    subject: FromQuery[str | None] = None,
) -> Response[Any]:
    http = container.settings.http
    try:
        decision = await _verify(container, imp_uid, merchant_uid, subject)
    except IdgateError as error:
        if not http.deny_url:
            raise
        return Redirect(_with_query(http.deny_url, {"error": error.code}), status_code=303)
    target = http.allow_url if decision.verdict.value == "allow" else http.deny_url
    if not target:
        return Response(decision_out(decision))
    query = {"decision_id": decision.decision_id, "verdict": decision.verdict.value}
    return Redirect(_with_query(target, query), status_code=303)


def _with_query(url: str, params: Mapping[str, str]) -> str:
    return url + ("&" if urlsplit(url).query else "?") + urlencode(params)


class IdentityOut(msgspec.Struct, kw_only=True):
    subject: str
    name: str
    birth_date: date
    gender: str | None
    phone: str | None
    carrier: str | None
    is_foreigner: bool | None
    provider: str
    certified_at: datetime


def identity_out(identity: VerifiedIdentity) -> IdentityOut:
    return IdentityOut(
        subject=identity.subject,
        name=identity.name,
        birth_date=identity.birth_date,
        gender=identity.gender.value if identity.gender else None,
        phone=identity.phone,
        carrier=identity.carrier.value if identity.carrier else None,
        is_foreigner=identity.is_foreigner,
        provider=identity.provider,
        certified_at=identity.certified_at,
    )


def _bearer(authorization: str | None) -> str | None:
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return None


@get("/identities/{subject:str}", summary="Read the verified identity bound to a subject (role service)")
async def read_identity(
    container: NamedDependency[Container],
    subject: FromPath[str],
    authorization: FromHeader[str | None] = None,
) -> IdentityOut:
    accessor = await services.authorize(_bearer(authorization), Role.SERVICE, tokens=container.tokens)
    return identity_out(await services.read_identity(subject, accessor=accessor, vault=container.vault))


@delete("/identities/{subject:str}", status_code=204, summary="Erase a subject's identity (role admin)")
async def erase_identity(
    container: NamedDependency[Container],
    subject: FromPath[str],
    authorization: FromHeader[str | None] = None,
) -> None:
    accessor = await services.authorize(_bearer(authorization), Role.ADMIN, tokens=container.tokens)
    await services.erase_identity(subject, accessor=accessor, vault=container.vault)
    log.info("identity_erased", by=accessor.name)


@get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", summary="Readiness: the store answers and PortOne accepts our credentials")
async def readyz(container: NamedDependency[Container]) -> Response[dict[str, Any]]:
    checks: dict[str, str] = {}
    for name, check in container.readiness.items():
        try:
            await check()
            checks[name] = "ok"
        except IdgateError as error:
            checks[name] = error.code
    ready = all(v == "ok" for v in checks.values())
    return Response(
        {"status": "ready" if ready else "not_ready", "checks": checks}, status_code=200 if ready else 503
    )


@get("/demo", media_type=MediaType.HTML, include_in_schema=False)
async def demo_page(container: NamedDependency[Container]) -> Response[str]:
    http = container.settings.http
    if not http.demo_page:
        raise HTTPException(status_code=404, detail="the demo page is enabled only by `idgate demo`")
    page = Template(resources.files("idgate.entrypoints").joinpath("demo.html").read_text("utf-8"))
    return Response(page.substitute(sandbox_url=http.sandbox_url.rstrip("/")), media_type=MediaType.HTML)


# ---- errors as problem details ------------------------------------------------------------------
def _domain_problem(error: IdgateError) -> ProblemDetailsException:
    status = status_for(error)
    if status >= 500:
        log.warning("request_failed", code=error.code, status=status)
    return ProblemDetailsException(
        status_code=status,
        title=error.code.replace("_", " "),
        detail=error.message,
        extra={"code": error.code},
        headers={"WWW-Authenticate": "Bearer"} if status == 401 else None,
    )


def _validation_problem(error: ValidationException) -> ProblemDetailsException:
    return ProblemDetailsException(
        status_code=400,
        title="invalid request",
        detail="the request body or parameters are not valid; see `errors` for what to fix.",
        extra={"code": "invalid_request", "errors": error.extra or []},
    )


def _http_problem(error: HTTPException) -> ProblemDetailsException:
    code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
    return ProblemDetailsException(status_code=error.status_code, detail=error.detail, extra={"code": code})


def _unexpected_problem(error: Exception) -> ProblemDetailsException:
    # The type only: messages of unexpected errors may quote request data.
    log.error("unexpected_error", error_type=type(error).__name__)
    return ProblemDetailsException(
        status_code=500,
        detail="idgate hit an unexpected error; the operator can find it in the logs.",
        extra={"code": "internal_error"},
    )


def create_app(settings: Settings, **ports: Any) -> Litestar:
    """The Litestar app. `ports` go to `running()`; tests pass fakes there."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with running(settings, **ports) as container:
            app.state.container = container
            yield

    def provide_container(state: State) -> Container:
        container: NamedDependency[Container] = state.container
        return container

    cors = settings.http.cors_origins
    return Litestar(
        route_handlers=[
            prepare_certification,
            verify_certification,
            verify_redirect,
            read_identity,
            erase_identity,
            healthz,
            readyz,
            demo_page,
        ],
        lifespan=[lifespan],
        dependencies={"container": Provide(provide_container, sync_to_thread=False)},
        plugins=[
            ProblemDetailsPlugin(
                ProblemDetailsConfig(
                    exception_to_problem_detail_map={
                        IdgateError: _domain_problem,
                        ValidationException: _validation_problem,
                        HTTPException: _http_problem,
                        Exception: _unexpected_problem,
                    }
                )
            )
        ],
        cors_config=CORSConfig(
            allow_origins=cors, allow_methods=["GET", "POST"], allow_headers=["content-type"]
        )
        if cors
        else None,
        openapi_config=OpenAPIConfig(title="idgate", version=idgate.__version__, path="/schema"),
    )
