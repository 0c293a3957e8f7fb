"""The HTTP entrypoint (Litestar): thin handlers that parse, call one use case and shape the answer."""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import AsyncIterator, Mapping
from http import HTTPStatus
from importlib import resources
from pathlib import Path
from string import Template
from typing import Annotated, Any
from urllib.parse import unquote, urlencode, urlsplit

import stopments
import structlog
from litestar import HttpMethod, Litestar, MediaType, Request, Response, delete, get, post, route
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.plugins import StoplightRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody
from litestar.plugins.problem_details import (
    ProblemDetailsConfig,
    ProblemDetailsException,
    ProblemDetailsPlugin,
)
from litestar.plugins.prometheus import PrometheusController
from litestar.response import Redirect
from litestar.static_files import create_static_files_router

import idgate
from idgate.domain import (
    AccessTokens,
    CertificationProvider,
    Channel,
    Claims,
    Clock,
    IdgateError,
    InvalidRequest,
    PolicyDecision,
    PolicyEvaluator,
    Role,
    TooManyRequests,
    services,
)

from . import audit_api, reviews_api
from .bootstrap import Container, IdentityStore, bootstrap
from .errors import answer_for
from .housekeeping import housekeeping
from .middleware import BodyDeadline
from .schemas import (
    IMP_UID_PARAMETER,
    MERCHANT_UID_PARAMETER,
    REQUIRES_API_TOKEN,
    SECURITY_SCHEME,
    SUBJECT_PARAMETER,
    DecisionOut,
    Health,
    IdentityOut,
    PrepareIn,
    PrepareOut,
    Readiness,
    VerifyIn,
    bearer_token,
    decision_out,
    identity_out,
    problems,
)
from .settings import Settings

log = structlog.get_logger("idgate.http")

# The docs page (Stoplight Elements) loads its script and styles from idgate itself, from the files the
# `stopments` package ships, so /schema works offline. Elements reads OpenAPI 3.1, which Litestar
# writes; Swagger UI before 5.0 refuses it ("Unable to render this definition").
DOCS_ASSETS = "/schema/assets"
DOCS_ASSET_FILES = Path(stopments.__file__).parent / "static"


class JsonRequest(Request[Any, Any, Any]):
    """A request whose JSON body is held to the rules before any handler sees it.

    Only JSON is accepted as JSON (415 otherwise), and a body msgspec cannot decode for reasons it
    raises as RecursionError (nesting too deep) or UnicodeDecodeError (invalid UTF-8 in a string)
    is a 400 like any other malformed body, not an unexpected error.
    """

    async def json(self) -> Any:
        media_type, _ = self.content_type
        if media_type != "application/json" and not media_type.endswith("+json"):
            raise HTTPException(
                status_code=415,
                detail="send the body as JSON with the header `Content-Type: application/json`.",
            )
        try:
            return await super().json()
        except SerializationException as exc:
            if (
                "UTF-8" in exc.detail
            ):  # msgspec 0.23 reports it so; earlier releases raised UnicodeDecodeError
                raise _not_utf8() from None
            # msgspec's reason names a position, never the content.
            raise InvalidRequest(f"the body is not valid JSON ({exc.detail}); send a JSON object.") from None
        except RecursionError:
            raise InvalidRequest("the JSON body is nested too deeply; send a flat JSON object.") from None
        except UnicodeDecodeError:
            raise _not_utf8() from None


def _not_utf8() -> InvalidRequest:
    return InvalidRequest("the JSON body is not valid UTF-8; send it encoded as UTF-8.")


# ---- verification -------------------------------------------------------------------------------
async def _verify(
    container: NamedDependency[Container],
    imp_uid: str,
    merchant_uid: str | None,
    subject: str | None,
    channel: Channel,
    *,
    claims: Claims | None = None,
) -> PolicyDecision:
    decision = await container.verify(imp_uid, merchant_uid, subject, channel=channel, claims=claims)
    log.info("decision", decision_id=decision.decision_id, verdict=decision.verdict.value)
    return decision


@post(
    "/certifications/prepare",
    status_code=201,
    summary="Issue a single-use merchant_uid",
    description="Limited per client address ([http] prepare_rate_limit, shared by every worker): "
    "beyond it 429 with Retry-After.",
    responses=problems(408, 409, 415, 429, 503),
)
async def prepare_certification(
    container: NamedDependency[Container], request: Request[Any, Any, Any], data: JSONBody[PrepareIn]
) -> PrepareOut:
    # The peer's address, or the client's that a trusted proxy named ([http] forwarded_allow_ips).
    client = request.client.host if request.client else None
    prepared = await container.prepare(data.subject, client)
    return PrepareOut(merchant_uid=prepared.merchant_uid, expires_at=prepared.expires_at)


