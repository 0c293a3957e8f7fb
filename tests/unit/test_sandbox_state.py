"""The sandbox's token rules and test persons, with a controlled clock."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from idgate.domain import international_age
from idgate.domain.age import SEOUL
from idgate.sandbox import SandboxState, load_persons


class Clock:
    def __init__(self, at: float = 1_700_000_000) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def state(clock: Clock) -> SandboxState:
    return SandboxState(clock=clock)


def issue(state: SandboxState) -> dict[str, int | str]:
    token = state.issue_token("sandbox_imp_key", "sandbox_imp_secret")
    assert token is not None
    return token


def test_a_token_lives_thirty_minutes(state: SandboxState) -> None:
    token = issue(state)
    assert token["expired_at"] == token["now"] + 1800  # type: ignore[operator]
    assert len(str(token["access_token"])) == 40


def test_asking_again_while_valid_returns_the_same_token_and_expiry(
    state: SandboxState, clock: Clock
) -> None:
    first = issue(state)
    clock.at += 600
    second = issue(state)
    assert second["access_token"] == first["access_token"]
    assert second["expired_at"] == first["expired_at"]
    assert second["now"] == first["now"] + 600  # type: ignore[operator]


def test_asking_in_the_last_minute_extends_by_five_minutes(state: SandboxState, clock: Clock) -> None:
    first = issue(state)
    clock.at += 1800 - 30
    second = issue(state)
    assert second["access_token"] == first["access_token"]
    assert second["expired_at"] == first["expired_at"] + 300  # type: ignore[operator]


def test_after_expiry_a_new_token_is_issued(state: SandboxState, clock: Clock) -> None:
    first = issue(state)
    clock.at += 1800
    assert not state.token_is_valid(str(first["access_token"]))
    second = issue(state)
    assert second["access_token"] != first["access_token"]


def test_wrong_credentials_get_no_token(state: SandboxState) -> None:
    assert state.issue_token("sandbox_imp_key", "wrong") is None
    assert state.issue_token("wrong", "sandbox_imp_secret") is None


def test_bare_and_bearer_tokens_are_both_accepted(state: SandboxState) -> None:
    token = str(issue(state)["access_token"])
    assert state.token_is_valid(token)
    assert state.token_is_valid(f"Bearer {token}")
    assert not state.token_is_valid("Bearer nope")
    assert not state.token_is_valid(None)


def test_otp_confirms_once(state: SandboxState) -> None:
    imp_uid = state.request_otp(
        {"name": "홍길동", "phone": "010-1234-5678", "birth": "900101", "gender_digit": "1", "carrier": "SKT"}
    )
    assert state.certifications[imp_uid]["certified"] is False
    assert state.confirm_otp(imp_uid, "000000" if state.otps[imp_uid] != "000000" else "111111") is not None
    assert state.confirm_otp(imp_uid, state.otps[imp_uid]) is None
    assert state.certifications[imp_uid]["certified"] is True
    assert state.certifications[imp_uid]["unique_key"]  # a known sandbox person keeps their CI
    assert state.confirm_otp(imp_uid, "123456") is not None


@pytest.mark.parametrize("today", [date(2026, 11, 23), date(2028, 2, 29), date(2027, 3, 1)])
def test_the_person_turning_19_today_does_so_at_midnight_kst(today: date) -> None:
    person = next(p for p in load_persons(today) if p.id == "turns-19-today")
    birthday = date.fromisoformat(person.birthday)
    midnight = datetime(today.year, today.month, today.day, tzinfo=SEOUL)
    assert international_age(birthday, midnight) == 19
    if (today.month, today.day) == (2, 29):
        # Nobody was born on 29 Feb 19 years before a leap day; the sandbox uses 28 Feb (19 since yesterday).
        assert birthday == date(today.year - 19, 2, 28)
    else:
        assert international_age(birthday, midnight - timedelta(seconds=1)) == 18


def test_the_persons_cover_the_cases_the_flow_must_handle() -> None:
    persons = {p.id: p.record for p in load_persons(date(2026, 11, 23))}
    assert persons["kakao-no-ci"].get("unique_key") is None
    assert persons["inicis-no-di"].get("unique_in_site") is None
    assert persons["inicis-no-di"]["unique_key"]
    assert persons["foreigner"]["foreigner_v2"] is True
    assert persons["foreigner-unknown"]["foreigner_v2"] is None
    assert persons["mvno"]["carrier"].endswith("_MVNO")
    assert "phone" not in persons["no-phone"]
    assert "carrier" not in persons["no-phone"]
    assert persons["leap-day"]["birthday"].endswith("-02-29")
    a, b = persons["dual-phone-a"], persons["dual-phone-b"]
    assert a["unique_key"] == b["unique_key"]
    assert a["phone"] != b["phone"]
    assert (
        len({p["unique_key"] for k, p in persons.items() if "unique_key" in p and not k.startswith("dual")})
        == 9
    )


def test_minted_persons_are_new_people() -> None:
    state = SandboxState()
    fixed = set(state.persons)
    minted = [state.mint_person(date(2000, 1, 1), carrier="KT_MVNO") for _ in range(50)]
    assert not fixed & {p.id for p in minted}
    for field in ("unique_key", "unique_in_site", "phone"):
        values = [p.record[field] for p in minted]
        assert len(set(values)) == len(values), field
    assert {len(p.record["unique_key"]) for p in minted} == {88}  # a real CI's length
    assert {p.birthday for p in minted} == {"2000-01-01"}
    imp_uid = state.certify(minted[0].id, "order-1")
    assert state.certifications[imp_uid]["unique_key"] == minted[0].record["unique_key"]
