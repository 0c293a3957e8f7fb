"""The built-in velocity policy, through the catalog, against the fake decision history: decisions are
recorded into the fake store the way a verification records them, then counted."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from idgate.domain import (
    ConfigurationError,
    Outcome,
    PolicyContext,
    PolicyDecision,
    Ruling,
    Verdict,
    new_decision_id,
)
from idgate.policies.engine import load_catalog, new_plugin_manager
from tests.fakes import T0, InMemoryVerificationHistory, InMemoryVerificationStore, a_certification, a_result
from tests.plugins.test_policy_engine import configure_enabled

WINDOW = 3600
NOW = T0 + timedelta(days=1)


def policy(**options: Any) -> Any:
    [configured] = configure_enabled(load_catalog(new_plugin_manager()), {"velocity": options})
    return configured.policy


async def record(
    store: InMemoryVerificationStore,
    times: int,
    *,
    ago: timedelta = timedelta(minutes=5),
    ci: str | None = "CI-A",
    di: str | None = "DI-A",
    subject: str | None = None,
) -> None:
    """`times` decisions of the person (or for the subject), `ago` before NOW."""
    for _ in range(times):
        n = len(store.decisions) + 1
        decision = PolicyDecision(
            decision_id=new_decision_id(NOW - ago),
            imp_uid=f"imp_{n:012d}",
            subject=subject,
            verdict=Verdict.DENY,
            results=(a_result(Outcome.DENY),),
            decided_at=NOW - ago,
            policy_set="sha256:ab",
            provider="danal",
        )
        await store.record_verification(
            decision=decision,
            certification=a_certification(imp_uid=decision.imp_uid, ci=ci, di=di),
            prepared_merchant_uid=None,
        )


async def rule(
    store: InMemoryVerificationStore | None,
    options: dict[str, Any],
    subject: str | None = "acct-1",
    **cert: Any,
) -> Ruling:
    history = InMemoryVerificationHistory(store) if store is not None else None
    ruling: Ruling = await policy(**options)(
        a_certification(**cert), PolicyContext(subject=subject, now=NOW, history=history)
    )
    return ruling


async def test_the_limits_n_plus_first_verification_is_held() -> None:
    store = InMemoryVerificationStore()
    options = {"max_per_person": 3, "window_seconds": WINDOW}
    await record(store, 2)
    assert (await rule(store, options, ci="CI-A")).code == "within_limit"
    await record(store, 1)  # the third
    held = await rule(store, options, ci="CI-A")
    assert (held.outcome, held.code) == (Outcome.DENY, "too_many_attempts")
    assert "person" in held.message
    assert "CI-A" not in held.message
    review = await rule(store, {**options, "outcome": "review"}, ci="CI-A")
    assert review.outcome is Outcome.REVIEW


async def test_only_the_window_counts() -> None:
    store = InMemoryVerificationStore()
    await record(store, 5, ago=timedelta(seconds=WINDOW + 1))
    await record(store, 1, ago=timedelta(seconds=WINDOW))  # at the window's start: counted
    options = {"max_per_person": 2, "window_seconds": WINDOW}
    assert (await rule(store, options, ci="CI-A")).code == "within_limit"
    await record(store, 1)
    assert (await rule(store, options, ci="CI-A")).code == "too_many_attempts"


async def test_a_certificate_without_ci_is_counted_by_di() -> None:
    store = InMemoryVerificationStore()
    await record(store, 2, ci=None, di="DI-K")
    options = {"max_per_person": 2}
    assert (await rule(store, options, ci=None, di="DI-K")).code == "too_many_attempts"
    assert (await rule(store, options, ci=None, di="DI-OTHER")).code == "within_limit"


async def test_the_subject_limit_counts_every_person_verified_for_the_subject() -> None:
    store = InMemoryVerificationStore()
    for n in range(3):
        await record(store, 1, ci=f"CI-{n}", di=f"DI-{n}", subject="acct-1")
    options = {"max_per_subject": 3, "max_per_person": 10}
    held = await rule(store, options, ci="CI-NEW", di="DI-NEW")
    assert (held.outcome, held.code) == (Outcome.DENY, "too_many_attempts")
    assert "subject" in held.message
    assert "acct-1" not in held.message
    assert (await rule(store, options, subject="acct-2", ci="CI-NEW")).code == "within_limit"


@pytest.mark.parametrize(
    ("options", "subject", "cert", "code"),
    [
        ({"max_per_person": 1}, "acct-1", {"ci": None, "di": None}, "nothing_to_count"),
        ({"max_per_subject": 1}, None, {}, "nothing_to_count"),
        ({"max_per_person": 1, "max_per_subject": 1}, None, {"ci": None, "di": None}, "nothing_to_count"),
        ({"max_per_person": 1, "max_per_subject": 1}, None, {}, "within_limit"),  # the person alone
        ({"max_per_person": 1, "max_per_subject": 1}, "acct-1", {"ci": None, "di": None}, "within_limit"),
    ],
)
async def test_what_cannot_be_counted_is_skipped(
    options: dict[str, Any], subject: str | None, cert: dict[str, Any], code: str
) -> None:
    ruling = await rule(InMemoryVerificationStore(), options, subject=subject, **cert)
    assert ruling.code == code
    assert ruling.outcome is (Outcome.ABSTAIN if code == "nothing_to_count" else Outcome.ALLOW)


async def test_without_a_decision_history_it_fails_closed() -> None:
    ruling = await rule(None, {"max_per_person": 1})
    assert (ruling.outcome, ruling.code) == (Outcome.ERROR, "no_history")


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({}, "max_per_person, max_per_subject or both"),
        ({"max_per_person": 0}, "max_per_person must be 1 or more"),
        ({"max_per_subject": -1}, "max_per_subject must be 1 or more"),
        ({"max_per_person": 1, "window_seconds": 0}, "window_seconds must be from 1"),
        ({"max_per_person": 1, "outcome": "allow"}, "outcome"),
        ({"max_per_person": "3"}, "max_per_person"),
    ],
)
def test_bad_options_are_refused_at_start_up(options: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigurationError, match=r"\[policies\.velocity\]") as refused:
        policy(**options)
    assert says in refused.value.message


limits = st.integers(min_value=1, max_value=8)
counts = st.integers(min_value=0, max_value=10)


@given(counts, counts, limits, limits, st.integers(min_value=0, max_value=4))
def test_allowed_exactly_while_both_counts_are_below_their_limits(
    of_person: int, of_subject: int, person_limit: int, subject_limit: int, outside: int
) -> None:
    """For any counts and limits: allow iff count < limit, for the person and for the subject; what
    lies outside the window, or belongs to someone else, never counts."""
    store = InMemoryVerificationStore()

    async def check() -> Ruling:
        await record(store, of_person, ci="CI-A", di="DI-A")
        await record(store, of_subject, ci="CI-S", di="DI-S", subject="acct-1")
        await record(
            store, outside, ci="CI-A", di="DI-A", subject="acct-1", ago=timedelta(seconds=WINDOW + 60)
        )
        await record(store, outside, ci="CI-Z", di="DI-Z", subject="acct-9")
        options = {"max_per_person": person_limit, "max_per_subject": subject_limit, "window_seconds": WINDOW}
        return await rule(store, options, ci="CI-A", di="DI-A")

    ruling = asyncio.run(check())
    allowed = of_person < person_limit and of_subject < subject_limit
    assert ruling.outcome is (Outcome.ALLOW if allowed else Outcome.DENY)
    assert ruling.code == ("within_limit" if allowed else "too_many_attempts")
