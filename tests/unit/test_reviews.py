"""The review use cases (domain/reviews.py) on the fakes: what is refused and why, when a case
expires, and, for any order of resolutions and expiries, that a case closes exactly once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from idgate.domain import (
    Channel,
    IdentityAlreadyBound,
    InvalidRequest,
    Outcome,
    PolicyDecision,
    Principal,
    ReviewCaseClosed,
    ReviewCaseExpired,
    ReviewCaseNotFound,
    Role,
    Verdict,
    new_decision_id,
    records,
)
from idgate.domain.cases import CaseState, Closing, ReviewCase, ReviewReason, resolution
from idgate.domain.reviews import ReviewRules, expire_cases, list_open_cases, resolve_case
from tests.fakes import FixedClock, InMemoryReviewCases, InMemoryVerificationStore, a_certification, a_result

RULES = ReviewRules(expire_after=timedelta(days=7))
REVIEWER = Principal(name="reviewer-lee", role=Role.REVIEWER)
PERSON = a_certification(ci="CI-1", di="DI-1")


class World:
    def __init__(self) -> None:
        self.clock = FixedClock()
        self.store = InMemoryVerificationStore(clock=self.clock)
        self.cases = InMemoryReviewCases(self.store)
        self._serial = 0

    async def review(self, subject: str | None = "acct-1") -> PolicyDecision:
        self._serial += 1
        imp_uid = f"imp_{self._serial}"
        decision = PolicyDecision(
            decision_id=new_decision_id(self.clock.now()),
            imp_uid=imp_uid,
            subject=subject,
            verdict=Verdict.REVIEW,
            results=(a_result(Outcome.REVIEW, policy="duplicate_identity", code="identity_bound_elsewhere"),),
            decided_at=self.clock.now(),
            policy_set="sha256:unit",
            provider="danal",
        )
        certification = a_certification(imp_uid=imp_uid, ci=PERSON.ci, di=PERSON.di)
        await self.store.record_verification(
            decision=decision, certification=certification, prepared_merchant_uid=None
        )
        return decision

    async def resolve(self, decision_id: str, verdict: Verdict, note: str = "checked") -> object:
        return await resolve_case(
            decision_id, verdict, note, reviewer=REVIEWER, cases=self.cases, clock=self.clock, rules=RULES
        )

    def reviewed(self) -> list[PolicyDecision]:
        return [d for d in self.store.decisions if d.channel is Channel.REVIEW]


@pytest.mark.parametrize(
    ("verdict", "note", "wanted"),
    [
        (Verdict.REVIEW, "n", "allow or deny"),
        (Verdict.ALLOW, "", "say why in `note`"),
        (Verdict.ALLOW, " \n\t", "say why in `note`"),
        (Verdict.DENY, "x" * 2001, "longer than 2000"),
    ],
)
async def test_a_resolution_without_a_verdict_or_a_reason_is_refused_and_changes_nothing(
    verdict: Verdict, note: str, wanted: str
) -> None:
    world = World()
    opened = await world.review()
    with pytest.raises(InvalidRequest, match=wanted):
        await world.resolve(opened.decision_id, verdict, note)
    case = await world.cases.find(opened.decision_id)
    assert case is not None
    assert case.state is CaseState.OPEN
    assert world.reviewed() == []


async def test_unknown_and_malformed_decision_ids() -> None:
    world = World()
    with pytest.raises(ReviewCaseNotFound):
        await world.resolve(new_decision_id(world.clock.now()), Verdict.DENY)
    for malformed in ("dec_nope", "", "dec_01KJP29SWEDHY554H935BG1A1I", "DEC_01KJP29SWEDHY554H935BG1A15"):
        with pytest.raises(InvalidRequest, match="Crockford"):
            await world.resolve(malformed, Verdict.DENY)
    allowed = await world.review(subject=None)  # no subject: nothing an allow could bind, no case
    with pytest.raises(ReviewCaseNotFound):
        await world.resolve(allowed.decision_id, Verdict.ALLOW)


async def test_a_case_can_be_resolved_until_the_instant_it_expires() -> None:
    world = World()
    opened = await world.review()
    world.clock.advance(RULES.expire_after - timedelta(microseconds=1))
    listed = await list_open_cases(cases=world.cases, clock=world.clock, rules=RULES, before=None, limit=10)
    assert [(c.decision_id, c.expires_at) for c in listed.cases] == [
        (opened.decision_id, opened.decided_at + RULES.expire_after)
    ]
    assert listed.cases[0].reasons == (ReviewReason("duplicate_identity", "identity_bound_elsewhere"),)
    world.clock.advance(timedelta(microseconds=1))
    assert (
        await list_open_cases(cases=world.cases, clock=world.clock, rules=RULES, before=None, limit=10)
    ).cases == []
    with pytest.raises(ReviewCaseExpired, match="expired unresolved"):
        await world.resolve(opened.decision_id, Verdict.ALLOW)
    assert world.reviewed() == []  # refused before the housekeeping closed it: nothing logged yet
    assert await expire_cases(cases=world.cases, clock=world.clock, rules=RULES) == 1
    with pytest.raises(ReviewCaseExpired):
        await world.resolve(opened.decision_id, Verdict.DENY)
    [expiry] = world.reviewed()
    assert (expiry.verdict, expiry.caller, expiry.results[0].code) == (Verdict.DENY, None, "expired")


async def test_expiry_closes_only_what_is_due_and_passes_over_what_was_closed_meanwhile() -> None:
    world = World()
    old = [await world.review(f"acct-{n}") for n in range(3)]
    world.clock.advance(timedelta(days=6))
    young = await world.review("acct-9")
    world.clock.advance(timedelta(days=1, seconds=1))
    due = await world.cases.find(old[0].decision_id)
    assert due is not None
    # A reviewer's closing that lands between the expiry's look and its closing.
    await world.cases.close(resolution(due, Closing.RESOLVED_DENY, at=world.clock.now(), by="x", note="n"))
    assert await expire_cases(cases=world.cases, clock=world.clock, rules=RULES) == 2
    states = {d.decision_id: (await world.cases.find(d.decision_id)) for d in [*old, young]}
    assert {k: v.state for k, v in states.items() if v is not None} == {
        old[0].decision_id: CaseState.DENIED,
        old[1].decision_id: CaseState.EXPIRED,
        old[2].decision_id: CaseState.EXPIRED,
        young.decision_id: CaseState.OPEN,
    }
    assert await expire_cases(cases=world.cases, clock=world.clock, rules=RULES) == 0


async def test_a_refused_allow_names_the_way_out() -> None:
    world = World()
    opened = await world.review("acct-2")
    world.store.identities["acct-1"] = PERSON  # bound elsewhere meanwhile
    with pytest.raises(IdentityAlreadyBound, match="the case stays open"):
        await world.resolve(opened.decision_id, Verdict.ALLOW)
    await world.resolve(opened.decision_id, Verdict.DENY)  # still open, so another verdict can close it
    with pytest.raises(ReviewCaseClosed, match=r"resolved already \(deny, by reviewer-lee"):
        await world.resolve(opened.decision_id, Verdict.DENY)


ACTIONS = st.lists(
    st.tuples(
        st.sampled_from(["allow", "deny", "expire"]),
        st.integers(min_value=0, max_value=10 * 86400),  # seconds to wait first
    ),
    max_size=6,
)


@given(actions=ACTIONS, together=st.booleans())
def test_whatever_happens_in_whatever_order_a_case_closes_once(
    actions: list[tuple[str, int]], together: bool
) -> None:
    """Resolutions and expiries, one after another or all at once: the case ends in the state of the
    first that succeeded, the log has exactly one closing for it, and only an allow bound anyone."""

    async def run() -> None:
        world = World()
        opened = await world.review()

        async def act(action: str) -> CaseState | None:
            try:
                if action == "expire":
                    return (
                        CaseState.EXPIRED
                        if await expire_cases(cases=world.cases, clock=world.clock, rules=RULES)
                        else None
                    )
                await world.resolve(opened.decision_id, Verdict(action))
            except (ReviewCaseClosed, IdentityAlreadyBound):
                return None
            return CaseState.ALLOWED if action == "allow" else CaseState.DENIED

        if together:
            world.clock.advance(timedelta(seconds=max((w for _, w in actions), default=0)))
            outcomes = list(await asyncio.gather(*(act(a) for a, _ in actions)))
        else:
            outcomes = []
            for action, wait in actions:
                world.clock.advance(timedelta(seconds=wait))
                outcomes.append(await act(action))
        succeeded = [o for o in outcomes if o is not None]
        assert len(succeeded) <= 1, outcomes
        case = await world.cases.find(opened.decision_id)
        assert case is not None
        assert case.state is (succeeded[0] if succeeded else CaseState.OPEN)
        closings = world.reviewed()
        assert len(closings) == len(succeeded)
        assert ("acct-1" in world.store.identities) == (case.state is CaseState.ALLOWED)
        for closing in closings:
            assert (closing.imp_uid, closing.subject, closing.policy_set) == (
                opened.imp_uid,
                opened.subject,
                opened.policy_set,
            )

    asyncio.run(run())


@given(
    closing=st.sampled_from(list(Closing)),
    by=st.one_of(st.none(), st.text(min_size=1, max_size=80)),
    subject=st.text(min_size=1, max_size=128),
)
def test_a_closing_entry_is_a_format_1_record_of_the_opening_decisions_person(
    closing: Closing, by: str | None, subject: str
) -> None:
    world = World()
    opened = PolicyDecision(
        decision_id=new_decision_id(world.clock.now()),
        imp_uid="imp_1",
        subject=subject,
        verdict=Verdict.REVIEW,
        results=(a_result(Outcome.REVIEW),),
        decided_at=world.clock.now(),
        policy_set="sha256:unit",
        provider="danal",
    )
    case = ReviewCase(decision=opened, state=CaseState.OPEN)
    made = resolution(case, closing, at=world.clock.now() + timedelta(hours=1), by=by, note="anything at all")
    entry = made.entry
    assert entry.verdict is (Verdict.ALLOW if closing is Closing.RESOLVED_ALLOW else Verdict.DENY)
    assert [r.code for r in entry.results] == [closing.value]
    assert (entry.channel, entry.caller, entry.decided_at) == (Channel.REVIEW, by, made.at)
    assert entry.decision_id != opened.decision_id
    record = records.record_of(entry, "ci:1:ref")
    parsed = records.parse(records.canonical(record))
    assert parsed == record
    assert "anything at all" not in records.canonical(record).decode()
    assert records.decision_of(parsed).channel is Channel.REVIEW
