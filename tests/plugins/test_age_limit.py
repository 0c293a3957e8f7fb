"""The built-in age_limit policy: lower and upper bounds, international and year age, in Seoul."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from idgate.domain import AgeMethod, ConfigurationError, Outcome, PolicyContext
from idgate.domain.age import SEOUL, comes_of_age_at
from idgate.policies.engine import PluginPolicyEvaluator, load_catalog, new_plugin_manager
from tests.fakes import a_certification
from tests.plugins.test_builtin_policies import builtin, rule
from tests.plugins.test_policy_engine import configure_enabled

# 2026-11-23 00:00 in Seoul: someone born on 2007-11-23 turns 19 (만) at this instant.
MIDNIGHT_KST = datetime(2026, 11, 22, 15, tzinfo=UTC)
TICK = timedelta(microseconds=1)


def age_ruling(options: dict[str, Any], birth: date, now: datetime = MIDNIGHT_KST) -> tuple[Outcome, str]:
    ruling = rule(
        builtin("age_limit", **options),
        a_certification(birth_date=birth),
        context=PolicyContext(subject=None, now=now),
    )
    return ruling.outcome, ruling.code


@pytest.mark.parametrize(
    ("options", "birth", "now", "expected"),
    [
        ({}, date(2007, 11, 23), MIDNIGHT_KST, (Outcome.ALLOW, "age_ok")),  # 19 from today (KST)
        ({}, date(2007, 11, 23), MIDNIGHT_KST - TICK, (Outcome.DENY, "under_age")),  # a moment before
        ({"min_age": 14}, date(2012, 11, 24), MIDNIGHT_KST, (Outcome.DENY, "under_age")),
        ({"max_age": 34}, date(1991, 11, 24), MIDNIGHT_KST, (Outcome.ALLOW, "age_ok")),  # 34 until tomorrow
        ({"max_age": 34}, date(1991, 11, 23), MIDNIGHT_KST, (Outcome.DENY, "over_age")),  # 35 today
        ({"max_age": 34}, date(2026, 1, 1), MIDNIGHT_KST, (Outcome.ALLOW, "age_ok")),  # no lower bound
        ({"min_age": 19, "max_age": 34}, date(2000, 1, 1), MIDNIGHT_KST, (Outcome.ALLOW, "age_ok")),
        ({"min_age": 19, "max_age": 34}, date(2010, 1, 1), MIDNIGHT_KST, (Outcome.DENY, "under_age")),
        ({"min_age": 19, "max_age": 34}, date(1980, 1, 1), MIDNIGHT_KST, (Outcome.DENY, "over_age")),
        ({"min_age": 19, "max_age": 19}, date(2007, 1, 1), MIDNIGHT_KST, (Outcome.ALLOW, "age_ok")),
        # 연 나이: everyone born in 2007 is 19 all through 2026, 20 from 1 January 2027 in Seoul.
        ({"method": "year"}, date(2007, 12, 31), MIDNIGHT_KST, (Outcome.ALLOW, "age_ok")),
        ({"max_age": 19, "method": "year"}, date(2007, 1, 1), datetime(2026, 12, 31, 14, 59, tzinfo=UTC),
         (Outcome.ALLOW, "age_ok")),
        ({"max_age": 19, "method": "year"}, date(2007, 1, 1), datetime(2026, 12, 31, 15, tzinfo=UTC),
         (Outcome.DENY, "over_age")),
    ],
)  # fmt: skip
def test_age_limit_outcomes_and_codes(
    options: dict[str, Any], birth: date, now: datetime, expected: tuple[Outcome, str]
) -> None:
    assert age_ruling(options, birth, now) == expected


@pytest.mark.parametrize(
    ("options", "birth", "message"),
    [
        ({}, date(1990, 1, 1), "만 나이 19 or older"),  # today's message, kept
        ({}, date(2010, 1, 1), "must be at least 19 (만 나이, international age)"),
        ({"max_age": 30}, date(1990, 1, 1), "must be at most 30 (만 나이, international age)"),
        ({"min_age": 20, "max_age": 40, "method": "year"}, date(1990, 1, 1), "연 나이 20 to 40"),
        ({"max_age": 40}, date(1990, 1, 1), "만 나이 40 or younger"),
    ],
)
def test_messages_name_the_bounds_never_the_persons_age(
    options: dict[str, Any], birth: date, message: str
) -> None:
    ruling = rule(
        builtin("age_limit", **options),
        a_certification(birth_date=birth),
        context=PolicyContext(subject=None, now=MIDNIGHT_KST),
    )
    assert ruling.message == message
    assert str(2026 - birth.year) not in ruling.message
    assert str(birth.year) not in ruling.message


def test_the_version_is_1_1_0() -> None:
    assert load_catalog(new_plugin_manager()).definitions["age_limit"].version == "1.1.0"


def test_without_bounds_it_is_todays_min_age_19_and_one_digest() -> None:
    catalog = load_catalog(new_plugin_manager())

    def configured(options: dict[str, Any]) -> PluginPolicyEvaluator:
        return PluginPolicyEvaluator(configure_enabled(catalog, {"age_limit": options}))

    [default] = configured({}).policies
    assert (default.options.min_age, default.options.method) == (19, AgeMethod.INTERNATIONAL)
    assert configured({}).policy_set == configured({"min_age": 19}).policy_set
    # An upper bound alone has no lower one: not the same policy as 19 to 30.
    assert configured({"max_age": 30}).policy_set != configured({"min_age": 19, "max_age": 30}).policy_set


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_age": 20, "max_age": 19}, r"min_age \(20\) must not be greater than max_age \(19\)"),
        ({"max_age": 151}, "max_age must be between 0 and 150, not 151"),
        ({"max_age": -1}, "max_age must be between 0 and 150"),
        ({"min_age": 151}, "min_age must be between 0 and 150"),
        ({"max_age": "30"}, r"Expected `int \| null`, got `str` - at `\$.max_age`"),
        ({"min_age": 30.5}, r"Expected `int \| null`, got `float` - at `\$.min_age`"),
        ({"min_age": True}, r"Expected `int \| null`, got `bool` - at `\$.min_age`"),
        ({"method": "korean"}, "Invalid enum value 'korean'"),
        ({"minimum_age": 19}, "unknown option.*minimum_age.*known options: .*max_age"),
    ],
)
def test_bad_options_are_a_configuration_error_naming_the_policy_and_option(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=r"\[policies\.age_limit\]") as raised:
        builtin("age_limit", **options)
    assert raised.match(message)


# Naive bounds: hypothesis attaches the timezones itself.
births = st.dates(min_value=date(1900, 1, 1), max_value=date(2030, 12, 31))
instants = st.datetimes(
    min_value=datetime(1990, 1, 1),  # noqa: DTZ001
    max_value=datetime(2090, 1, 1),  # noqa: DTZ001
    timezones=st.sampled_from([UTC, SEOUL]),
)
bounds = st.integers(min_value=0, max_value=150)


@given(births, instants, bounds, bounds, st.sampled_from(AgeMethod))
def test_the_ruling_changes_exactly_at_the_birthdays_that_cross_a_bound(
    birth: date, now: datetime, first: int, second: int, method: AgeMethod
) -> None:
    low, high = sorted((first, second))
    outcome, code = age_ruling({"min_age": low, "max_age": high, "method": method.value}, birth, now)
    # Independent of how the policy counts: the instants at which the bounds are crossed.
    if now < comes_of_age_at(birth, low, method):
        assert (outcome, code) == (Outcome.DENY, "under_age")
    elif now >= comes_of_age_at(birth, high + 1, method):
        assert (outcome, code) == (Outcome.DENY, "over_age")
    else:
        assert (outcome, code) == (Outcome.ALLOW, "age_ok")