@post(
    "/certifications",
    status_code=200,
    summary="Verify an imp_uid and decide",
    description="`claims` (optional) are what the user typed into your form; policies such as "
    "identity_match compare them with the certified values. They are never stored, logged or echoed. "
    "The redirect flow takes no claims: they would travel in a URL.",
    responses=problems(404, 408, 409, 415, 422, 502, 503, 504),
)
async def verify_certification(
    container: NamedDependency[Container], data: JSONBody[VerifyIn]
) -> DecisionOut:
    claims = data.claims.to_claims() if data.claims else None
    return decision_out(
        await _verify(container, data.imp_uid, data.merchant_uid, data.subject, Channel.HTTP, claims=claims)
    )


@get(
    "/certifications/redirect",
    summary="Redirect flow: verify, then send the browser on",
    description="Answers 303 to the configured allow_url or deny_url, or the decision as JSON when "
    "none is configured.",
    responses={
        303: ResponseSpec(data_container=None, description="the browser is sent to allow_url or deny_url"),
        **problems(404, 409, 422, 502, 503, 504),
    },
)
async def verify_redirect(
    container: NamedDependency[Container],
    imp_uid: FromQuery[str] = IMP_UID_PARAMETER,
    # Annotated with a default, not `= PARAMETER`: a parameter without a default is documented as required.
    merchant_uid: Annotated[str | None, MERCHANT_UID_PARAMETER] = None,
    subject: Annotated[str | None, SUBJECT_PARAMETER] = None,
) -> Response[DecisionOut]:
    http = container.settings.http
    try:
        decision = await _verify(container, imp_uid, merchant_uid, subject, Channel.REDIRECT)
    except IdgateError as error:
        if not http.deny_url:
            raise
        _log_failure(error)
        return Redirect(_with_query(http.deny_url, {"error": error.code}), status_code=303)
    target = http.allow_url if decision.verdict.value == "allow" else http.deny_url
    if not target:
        return Response(decision_out(decision))
    query = {"decision_id": decision.decision_id, "verdict": decision.verdict.value}
    return Redirect(_with_query(target, query), status_code=303)


def _with_query(url: str, params: Mapping[str, str]) -> str:
    return url + ("&" if urlsplit(url).query else "?") + urlencode(params)


# ---- identities ---------------------------------------------------------------------------------
IDENTITY_PATH = "/identities/{subject:str}"

BearerToken = Annotated[str | None, HeaderParameter(name="Authorization", include_in_schema=False)]


def _subject_as_sent(request: Request[Any, Any, Any], subject: str) -> str:
    """The router drops a trailing slash, and decodes %2F before matching: `acct-1/` and `acct-1%2F`
    would both reach `acct-1`. Only the path exactly as sent may name a subject."""
    last_segment = request.scope.get("raw_path", b"").decode("latin-1").rsplit("/", 1)[-1]
    if unquote(last_segment) != subject:
        raise InvalidRequest("the path must end with the subject itself, with no trailing / or %2F.")
    return subject


@get(
    IDENTITY_PATH,
    summary="Read the verified identity bound to a subject (role service)",
    security=REQUIRES_API_TOKEN,
    responses=problems(401, 403, 404, 503),
)
async def read_identity(
    container: NamedDependency[Container],
    request: Request[Any, Any, Any],
    subject: FromPath[str] = SUBJECT_PARAMETER,
    authorization: BearerToken = None,
) -> IdentityOut:
    subject = _subject_as_sent(request, subject)
    accessor = await services.authorize(bearer_token(authorization), Role.SERVICE, tokens=container.tokens)
    return identity_out(await services.read_identity(subject, accessor=accessor, vault=container.vault))


@delete(
    IDENTITY_PATH,
    status_code=204,
    summary="Erase a subject's identity (role admin)",
    security=REQUIRES_API_TOKEN,
    responses=problems(401, 403, 404, 503),
)
async def erase_identity(
    container: NamedDependency[Container],
    request: Request[Any, Any, Any],
    subject: FromPath[str] = SUBJECT_PARAMETER,
    authorization: BearerToken = None,
) -> None:
    subject = _subject_as_sent(request, subject)
    accessor = await services.authorize(bearer_token(authorization), Role.ADMIN, tokens=container.tokens)
    await services.erase_identity(subject, accessor=accessor, vault=container.vault)
    log.info("identity_erased", by=accessor.name)


