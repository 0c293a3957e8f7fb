from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from idgate.domain.age import (
    SEOUL,
    AgeMethod,
    age,
    anniversary,
    comes_of_age_at,
    international_age,
    year_age,
)

births = st.dates(min_value=date(1900, 1, 1), max_value=date(2030, 12, 31))
# Hypothesis takes naive bounds and attaches the timezones itself.
instants = st.datetimes(
    min_value=datetime(1990, 1, 1),  # noqa: DTZ001
    max_value=datetime(2090, 1, 1),  # noqa: DTZ001
    timezones=st.sampled_from([UTC, SEOUL]),
)
years = st.integers(min_value=1, max_value=60)
any_offset = st.integers(min_value=-12 * 60, max_value=14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
TICK = timedelta(microseconds=1)


@given(births, years)
def test_international_age_changes_exactly_at_midnight_kst_of_the_anniversary(birth: date, n: int) -> None:
    instant = comes_of_age_at(birth, n)
    assert instant.astimezone(SEOUL).time() == datetime.min.time()
    assert international_age(birth, instant) == n
    assert international_age(birth, instant - TICK) == n - 1


@given(births, years)
def test_year_age_changes_at_new_year_kst(birth: date, n: int) -> None:
    instant = comes_of_age_at(birth, n, AgeMethod.YEAR)
    assert (instant.month, instant.day) == (1, 1)
    assert year_age(birth, instant) == n
    assert year_age(birth, instant - TICK) == n - 1


@given(births, instants, any_offset)
def test_the_servers_timezone_does_not_matter(birth: date, at: datetime, offset: timezone) -> None:
    for method in AgeMethod:
        assert age(birth, at, method) == age(birth, at.astimezone(offset), method)


@given(births, instants)
def test_year_age_is_international_age_or_one_more(birth: date, at: datetime) -> None:
    assume(at.astimezone(SEOUL).date() >= birth)
    assert year_age(birth, at) - international_age(birth, at) in (0, 1)


@given(births, instants, st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=4000)))
def test_age_never_decreases(birth: date, at: datetime, later: timedelta) -> None:
    assume(at.year < 2089)
    assert international_age(birth, at + later) >= international_age(birth, at)


@given(st.integers(min_value=1901, max_value=2099), years)
def test_a_29_february_birth_comes_of_age_on_1_march_in_common_years(leap_year: int, n: int) -> None:
    assume(leap_year % 4 == 0)
    birth = date(leap_year, 2, 29)
    target = leap_year + n
    is_leap = target % 4 == 0 and (target % 100 != 0 or target % 400 == 0)
    assert anniversary(birth, n) == (date(target, 2, 29) if is_leap else date(target, 3, 1))


def test_seoul_midnight_is_still_the_previous_day_in_utc() -> None:
    birth = date(2007, 11, 23)
    # 2026-11-22T15:00Z is 2026-11-23T00:00 in Seoul: the 19th birthday has begun there.
    assert international_age(birth, datetime(2026, 11, 22, 15, 0, tzinfo=UTC)) == 19
    assert international_age(birth, datetime(2026, 11, 22, 14, 59, 59, tzinfo=UTC)) == 18


def test_the_naive_birth_year_rule_is_wrong_for_late_birthdays() -> None:
    # Someone born on 31 Dec 2007 has year age 19 for the whole of 2026, international age 18 until 31 Dec.
    at = datetime(2026, 6, 1, tzinfo=SEOUL)
    birth = date(2007, 12, 31)
    assert year_age(birth, at) == 19
    assert international_age(birth, at) == 18


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        international_age(date(2000, 1, 1), datetime(2026, 1, 1))  # noqa: DTZ001 - the point of the test
