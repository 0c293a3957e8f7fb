"""The sandbox: a local PortOne V1 emulator plus a mock verification window and test controls.

PortOne's own endpoints answer with PortOne's envelope `{code, message, response}` and PortOne's
status codes; everything under `/sandbox/` is the sandbox's own API for tests and demos.
"""

from __future__ import annotations

import asyncio
import html
import json
from datetime import date
from importlib import resources
from string import Template
from typing import Any
from urllib.parse import urlencode, urlsplit

from litestar import Litestar, MediaType, Request, Response, delete, get, post
from litestar.datastructures import State
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Receive,
    Scope,
    Send,
)

from .state import FAULT_KINDS, Fault, SandboxState

NOT_FOUND_MESSAGE = "인증결과가 존재하지 않습니다."


def _envelope(
    response: object, status: int = 200, *, code: int = 0, message: str | None = None
) -> Response[Any]:
    return Response(
        {"code": code, "message": message, "response": response},
        status_code=status,
        media_type=MediaType.JSON,
    )


def _error(status: int, message: str, code: int = -1) -> Response[Any]:
    return _envelope(None, status, code=code, message=message)


async def _fields(request: Request[Any, Any, Any]) -> dict[str, str]:
    """PortOne accepts both JSON and form bodies on its POST endpoints."""
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            body = await request.json()
        except (ValueError, json.JSONDecodeError):
            return {}
        return {k: str(v) for k, v in body.items()} if isinstance(body, dict) else {}
    form = await request.form()
    return {k: str(v) for k, v in form.items()}


def _state(request: Request[Any, Any, Any]) -> SandboxState:
    state: SandboxState = request.app.state.sandbox
    return state


def _authorized(request: Request[Any, Any, Any]) -> bool:
    return _state(request).token_is_valid(request.headers.get("authorization"))


# ---- PortOne V1 ---------------------------------------------------------------------------------
@post("/users/getToken", status_code=200)
async def get_token(request: Request[Any, Any, Any]) -> Response[Any]:
    fields = await _fields(request)
    if not fields.get("imp_key") or not fields.get("imp_secret"):
        return _error(400, "imp_key, imp_secret 파라메터가 누락되었습니다.")
    token = _state(request).issue_token(fields["imp_key"], fields["imp_secret"])
    if token is None:
        return _error(401, "imp_key, imp_secret 인증에 실패하였습니다.")
    return _envelope(token)


@get("/certifications/{imp_uid:str}")
async def get_certification(request: Request[Any, Any, Any], imp_uid: FromPath[str]) -> Response[Any]:
    if not _authorized(request):
        return _error(401, "Unauthorized")
    record = _state(request).certifications.get(imp_uid)
    return _envelope(record) if record else _error(404, NOT_FOUND_MESSAGE)


@delete("/certifications/{imp_uid:str}", status_code=200)
async def delete_certification(request: Request[Any, Any, Any], imp_uid: FromPath[str]) -> Response[Any]:
    if not _authorized(request):
        return _error(401, "Unauthorized")
    record = _state(request).certifications.pop(imp_uid, None)
    return _envelope(record) if record else _error(404, NOT_FOUND_MESSAGE)


_OTP_REQUIRED = ("name", "phone", "birth", "gender_digit", "carrier")


@post("/certifications/otp/request", status_code=200)
async def request_otp(request: Request[Any, Any, Any]) -> Response[Any]:
    if not _authorized(request):
        return _error(401, "Unauthorized")
    fields = await _fields(request)
    missing = [name for name in _OTP_REQUIRED if not fields.get(name)]
    if missing:
        return _error(400, f"본인인증 요청 정보가 누락되었습니다: {', '.join(missing)}")
    birth = "".join(c for c in fields["birth"] if c.isdigit())
    if (
        len(birth) != 6
        or fields["gender_digit"] not in "12345678"
        or fields["carrier"] not in {"SKT", "KT", "LGT"}
    ):
        return _error(400, "본인인증 요청 정보가 올바르지 않습니다.")
    try:
        imp_uid = _state(request).request_otp(fields)
    except ValueError:
        return _error(400, "생년월일이 올바르지 않습니다.")
    return _envelope({"imp_uid": imp_uid})