# Litestar answers OPTIONS with a handler it makes for the first route of a path. When another handler
# joins the path, the route is rebuilt around that same OPTIONS handler, whose `Allow` still names only
# the first route's methods (litestar 2.25): GET and DELETE came out as "GET, OPTIONS". CORS is not the
# cause: preflights never reach a route (CORSMiddleware answers them from `allow_methods`). This handler
# is registered before the others, so Litestar makes none, and it names every method of the path.
_IDENTITY_METHODS = ", ".join(sorted({*read_identity.http_methods, *erase_identity.http_methods, "OPTIONS"}))


@route(IDENTITY_PATH, http_method=[HttpMethod.OPTIONS], include_in_schema=False, status_code=204)
async def identity_options(subject: FromPath[str]) -> Response[None]:
    return Response(None, status_code=204, headers={"Allow": _IDENTITY_METHODS})


# ---- operations ---------------------------------------------------------------------------------
@get("/healthz", summary="Liveness")
async def healthz() -> Health:
    return Health(status="ok")


@get(
    "/readyz",
    summary="Readiness: the store answers, the keyring fits it, PortOne accepts our credentials",
    responses={
        503: ResponseSpec(data_container=Readiness, description="a check failed; `checks` says which")
    },
)
async def readyz(container: NamedDependency[Container]) -> Response[Readiness]:
    checks: dict[str, str] = {}
    for name, check in container.readiness.items():
        try:
            await check()
            checks[name] = "ok"
        except IdgateError as error:
            checks[name] = error.code
    ready = all(v == "ok" for v in checks.values())
    return Response(
        Readiness(status="ready" if ready else "not_ready", checks=checks), status_code=200 if ready else 503
    )


class MetricsController(PrometheusController):
    """`GET /metrics`: Prometheus text format; with several workers, all workers' counts added up."""

    include_in_schema = False


@get("/demo", media_type=MediaType.HTML, include_in_schema=False)
async def demo_page(container: NamedDependency[Container]) -> Response[str]:
    http = container.settings.http
    if not http.demo_page:
        raise HTTPException(status_code=404, detail="the demo page is enabled only by `idgate demo`")
    page = Template(resources.files("idgate.entrypoints").joinpath("demo.html").read_text("utf-8"))
    return Response(page.substitute(sandbox_url=http.sandbox_url.rstrip("/")), media_type=MediaType.HTML)


# ---- errors as problem details ------------------------------------------------------------------
def _log_failure(error: IdgateError) -> str | None:
    """Write the error's log line; returns the reference a 5xx answer gives the client."""
    answer = answer_for(error)
    if answer.status < 500:
        log.info("request_refused", code=error.code, status=answer.status)  # the message may echo input
        return None
    # The message is for the operator (it may name files, keys or rows); the client gets the
    # category's title and a reference that finds the log line.
    reference = secrets.token_hex(8)
    log.error(
        "request_failed", code=error.code, status=answer.status, reference=reference, detail=error.message
    )
    return reference


def _domain_problem(error: IdgateError) -> ProblemDetailsException:
    answer = answer_for(error)
    reference = _log_failure(error)
    if reference is not None:
        return ProblemDetailsException(
            status_code=answer.status,
            title=answer.title,
            detail=f"{answer.title}; the operator can find reference {reference} in idgate's log.",
            extra={"code": error.code, "reference": reference},
        )
    headers = {"WWW-Authenticate": "Bearer"} if answer.status == 401 else None
    if isinstance(error, TooManyRequests):
        headers = {"Retry-After": str(error.retry_after_seconds)}
    return ProblemDetailsException(
        status_code=answer.status,
        title=answer.title,
        detail=error.message,
        extra={"code": error.code},
        headers=headers,
    )


def _validation_problem(error: ValidationException) -> ProblemDetailsException:
    errors = _field_errors(error)
    missing_body = any(_is_missing_body(item) for item in errors)
    return ProblemDetailsException(
        status_code=400,
        title="the request is not valid",
        detail="the request has no body; send a JSON object (see /schema for its fields)."
        if missing_body
        else "the request body or parameters are not valid; see `errors` for what to fix.",
        extra={"code": "invalid_request", "errors": errors},
    )


