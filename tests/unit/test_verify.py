"""The verify and prepare use cases, driven through the domain with fakes."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from idgate.domain import (
    Certification,
    CertificationAlreadyUsed,
    CertificationExpired,
    CertificationNotCompleted,
    CertificationNotFound,
    InvalidCertificationId,
    InvalidRequest,
    MerchantMismatch,
    MerchantUidRequired,
    Outcome,
    PolicyDecision,
    PreparedRequestInvalid,
    Verdict,
    services,
)
from idgate.domain.services import validate_imp_uid
from idgate.entrypoints.bootstrap import Container, bootstrap
from idgate.entrypoints.settings import Settings, load_settings, with_overrides
from tests.fakes import (
    FakeAccessTokens,
    FakeCertificationProvider,
    FixedClock,
    InMemoryVerificationStore,
    StaticPolicyEvaluator,
    a_certification,
    a_result,
)


@dataclass
class World:
    """Fakes for every port, wired by the real composition root, as production wires the adapters."""

    provider: FakeCertificationProvider = field(default_factory=FakeCertificationProvider)
    store: InMemoryVerificationStore = field(default_factory=InMemoryVerificationStore)
    tokens: FakeAccessTokens = field(default_factory=FakeAccessTokens)
    policies: StaticPolicyEvaluator = field(default_factory=StaticPolicyEvaluator)
    clock: FixedClock = field(default_factory=FixedClock)
    settings: Settings = field(default_factory=lambda: load_settings(None, {}))

    def configure(self, **verification: object) -> None:
        self.settings = with_overrides(self.settings, verification=verification)

    @contextlib.asynccontextmanager
    async def container(self) -> AsyncIterator[Container]:
        async with bootstrap(
            self.settings,
            provider=self.provider,
            store=self.store,
            tokens=self.tokens,
            policies=self.policies,
            clock=self.clock,
        ) as container:
            yield container

    async def prepare(self, subject: str | None = "user-1") -> str:
        async with self.container() as container:
            return (await container.prepare(subject)).merchant_uid

    async def verify(
        self, imp_uid: str, merchant_uid: str | None = None, subject: str | None = None
    ) -> PolicyDecision:
        async with self.container() as container:
            return await container.verify(imp_uid, merchant_uid, subject)


@pytest.fixture
def world() -> World:
    return World()


async def test_prepared_verification_is_decided_and_recorded(world: World) -> None:
    merchant_uid = await world.prepare("user-1")
    world.provider.add(a_certification(merchant_uid=merchant_uid))
    world.policies.results = [a_result(Outcome.ALLOW)]
    decision = await world.verify("imp_100000000001", merchant_uid)
    assert decision.verdict is Verdict.ALLOW
    assert decision.subject == "user-1"  # taken from the prepared request
    assert world.store.decisions == [decision]
    assert world.store.consumed == {"imp_100000000001"}


async def test_a_deny_is_recorded_too(world: World) -> None:
    merchant_uid = await world.prepare()
    world.provider.add(a_certification(merchant_uid=merchant_uid))
    world.policies.results = [a_result(Outcome.ALLOW), a_result(Outcome.DENY, policy="q")]
    decision = await world.verify("imp_100000000001", merchant_uid)
    assert decision.verdict is Verdict.DENY
    assert world.store.decisions == [decision]


VALID_IMP_UIDS = st.from_regex(r"imp_[0-9]{1,28}", fullmatch=True)
# Valid ids with something added, swapped or dropped: where a sloppy pattern would let one through.
NEAR_MISSES = st.one_of(
    st.tuples(st.text(max_size=3), VALID_IMP_UIDS, st.text(max_size=3)).map("".join),
    VALID_IMP_UIDS.map(str.upper),
    VALID_IMP_UIDS.map(lambda uid: uid + "0" * 29),
    st.from_regex(r"imp_[0-9]{0,5}[^0-9][0-9]{0,5}", fullmatch=True),
    st.text(max_size=40),
)


def is_imp_uid(text: str) -> bool:
    """The rule written out plainly, independent of the regular expression it is checked against."""
    digits = text.removeprefix("imp_")
    return text.startswith("imp_") and 1 <= len(digits) <= 28 and all(c in "0123456789" for c in digits)


@given(VALID_IMP_UIDS)
def test_every_imp_followed_by_digits_is_accepted(imp_uid: str) -> None:
    assert validate_imp_uid(imp_uid) == imp_uid


@given(NEAR_MISSES)
def test_nothing_else_is_an_imp_uid(text: str) -> None:
    if is_imp_uid(text):
        assert validate_imp_uid(text) == text
    else:
        with pytest.raises(InvalidCertificationId):
            validate_imp_uid(text)


@pytest.mark.parametrize(
    "bad",
    ["../users/getToken", "imp_1/../../x", "imp_12%2F3", "imp_", "IMP_123", "imp_1 ", "imp_" + "1" * 29],
)
async def test_malformed_ids_never_reach_the_provider(world: World, bad: str) -> None:
    with pytest.raises(InvalidCertificationId):
        await world.verify(bad, await world.prepare())
    assert world.provider.calls == []


async def test_without_prepare_binding_a_merchant_uid_is_required(world: World) -> None:
    world.provider.add(a_certification())
    with pytest.raises(MerchantUidRequired, match="POST /certifications/prepare"):
        await world.verify("imp_100000000001")
    assert world.provider.calls == []


async def test_an_unprepared_merchant_uid_is_refused(world: World) -> None:
    world.provider.add(a_certification(merchant_uid="idg_forged"))
    with pytest.raises(PreparedRequestInvalid):
        await world.verify("imp_100000000001", "idg_forged")


async def test_an_expired_prepared_request_is_refused(world: World) -> None:
    merchant_uid = await world.prepare()
    world.provider.add(a_certification(merchant_uid=merchant_uid))
    world.clock.advance(timedelta(seconds=world.settings.verification.prepare_ttl_seconds))
    with pytest.raises(PreparedRequestInvalid, match="expired"):
        await world.verify("imp_100000000001", merchant_uid)


async def test_a_prepared_request_is_bound_to_its_subject(world: World) -> None:
    merchant_uid = await world.prepare("user-1")
    world.provider.add(a_certification(merchant_uid=merchant_uid))
    with pytest.raises(MerchantMismatch, match="different subject"):
        await world.verify("imp_100000000001", merchant_uid, subject="user-2")


async def test_an_imp_uid_from_another_session_is_refused(world: World) -> None:
    mine = await world.prepare()
    world.provider.add(a_certification(merchant_uid="someone-elses"))
    with pytest.raises(MerchantMismatch, match=r"IMP\.certification"):
        await world.verify("imp_100000000001", mine)
    assert world.store.decisions == []


async def test_an_unfinished_certification_is_refused(world: World) -> None:
    merchant_uid = await world.prepare()
    world.provider.add(a_certification(merchant_uid=merchant_uid, certified=False))
    with pytest.raises(CertificationNotCompleted):
        await world.verify("imp_100000000001", merchant_uid)


async def test_an_old_certification_is_refused(world: World) -> None:
    world.configure(require_prepare=False, max_certification_age_seconds=1800)
    world.provider.add(a_certification())
    world.clock.advance(timedelta(minutes=31))
    with pytest.raises(CertificationExpired):
        await world.verify("imp_100000000001")


async def test_an_unknown_imp_uid_is_not_found(world: World) -> None:
    with pytest.raises(CertificationNotFound):
        await world.verify("imp_999", await world.prepare())


async def test_a_replay_is_refused_before_asking_portone_again(world: World) -> None:
    world.configure(require_prepare=False)
    world.provider.add(a_certification())
    await world.verify("imp_100000000001")
    with pytest.raises(CertificationAlreadyUsed):
        await world.verify("imp_100000000001")
    assert world.provider.calls == ["imp_100000000001"]
    assert len(world.store.decisions) == 1


async def test_a_prepared_merchant_uid_is_single_use(world: World) -> None:
    merchant_uid = await world.prepare()
    world.provider.add(a_certification(merchant_uid=merchant_uid))
    world.provider.add(a_certification(imp_uid="imp_100000000002", merchant_uid=merchant_uid))
    await world.verify("imp_100000000001", merchant_uid)
    with pytest.raises(PreparedRequestInvalid):
        await world.verify("imp_100000000002", merchant_uid)


@pytest.mark.parametrize("subject", ["", "a" * 129, "홍길동", "x y", "01012345678\n"])
async def test_subjects_are_account_ids_not_free_text(world: World, subject: str) -> None:
    with pytest.raises(InvalidRequest):
        await world.prepare(subject)


async def test_policies_see_the_subject_and_the_clock(world: World) -> None:
    merchant_uid = await world.prepare("user-7")
    world.provider.add(a_certification(merchant_uid=merchant_uid))
    await world.verify("imp_100000000001", merchant_uid)
    [(certification, context)] = world.policies.seen
    assert certification.imp_uid == "imp_100000000001"
    assert context.subject == "user-7"
    assert context.now == world.clock.now()


def test_certification_repr_carries_no_personal_data() -> None:
    text = repr(a_certification())
    for secret in ("홍길동", "01012345678", "ci-value", "di-value", "1990"):
        assert secret not in text


class RaceLosingStore(InMemoryVerificationStore):
    """Another verification binds the person just before our first commit."""

    async def record_verification(
        self, *, decision: PolicyDecision, certification: Certification, prepared_merchant_uid: str | None
    ) -> None:
        if not self.identities:
            self.identities["someone-else"] = certification
        await super().record_verification(
            decision=decision, certification=certification, prepared_merchant_uid=prepared_merchant_uid
        )


async def test_losing_the_binding_race_is_decided_again_and_denied(world: World) -> None:
    world.store = RaceLosingStore()
    merchant_uid = await world.prepare("user-1")
    world.provider.add(a_certification(merchant_uid=merchant_uid))
    world.policies.results = [a_result(Outcome.ALLOW)]  # no policy looks at bindings
    decision = await world.verify("imp_100000000001", merchant_uid)
    assert decision.verdict is Verdict.DENY
    assert decision.results[-1] == services.BOUND_ELSEWHERE
    assert len(world.policies.seen) == 2  # evaluated again after the conflict
    assert world.store.decisions == [decision]
    assert "user-1" not in world.store.identities


async def test_a_review_after_the_race_stays_a_review(world: World) -> None:
    world.store = RaceLosingStore()
    merchant_uid = await world.prepare("user-1")
    world.provider.add(a_certification(merchant_uid=merchant_uid))
    world.policies.results = [a_result(Outcome.REVIEW)]
    decision = await world.verify("imp_100000000001", merchant_uid)
    assert decision.verdict is Verdict.REVIEW
    assert services.BOUND_ELSEWHERE not in decision.results


async def test_the_composition_root_on_fakes_opens_no_database_and_no_keyring(tmp_path: Path) -> None:
    world = World()
    world.settings = with_overrides(
        world.settings,
        database={"url": f"sqlite+aiosqlite:///{tmp_path}/never/idgate.db"},
        keyring={"path": str(tmp_path / "no-such-keyring.json")},
    )
    async with world.container() as container:
        assert (container.store, container.identities, container.vault) == (world.store,) * 3
        assert container.tokens is world.tokens
        assert container.readiness == {}  # nothing real to check
    assert os.listdir(tmp_path) == []
