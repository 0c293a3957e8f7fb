from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from idgate.domain import Outcome, PolicyResult, Verdict, combine, new_decision_id, policy_set_digest
from tests.fakes import a_result

results = st.lists(
    st.builds(
        lambda outcome, enforced: a_result(outcome, enforced=enforced),
        st.sampled_from(list(Outcome)),
        st.booleans(),
    ),
    max_size=8,
)


@given(results)
def test_deny_overrides_review_overrides_allow(items: list[PolicyResult]) -> None:
    enforced = {r.outcome for r in items if r.enforced}
    verdict = combine(items)
    if enforced & {Outcome.DENY, Outcome.ERROR}:
        assert verdict is Verdict.DENY
    elif Outcome.REVIEW in enforced:
        assert verdict is Verdict.REVIEW
    else:
        assert verdict is Verdict.ALLOW


@given(results, st.randoms())
def test_order_of_policies_never_matters(items: list[PolicyResult], rng: random.Random) -> None:
    shuffled = list(items)
    rng.shuffle(shuffled)
    assert combine(shuffled) is combine(items)


@given(results)
def test_shadow_results_never_change_the_verdict(items: list[PolicyResult]) -> None:
    shadow_deny = a_result(Outcome.DENY, enforced=False)
    shadow_error = a_result(Outcome.ERROR, enforced=False)
    assert combine([*items, shadow_deny, shadow_error]) is combine(items)


def test_a_failed_policy_denies() -> None:
    assert combine([a_result(Outcome.ALLOW), a_result(Outcome.ERROR)]) is Verdict.DENY


POLICY = {
    "name": "age_limit",
    "version": "1.0.0",
    "distribution": "idgate",
    "options": {"min_age": 19},
    "enforce": True,
    "timeout_seconds": 2.0,
    "on_error": "deny",
}


def test_policy_set_digest_ignores_order_and_notices_any_change() -> None:
    other = {**POLICY, "name": "other", "options": {}}
    assert policy_set_digest([POLICY, other]) == policy_set_digest([other, POLICY])
    for field, changed in [
        ("name", "age"),
        ("version", "1.0.1"),
        ("distribution", "acme-policies"),
        ("options", {"min_age": 20}),
        ("enforce", False),
        ("timeout_seconds", 1.0),
        ("on_error", "abstain"),
    ]:
        assert policy_set_digest([POLICY]) != policy_set_digest([{**POLICY, field: changed}]), field


@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),  # noqa: DTZ001
    st.timedeltas(min_value=timedelta(milliseconds=1), max_value=timedelta(days=3650)),
)
def test_decision_ids_sort_by_time(at: datetime, later: timedelta) -> None:
    first, second = new_decision_id(at), new_decision_id(at + later)
    assert len(first) == len(second) == 30
    assert first < second
