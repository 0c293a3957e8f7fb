"""The auditor page (/audit) in a real headless chromium, against the real app on a real socket.

Real verifications through the sandbox fill the decision log; the app's own housekeeping signs a
checkpoint; the token is made the way `idgate tokens create` makes it. Then, in the browser: wrong
tokens are refused, the right one signs in, the table, the filter, one decision with its inclusion
proof checked by the page's own script, the log's status, a whole-log verification, and signing out.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import TYPE_CHECKING, Any

import httpx

from idgate.domain import Role, services
from idgate.entrypoints.bootstrap import operations
from idgate.entrypoints.settings import Settings
from tests.browser.conftest import Screenshots
from tests.conftest import Sandbox, SettingsFactory, prepared_certification, running_api
from tests.databases import TestDatabase

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

# Who is verified, for which account, and what the policies decide.
VERIFICATIONS = [
    ("adult", "acct-adult", "allow"),  # 만 19 or older, first account
    ("minor", "acct-minor", "deny"),  # under_age
    ("turns-19-today", "acct-birthday", "allow"),
    ("adult", "acct-second", "deny"),  # the same person (CI) again: identity_bound_elsewhere
]
TIMEOUT_MS = 10_000


async def make_token(settings: Settings, name: str, role: Role) -> str:
    """What `idgate tokens create --role … --name …` does."""
    async with operations(settings) as ops:
        return await services.create_token(name, role, tokens=ops.tokens)


async def checkpointed_log(api: httpx.AsyncClient, token: str, size: int) -> dict[str, Any]:
    """The log's status once the server's housekeeping has signed a checkpoint of `size` entries."""
    async with asyncio.timeout(15):
        while True:
            answer = await api.get("/decisions/log", headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 200, answer.text
            status: dict[str, Any] = answer.json()
            if (status["latest_checkpoint"] or {}).get("size") == size:
                return status
            await asyncio.sleep(0.2)


async def sign_in(page: Page, token: str) -> None:
    await page.locator("#token").fill(token)
    await page.get_by_role("button", name=re.compile("로그인|Sign in")).click()


async def assert_refused(page: Page, message: str) -> None:
    from playwright.async_api import expect  # noqa: PLC0415 - the browser fixture checked it is there

    await expect(page.locator("#signin-error")).to_be_visible()
    await expect(page.locator("#signin-error")).to_have_text(message)
    await expect(page.locator("#app")).to_be_hidden()
    await expect(page.locator("#rows tr")).to_have_count(0)
    assert await page.evaluate("sessionStorage.getItem('idgate-auditor-token')") is None


async def test_an_auditor_signs_in_filters_and_checks_a_decision_in_chromium(
    browser: Browser,
    sandbox: Sandbox,
    settings_for: SettingsFactory,
    database: TestDatabase,
    screenshots: Screenshots,
) -> None:
    from playwright.async_api import expect  # noqa: PLC0415 - the browser fixture checked it is there

    settings = settings_for(sandbox, audit={"checkpoint_every": 1})
    token = await make_token(settings, "browser-auditor", Role.AUDITOR)
    service_token = await make_token(settings, "shop-backend", Role.SERVICE)

    async with running_api(settings) as api:
        decisions: dict[str, dict[str, Any]] = {}
        for person, subject, verdict in VERIFICATIONS:
            body = await prepared_certification(api, sandbox, person, subject=subject)
            answer = await api.post("/certifications", json=body)
            assert answer.status_code == 200, answer.text
            assert answer.json()["verdict"] == verdict, answer.text
            decisions[answer.json()["decision_id"]] = answer.json()
        status = await checkpointed_log(api, token, len(VERIFICATIONS))
        denied = [d for d, made in decisions.items() if made["verdict"] == "deny"]

        context = await browser.new_context(
            locale="ko-KR", timezone_id="Asia/Seoul", viewport={"width": 1280, "height": 900}
        )
        context.set_default_timeout(TIMEOUT_MS)
        page = await context.new_page()
        requested: list[str] = []
        page.on("request", lambda r: requested.append(r.url))
        failed: list[tuple[int, str]] = []
        page.on("response", lambda r: failed.append((r.status, r.url)) if r.status >= 400 else None)
        errors: list[str] = []  # the script's own; a failed request is also a console error, seen above
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on(
            "console",
            lambda m: (
                errors.append(m.text)
                if m.type == "error" and not m.text.startswith("Failed to load resource")
                else None
            ),
        )

        await page.goto(str(api.base_url.join("/audit")))
        await expect(page.get_by_role("heading", name="감사 토큰으로 로그인")).to_be_visible()
        await expect(page.locator("#app")).to_be_hidden()

        # ---- wrong tokens: an unknown one (401), and a real one without the auditor role (403) --------
        refused = "거부된 토큰입니다 (없거나, 폐기되었거나, auditor가 아님)."
        await sign_in(page, "idgt_" + "x" * 43)
        await assert_refused(page, refused)
        await sign_in(page, service_token)
        await assert_refused(page, refused)
        await page.get_by_role("button", name="English").click()
        await expect(page.locator("#signin-error")).to_have_text(
            "This token was refused (unknown, revoked, or not an auditor's)."
        )
        await page.get_by_role("button", name="한국어").click()
        await expect(page.locator("#signin-error")).to_have_text(refused)
        await screenshots.save(page, f"audit-page-refused-{database.kind}.png")

        # ---- the right one ------------------------------------------------------------------------------
        await sign_in(page, token)
        await expect(page.locator("#app")).to_be_visible()
        await expect(page.locator("#signin")).to_be_hidden()
        rows = page.locator("#rows tr.entry")
        await expect(rows).to_have_count(len(VERIFICATIONS))
        shown = await rows.evaluate_all("trs => trs.map((tr) => tr.dataset.decisionId)")
        assert sorted(shown) == sorted(decisions)
        for decision_id, made in decisions.items():
            row = page.locator(f'#rows tr[data-decision-id="{decision_id}"]')
            await expect(row.locator("td.verdict")).to_have_text(made["verdict"])
        # The token stays in this tab's sessionStorage: not in the URL, localStorage, a cookie, the DOM.
        assert await page.evaluate("sessionStorage.getItem('idgate-auditor-token')") == token
        assert await page.evaluate("localStorage.length") == 0
        assert await page.evaluate("document.cookie") == ""
        assert await page.locator("#token").input_value() == ""
        assert token not in page.url
        assert token not in await page.content()

        # ---- the log's status, with the checkpoint the server signed ----------------------------------
        log_status = page.locator("#status-body")
        await expect(log_status).to_contain_text(f"{len(VERIFICATIONS)} 건 · 루트 {status['root'][:16]}…")
        latest = status["latest_checkpoint"]
        await expect(log_status).to_contain_text(
            f"최근 체크포인트: {latest['size']} 건 · {latest['signed_at']}"
        )
        await expect(page.locator("#chart-verdicts svg rect").first).to_be_attached()
        await expect(page.locator("#chart-reasons")).to_contain_text("age_limit:under_age")
        await expect(page.locator("#chart-reasons")).to_contain_text(
            "duplicate_identity:identity_bound_elsewhere"
        )

        # ---- filter: denials only ----------------------------------------------------------------------
        await page.locator("#filters select[name=verdict]").select_option("deny")
        await page.get_by_role("button", name="적용").click()
        await expect(rows).to_have_count(len(denied))
        await expect(page.locator("#rows td.verdict")).to_have_text(["deny"] * len(denied))
        shown = await rows.evaluate_all("trs => trs.map((tr) => tr.dataset.decisionId)")
        assert sorted(shown) == sorted(denied)
        assert any("/decisions?" in url and "verdict=deny" in url for url in requested)

        # ---- one decision: its whole record, and its inclusion proof checked in the browser -----------
        minor = next(d for d in denied if decisions[d]["reasons"][0]["code"] == "under_age")
        await page.locator(f'#rows tr[data-decision-id="{minor}"]').click()
        await expect(page.locator("#detail")).to_be_visible()
        await expect(page.locator("#detail-id")).to_have_text(minor)
        proof = page.locator("#proof-status")
        await expect(proof).to_have_text(
            f"이 브라우저에서 검증됨 · 서명된 체크포인트 기준 ({len(VERIFICATIONS)} 건)"
        )
        await expect(proof).to_have_class("ok")
        record = json.loads(await page.locator("#detail-record").text_content() or "")
        assert record["decision_id"] == minor
        assert record["verdict"] == "deny"
        assert record["subject"] == "acct-minor"
        assert record["imp_uid"] == decisions[minor]["imp_uid"]
        assert {(r["policy"], r["outcome"], r["code"]) for r in record["results"]} >= {
            ("age_limit", "deny", "under_age")
        }
        note = await page.locator("#detail-checkpoint").text_content() or ""
        assert note.startswith(f"{settings.audit.log_name}\n{len(VERIFICATIONS)}\n"), note
        # The minor's name, phone and birthday are in no record the page shows.
        minor_person = sandbox.state.persons["minor"].record
        for value in (minor_person["name"], minor_person["phone"], minor_person["birthday"]):
            assert value not in await page.content()

        # ---- the whole log, recomputed by the server ---------------------------------------------------
        await page.get_by_role("button", name="전체 검증").click()
        await expect(page.locator("#verify-result")).to_have_class("ok")
        await expect(page.locator("#verify-result")).to_contain_text(
            f"기록이 검증되었습니다 ({len(VERIFICATIONS)} 건"
        )

        await screenshots.save(page, f"audit-page-{database.kind}.png", full_page=True)

        # ---- English labels, then signing out leaves no decision in the page ----------------------------
        await page.get_by_role("button", name="English").click()
        await expect(page.get_by_role("heading", name="Decisions", exact=True)).to_be_visible()
        await expect(page.locator("#proof-status")).to_have_text(
            f"verified in this browser · against the signed checkpoint ({len(VERIFICATIONS)} entries)"
        )
        await expect(page.locator("#verify-result")).to_have_text(
            f"the log verifies ({len(VERIFICATIONS)} entries, 1 ✓)"
        )
        await expect(page.locator("#detail-id")).to_have_text(minor)  # still the one opened
        await expect(rows).to_have_count(len(denied))  # still filtered
        await page.get_by_role("button", name="Sign out").click()
        await expect(page.locator("#signin")).to_be_visible()
        await expect(page.locator("#app")).to_be_hidden()
        await expect(page.locator("#signin-error")).to_be_hidden()
        assert await page.evaluate("sessionStorage.getItem('idgate-auditor-token')") is None
        content = await page.content()
        for decision_id in decisions:
            assert decision_id not in content

        # Every request went to this idgate, and none carried the token in its URL.
        assert requested
        for url in requested:
            assert url.startswith(str(api.base_url)), url
            assert token not in url, url
        log_url = str(api.base_url.join("/decisions/log"))
        assert failed == [(401, log_url), (403, log_url)]  # the two wrong tokens, and nothing else
        assert errors == []
        await context.close()