@post("/certifications/otp/confirm/{imp_uid:str}", status_code=200)
async def confirm_otp(request: Request[Any, Any, Any], imp_uid: FromPath[str]) -> Response[Any]:
    if not _authorized(request):
        return _error(401, "Unauthorized")
    state = _state(request)
    if imp_uid not in state.certifications:
        return _error(404, NOT_FOUND_MESSAGE)
    problem = state.confirm_otp(imp_uid, (await _fields(request)).get("otp", ""))
    if problem is not None:
        return _error(400, problem)
    return _envelope(state.certifications[imp_uid])


# ---- the sandbox's own API ----------------------------------------------------------------------
@get("/sandbox/persons")
async def list_persons(request: Request[Any, Any, Any]) -> list[dict[str, Any]]:
    return [
        {
            "id": p.id,
            "label": p.label,
            "birthday": p.birthday,
            "pg_provider": p.record["pg_provider"],
            "has_ci": "unique_key" in p.record,
            "has_di": "unique_in_site" in p.record,
            "has_phone": "phone" in p.record,
            "carrier": p.record.get("carrier"),
            "foreigner": p.record.get("foreigner_v2", p.record.get("foreigner")),
        }
        for p in _state(request).persons.values()
    ]


@post("/sandbox/persons", status_code=201)
async def mint_persons(request: Request[Any, Any, Any]) -> dict[str, list[str]]:
    """Mint `count` new persons born on `birthday` (each with their own CI, DI and phone)."""
    body = await request.json()
    if not isinstance(body, dict):
        raise HTTPException(status_code=400, detail='send {"birthday": "YYYY-MM-DD", "count": N}')
    try:
        birthday = date.fromisoformat(str(body.get("birthday", "1990-01-01")))
        count = int(body.get("count", 1))
    except (TypeError, ValueError) as exc:
        raise HTTPException(status_code=400, detail="birthday must be YYYY-MM-DD, count a number") from exc
    if not 1 <= count <= 100_000:
        raise HTTPException(status_code=400, detail="count must be between 1 and 100000")
    state = _state(request)
    try:
        minted = [
            state.mint_person(
                birthday,
                gender=str(body.get("gender", "male")),
                carrier=str(body.get("carrier", "SKT")),
                foreigner=bool(body.get("foreigner", False)),
            ).id
            for _ in range(count)
        ]
    except (TypeError, ValueError) as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from exc
    return {"persons": minted}


@post("/sandbox/certifications", status_code=201)
async def create_certification(request: Request[Any, Any, Any]) -> dict[str, str]:
    body = await request.json()
    state = _state(request)
    person = body.get("person") if isinstance(body, dict) else None
    if person not in state.persons:
        raise HTTPException(
            status_code=400,
            detail=f"person must be one of: {', '.join(state.persons)} (see GET /sandbox/persons)",
        )
    merchant_uid = body.get("merchant_uid")
    return {"imp_uid": state.certify(person, str(merchant_uid) if merchant_uid else None)}


@get("/sandbox/certifications/{imp_uid:str}/otp")
async def peek_otp(request: Request[Any, Any, Any], imp_uid: FromPath[str]) -> dict[str, str]:
    otp = _state(request).otps.get(imp_uid)
    if otp is None:
        raise HTTPException(status_code=404, detail="no pending OTP for this imp_uid")
    return {"otp": otp}


@post("/sandbox/faults", status_code=201)
async def add_fault(request: Request[Any, Any, Any]) -> dict[str, Any]:
    body = await request.json()
    if not isinstance(body, dict) or body.get("kind") not in FAULT_KINDS:
        raise HTTPException(status_code=400, detail=f"kind must be one of {', '.join(FAULT_KINDS)}")
    try:
        fault = Fault(
            kind=body["kind"],
            remaining=int(body.get("count", 1)),
            path_prefix=str(body.get("path", "/")),
            method=body.get("method"),
            latency_ms=int(body.get("latency_ms", 0)),
            status=int(body.get("status", 503)),
        )
    except (TypeError, ValueError) as exc:
        raise HTTPException(status_code=400, detail="count, latency_ms and status must be integers") from exc
    _state(request).faults.append(fault)
    return {"kind": fault.kind, "count": fault.remaining, "path": fault.path_prefix}


@delete("/sandbox/faults", status_code=204)
async def clear_faults(request: Request[Any, Any, Any]) -> None:
    _state(request).faults.clear()


@get("/sandbox/stats")
async def stats(request: Request[Any, Any, Any]) -> dict[str, dict[str, int]]:
    return {"requests": dict(_state(request).requests)}


@delete("/sandbox/stats", status_code=204)
async def reset_stats(request: Request[Any, Any, Any]) -> None:
    _state(request).requests.clear()


