"""Bad input a probe of the running API found, and the API's own description of itself: each answer
is a 4xx problem that says what to fix, never a 500, and the OpenAPI document tells the truth."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Sandbox, prepared_certification

PROBLEM = "application/problem+json"


def problem(answer: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = answer.json()
    assert (body["status"], body["code"]) == (status, code)
    assert "Error" not in answer.text  # no exception class names
    assert "Traceback" not in answer.text
    return body


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
@pytest.mark.parametrize("path", ["/certifications", "/certifications/prepare"])
async def test_a_body_that_is_not_json_is_415(api: httpx.AsyncClient, path: str, content_type: str) -> None:
    answer = await api.post(path, content=b'{"imp_uid": "imp_1"}', headers={"content-type": content_type})
    assert "Content-Type: application/json" in problem(answer, 415, "unsupported_media_type")["detail"]


async def test_json_with_a_charset_or_a_json_suffix_is_json(api: httpx.AsyncClient) -> None:
    for content_type in ("application/json; charset=utf-8", "application/merge-patch+json"):
        answer = await api.post(
            "/certifications/prepare", content=b"{}", headers={"content-type": content_type}
        )
        assert answer.status_code == 201, answer.text


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"[" * 1000 + b"]" * 1000, "nested too deeply"),
        (b'{"imp_uid": ' + b"[" * 1000 + b"]" * 1000 + b"}", "nested too deeply"),
        (b'{"imp_uid": "imp_\xff\xfe1"}', "not valid UTF-8"),
        (b"", "has no body"),
        (b'{"imp_uid": ', "not valid"),
    ],
)
async def test_malformed_bodies_are_400_with_what_to_fix(
    api: httpx.AsyncClient, body: bytes, says: str
) -> None:
    answer = await api.post("/certifications", content=body, headers={"content-type": "application/json"})
    assert says in problem(answer, 400, "invalid_request")["detail"]


async def test_an_empty_body_names_what_is_missing(api: httpx.AsyncClient) -> None:
    answer = await api.post("/certifications", headers={"content-type": "application/json"})
    body = problem(answer, 400, "invalid_request")
    assert body["errors"] == [{"message": "the request body is missing", "key": "data", "source": "body"}]
    assert "'data'" not in answer.text


@pytest.mark.parametrize("path", ["/identities/acct-1/", "/identities/acct-1%2F", "/identities/acct-1%2f"])
async def test_a_subject_with_anything_after_it_is_not_that_subject(
    api: httpx.AsyncClient, path: str
) -> None:
    for method in ("GET", "DELETE"):
        answer = await api.request(method, path, headers={"Authorization": "Bearer idgt_x"})
        assert "no trailing /" in problem(answer, 400, "invalid_request")["detail"]


@pytest.mark.parametrize("subject", [".", ".."])
async def test_dot_subjects_are_refused(api: httpx.AsyncClient, subject: str) -> None:
    problem(await api.post("/certifications/prepare", json={"subject": subject}), 400, "invalid_request")


async def test_options_lists_every_method_of_the_identity_path(api: httpx.AsyncClient) -> None:
    answer = await api.options("/identities/acct-1")
    assert answer.status_code == 204
    assert answer.headers["allow"] == "DELETE, GET, OPTIONS"
    assert (await api.options("/certifications")).headers["allow"] == "OPTIONS, POST"


async def test_5xx_answers_carry_a_reference_not_internals(
    api: httpx.AsyncClient, sandbox: Sandbox, tmp_path: Path
) -> None:
    body = await prepared_certification(api, sandbox, "adult", "acct-1")
    (tmp_path / "keyring.json").chmod(0o644)  # breaks the keyring under the running server
    await asyncio.sleep(1.1)
    answer = await api.post("/certifications", json=body)
    refused = problem(answer, 503, "keyring_unavailable")
    assert re.fullmatch(r"[0-9a-f]{16}", refused["reference"])
    for internal in (str(tmp_path), "keyring.json", "644", "ConfigurationError", "chmod"):
        assert internal not in answer.text
    (tmp_path / "keyring.json").chmod(0o600)


# ---- the OpenAPI document ------------------------------------------------------------------------
async def test_the_schema_documents_problems_statuses_and_id_patterns(api: httpx.AsyncClient) -> None:
    schema = (await api.get("/schema/openapi.json")).json()
    verify = schema["paths"]["/certifications"]["post"]
    assert {"200", "400", "404", "409", "415", "422", "500", "502", "503", "504"} <= set(verify["responses"])
    for status, response in verify["responses"].items():
        if status != "200":
            assert list(response["content"]) == [PROBLEM], status
    problem_schema = schema["components"]["schemas"]["Problem"]
    assert {"status", "title", "detail", "code"} <= set(problem_schema["required"])
    assert "status_code" not in json.dumps(schema)  # Litestar's default error shape is nowhere
    assert "303" in schema["paths"]["/certifications/redirect"]["get"]["responses"]
    assert {"401", "403"} <= set(schema["paths"]["/identities/{subject}"]["delete"]["responses"])
    fields = schema["components"]["schemas"]["VerifyIn"]["properties"]
    assert fields["imp_uid"]["pattern"] == "^imp_[0-9]{1,28}$"
    assert fields["merchant_uid"]["maxLength"] == 80
    assert fields["subject"]["maxLength"] == 128


async def test_the_docs_page_loads_nothing_from_another_host(api: httpx.AsyncClient) -> None:
    page = await api.get("/schema")
    assert page.status_code == 200
    urls = re.findall(r"""(?:src|href)=["']([^"']+)""", page.text)
    assert len(urls) >= 3
    for url in urls:
        assert not re.match(r"(https?:)?//", url), f"{url} is loaded from another host"
        assert (await api.get(url)).status_code == 200, url


async def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(
    api: httpx.AsyncClient, tmp_path: Path
) -> None:
    """Fuzz every documented operation over the real socket: no 5xx, and every answer's status,
    content type and body conform to the document."""
    checks = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
    run = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        str(api.base_url).rstrip("/") + "/schema/openapi.json",
        "--checks",
        checks,
        "--max-examples",
        "40",
        "--phases",
        "examples,coverage,fuzzing",
        "--seed",
        "1",
        "--workers",
        "1",
        "--no-color",
        "--generation-database",
        "none",
        "--request-timeout",
        "10",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,
    )
    async with asyncio.timeout(300):
        out, _ = await run.communicate()
    report = out.decode()
    assert run.returncode == 0, report[-6000:]
    assert re.search(r"\b[1-9]\d* passed", report), report[-2000:]
