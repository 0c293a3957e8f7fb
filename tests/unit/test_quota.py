"""Fixed windows of the prepare limit: every worker and store must agree on where one ends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from idgate.domain import RequestQuota


@given(
    window=st.integers(1, 3600).map(lambda s: timedelta(seconds=s)),
    # Hypothesis takes naive bounds and adds the zone itself.
    at=st.datetimes(datetime(1990, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC)),  # noqa: DTZ001
)
def test_the_window_a_moment_falls_in_contains_it_and_says_when_the_next_begins(
    window: timedelta, at: datetime
) -> None:
    start, retry_after = RequestQuota("x", 1, window).window_at(at)
    assert start <= at < start + window
    assert RequestQuota("x", 1, window).window_at(start) == (start, int(window.total_seconds()))
    assert retry_after - 1 < (start + window - at).total_seconds() <= retry_after