# ---- the mock verification window ---------------------------------------------------------------
def _template(name: str) -> Template:
    return Template(resources.files("idgate.sandbox").joinpath(name).read_text("utf-8"))


def _safe_return_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise HTTPException(status_code=400, detail="redirect_url must be an absolute http(s) URL")
    return url


@get("/sandbox/certify", media_type=MediaType.HTML)
async def certify_page(
    request: Request[Any, Any, Any],
    merchant_uid: FromQuery[str] = "",
    redirect_url: FromQuery[str] = "",
    popup: FromQuery[bool] = False,
) -> str:
    if redirect_url:
        _safe_return_url(redirect_url)
    rows = "\n".join(
        f'<li><button name="person" value="{html.escape(p.id)}">{html.escape(p.record["name"])}</button>'
        f" <span>{html.escape(p.label)} · {html.escape(p.birthday)}</span></li>"
        for p in _state(request).persons.values()
    )
    return _template("certify.html").substitute(
        persons=rows,
        merchant_uid=html.escape(merchant_uid),
        redirect_url=html.escape(redirect_url),
        popup="1" if popup else "",
    )


@post("/sandbox/certify", media_type=MediaType.HTML, status_code=200)
async def certify_submit(request: Request[Any, Any, Any]) -> Response[Any]:
    form = await request.form()
    state = _state(request)
    person = str(form.get("person", ""))
    if person not in state.persons:
        raise HTTPException(status_code=400, detail="pick one of the listed persons")
    merchant_uid = str(form.get("merchant_uid", "")) or None
    imp_uid = state.certify(person, merchant_uid, origin=request.headers.get("referer"))
    result = {
        "success": True,
        "imp_uid": imp_uid,
        "merchant_uid": state.certifications[imp_uid]["merchant_uid"],
    }
    redirect_url = str(form.get("redirect_url", ""))
    if redirect_url and not form.get("popup"):
        separator = "&" if urlsplit(_safe_return_url(redirect_url)).query else "?"
        query = {**result, "success": "true"}  # a query string spells booleans the JavaScript way
        return Redirect(redirect_url + separator + urlencode(query), status_code=303)
    return Response(
        _template("done.html").substitute(
            result=html.escape(json.dumps(result)), imp_uid=html.escape(imp_uid)
        ),
        media_type=MediaType.HTML,
    )


def create_sandbox_app(state: SandboxState | None = None) -> ASGIApp:
    """The sandbox as an ASGI app; faults apply to PortOne's endpoints, never to /sandbox/*."""
    state = state or SandboxState()
    app = Litestar(
        route_handlers=[
            get_token,
            get_certification,
            delete_certification,
            request_otp,
            confirm_otp,
            list_persons,
            mint_persons,
            create_certification,
            peek_otp,
            add_fault,
            clear_faults,
            stats,
            reset_stats,
            certify_page,
            certify_submit,
        ],
        state=State({"sandbox": state}),
        openapi_config=None,
    )
    return _with_faults(app, state)


def _with_faults(app: ASGIApp, state: SandboxState) -> ASGIApp:
    async def faulty(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["path"].startswith("/sandbox"):
            await app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        state.count(method, path)
        fault = state.take_fault(method, path)
        if fault is None:
            await app(scope, receive, send)
        elif fault.kind == "latency":
            await asyncio.sleep(fault.latency_ms / 1000)
            await app(scope, receive, send)
        elif fault.kind == "expired_token":
            state.expire_token()
            await app(scope, receive, send)
        elif fault.kind == "status":
            body = json.dumps({"code": -1, "message": "sandbox fault", "response": None}).encode()
            await _respond(send, fault.status, body)
        elif fault.kind == "malformed":
            await _respond(send, 200, b'{"code":0,"message":null,"response":{"imp_uid":')
        else:  # drop: promise a body, send part of it, then hang up
            await _respond(send, 200, b'{"code":0', declared_length=512)

    return faulty


async def _respond(send: Send, status: int, body: bytes, *, declared_length: int | None = None) -> None:
    """A raw response; with `declared_length` longer than `body` the connection ends mid-body."""
    length = str(len(body) if declared_length is None else declared_length).encode()
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", length)],
    }
    await send(start)
    chunk: HTTPResponseBodyEvent = {
        "type": "http.response.body",
        "body": body,
        "more_body": declared_length is not None,
    }
    await send(chunk)