_MISSING_BODY = "the request body is missing"
# Litestar reports a missing parameter in its detail only, followed by the request's path and query;
# the answer names the parameter and leaves out what the client sent.
_MISSING_PARAMETER = re.compile(r"Missing required (?P<source>\w+) parameter '(?P<key>[^']+)'")


def _field_errors(error: ValidationException) -> list[dict[str, Any]]:
    if isinstance(error.extra, list):
        return [_readable_field_error(item) for item in error.extra]
    missing = _MISSING_PARAMETER.match(error.detail)
    if missing is None:
        return []
    source, key = missing["source"], missing["key"]
    return [{"message": f"the {source} parameter {key} is required", "key": key, "source": source}]


def _readable_field_error(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        return {"message": str(item)}
    if item.get("key") == "data" and item.get("source") == "body" and item.get("message") == "'data'":
        # Litestar names the missing body after the handler's parameter.
        return {**item, "message": _MISSING_BODY}
    return item


def _is_missing_body(error: dict[str, Any]) -> bool:
    # Only the message tells a missing body from a wrong one: an unknown field or a `null` body is
    # reported under the same key and source.
    return error.get("message") == _MISSING_BODY


_HTTP_CODES = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    415: "unsupported_media_type",
}


def _http_problem(error: HTTPException) -> ProblemDetailsException:
    return ProblemDetailsException(
        status_code=error.status_code,
        title=HTTPStatus(error.status_code).phrase.lower(),
        detail=error.detail,
        extra={"code": _HTTP_CODES.get(error.status_code, "http_error")},
        headers=error.headers,
    )


def _unexpected_problem(error: Exception) -> ProblemDetailsException:
    # The type only: messages of unexpected errors may quote request data.
    reference = secrets.token_hex(8)
    log.error("unexpected_error", error_type=type(error).__name__, reference=reference)
    return ProblemDetailsException(
        status_code=500,
        title="internal error",
        detail=f"idgate hit an unexpected error; the operator can find reference {reference} in idgate's log.",
        extra={"code": "internal_error", "reference": reference},
    )


# ---- the app ------------------------------------------------------------------------------------
def _docs() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="idgate",
        version=idgate.__version__,
        path="/schema",
        components=Components(
            security_schemes={
                SECURITY_SCHEME: SecurityScheme(
                    type="http",
                    scheme="bearer",
                    description="an API token from `idgate tokens create`, sent as `Authorization: Bearer <token>`",
                )
            }
        ),
        render_plugins=[
            StoplightRenderPlugin(
                path="/",
                js_url=f"{DOCS_ASSETS}/{stopments.WEB_COMPONENTS}",
                css_url=f"{DOCS_ASSETS}/{stopments.STYLES}",
                favicon=f"<link rel='icon' href='{DOCS_ASSETS}/{stopments.FAVICON}'>",
            )
        ],
    )


def create_app(
    settings: Settings,
    *,
    provider: CertificationProvider | None = None,
    store: IdentityStore | None = None,
    tokens: AccessTokens | None = None,
    policies: PolicyEvaluator | None = None,
    clock: Clock | None = None,
) -> Litestar:
    """The Litestar app. The ports are passed on to `bootstrap()`; tests pass fakes there."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with bootstrap(
            settings, provider=provider, store=store, tokens=tokens, policies=policies, clock=clock
        ) as container:
            app.state.container = container
            async with housekeeping(container):
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
            identity_options,  # before the handlers it speaks for; see its comment
            read_identity,
            erase_identity,
            healthz,
            readyz,
            MetricsController,
            demo_page,
            *audit_api.ROUTES,
            *reviews_api.ROUTES,
            create_static_files_router(
                path=DOCS_ASSETS, directories=[DOCS_ASSET_FILES], include_in_schema=False
            ),
        ],
        request_class=JsonRequest,
        lifespan=[lifespan],
        middleware=[BodyDeadline(seconds=settings.http.body_timeout_seconds)],
        dependencies={
            "container": Provide(provide_container, sync_to_thread=False),
            **audit_api.DEPENDENCIES,
        },
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
        # The identity endpoints are for product backends, server to server: browsers only prepare
        # and verify. So cross-origin DELETE is not offered, and neither is the Authorization header,
        # which keeps API tokens out of browsers. (`Allow` on OPTIONS still lists DELETE: that is what
        # the path serves, not what other origins may do.)
        cors_config=CORSConfig(
            allow_origins=cors, allow_methods=["GET", "POST"], allow_headers=["content-type"]
        )
        if cors
        else None,
        openapi_config=_docs(),
    )
