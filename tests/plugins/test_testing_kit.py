"""idgate.testing, the plugin author's kit: held to what it promises, through its public names only."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import find, given
from hypothesis import strategies as st

from idgate.domain import (
    AgeMethod,
    Certification,
    ConfigurationError,
    Outcome,
    PolicyContext,
    PolicyResult,
    Ruling,
    age,
)
from idgate.policies import PolicyDefinition
from idgate.testing import (
    NOW,
    FrozenClock,
    InMemoryIdentityDirectory,
    certification,
    ci_of,
    di_of,
    evaluate_policy,
    evaluate_policy_async,
    policy_context,
    strategies,
)


@dataclass(frozen=True, kw_only=True)
class PartnerOptions:
    partners: tuple[str, ...] = ()


def partners_only(options: PartnerOptions) -> Any:
    def evaluate(certification: Certification, context: PolicyContext) -> Ruling:
        partner = (context.subject or "").partition(":")[0]
        if partner in options.partners:
            return Ruling(outcome=Outcome.ALLOW, code="partner_member")
        return Ruling(outcome=Outcome.DENY, code="not_a_partner")

    return evaluate


PARTNERS = PolicyDefinition(name="partners_only", version="0.1", options=PartnerOptions, build=partners_only)


def test_the_certification_is_a_realistic_adult_and_any_field_changes() -> None:
    made = certification()
    assert made.certified
    assert age(made.birth_date, NOW, AgeMethod.INTERNATIONAL) >= 19
    assert made.ci is not None
    assert made.di is not None
    assert (len(made.ci), len(base64.b64decode(made.ci))) == (88, 66)
    assert (len(made.di), len(base64.b64decode(made.di))) == (64, 48)
    assert certification(ci=None, provider="kakao").ci is None
    assert ci_of("a") != ci_of("b")
    assert di_of("a") == di_of("a")


def test_a_policy_of_ones_own_runs_without_being_installed() -> None:
    allowed = evaluate_policy(
        PARTNERS, options={"partners": ["acme"]}, context=policy_context(subject="acme:42")
    )
    assert (allowed.policy, allowed.outcome, allowed.code) == (
        "partners_only",
        Outcome.ALLOW,
        "partner_member",
    )
    denied = evaluate_policy(PARTNERS, options={"partners": ["acme"]}, context=policy_context(subject="x:1"))
    assert denied.outcome is Outcome.DENY


def test_bad_options_fail_as_they_would_at_startup() -> None:
    with pytest.raises(ConfigurationError, match="unknown option"):
        evaluate_policy(PARTNERS, options={"partner": ["acme"]})
    with pytest.raises(ConfigurationError, match="min_age"):
        evaluate_policy("age_limit", options={"min_age": "nineteen"})


def test_installed_policies_run_by_name_under_the_engines_rules() -> None:
    minor = certification(birth_date=NOW.date().replace(year=NOW.year - 10))
    assert evaluate_policy("age_limit", certification=minor).outcome is Outcome.DENY
    shadow = evaluate_policy("age_limit", options={"enforce": False}, certification=minor)
    assert (shadow.outcome, shadow.enforced) == (Outcome.DENY, False)


async def test_the_async_form_and_the_in_memory_directory() -> None:
    directory = InMemoryIdentityDirectory()
    person = certification()
    directory.bind("other-account", ci=person.ci)
    context = policy_context(subject="new-account", identities=directory)
    result = await evaluate_policy_async("duplicate_identity", certification=person, context=context)
    assert (result.outcome, result.code) == (Outcome.DENY, "identity_bound_elsewhere")
    assert await directory.subjects_with_ci("nobody") == []


def test_the_frozen_clock_moves_only_when_told() -> None:
    clock = FrozenClock()
    assert clock.now() == clock.now() == NOW
    clock.advance(timedelta(days=1))
    assert clock.now() == NOW + timedelta(days=1)


# ---- the pytest plugin's fixtures (entry point pytest11: loaded because idgate is installed) ----
def test_the_fixtures_run_a_policy_with_the_directory_and_clock(
    run_policy: Any,
    identity_directory: InMemoryIdentityDirectory,
    frozen_clock: FrozenClock,
    make_certification: Any,
) -> None:
    person = make_certification()
    identity_directory.bind("someone-else", ci=person.ci)
    result: PolicyResult = run_policy("duplicate_identity", certification=person, subject="me")
    assert result.code == "identity_bound_elsewhere"
    turns_19_tomorrow = make_certification(
        birth_date=(NOW + timedelta(days=1)).date().replace(year=NOW.year - 19)
    )
    assert run_policy("age_limit", certification=turns_19_tomorrow).outcome is Outcome.DENY
    frozen_clock.advance(timedelta(days=2))
    assert run_policy("age_limit", certification=turns_19_tomorrow).outcome is Outcome.ALLOW


async def test_the_async_fixture(run_policy_async: Any) -> None:
    result = await run_policy_async(PARTNERS, options={"partners": ["acme"]}, subject="acme:7")
    assert result.outcome is Outcome.ALLOW


# ---- the strategies ------------------------------------------------------------------------------
@given(strategies.korean_names())
def test_names_are_hangul_syllables(name: str) -> None:
    assert 2 <= len(name) <= 5
    assert all(0xAC00 <= ord(c) <= 0xD7A3 for c in name)


@given(strategies.phones())
def test_phones_are_korean_mobile_numbers_in_digits(phone: str) -> None:
    assert phone.isdigit()
    assert phone.startswith("01")
    assert len(phone) in {10, 11}


@given(strategies.cis(), strategies.dis())
def test_ci_and_di_have_portones_shapes(ci: str, di: str) -> None:
    assert (len(ci), len(di)) == (88, 64)


@given(strategies.certifications())
def test_certifications_leave_fields_out_as_their_provider_does(made: Certification) -> None:
    assert made.provider in strategies.PROVIDERS
    assert (made.phone is None) == (made.carrier is None)
    if made.provider == "inicis_unified":
        assert made.di is None
    if made.ci is None:
        assert made.provider == "kakao"
    if made.is_foreigner is None:
        assert made.provider == "danal"


@given(st.data(), st.integers(1, 100), st.sampled_from(AgeMethod))
def test_birth_dates_around_an_age_are_a_day_or_two_from_it(
    data: st.DataObject, years: int, method: AgeMethod
) -> None:
    born = data.draw(strategies.birth_dates_around(years, method=method))
    assert age(born, NOW, method) in {years - 1, years}


@pytest.mark.parametrize("method", list(AgeMethod))
def test_birth_dates_around_an_age_reach_both_sides_of_it(method: AgeMethod) -> None:
    around = strategies.birth_dates_around(19, method=method)
    assert age(find(around, lambda b: age(b, NOW, method) == 19), NOW, method) == 19
    assert age(find(around, lambda b: age(b, NOW, method) == 18), NOW, method) == 18
