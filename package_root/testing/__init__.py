"""The plugin author's kit: everything needed to test a policy without a database or PortOne.

    from idgate.testing import certification, evaluate_policy

    result = evaluate_policy(MY_POLICY, options={"partners": ["acme"]}, subject="acme:42")
    assert result.outcome is Outcome.ALLOW

- `certification(**changes)`: a realistic certified adult; change any field.
- `policy_context(...)`: the PolicyContext a policy receives, with a frozen `now`.
- `FrozenClock`: a clock that moves only when told.
- `InMemoryIdentityDirectory`: who is bound to which subject, by CI or DI;
  `InMemoryVerificationHistory`: past decisions, for rate rules; `InMemoryBlocklist`: barred people
  (`bar(ci)`).
- `evaluate_policy(policy, options=…, …)`: one policy, configured and run by idgate's own engine
  (option validation, timeout, isolation of failures), returning its PolicyResult.
- `idgate.testing.strategies`: hypothesis strategies (needs `pip install idgate[testing]`).
- The pytest plugin (`idgate.testing.pytest_plugin`, loaded automatically when idgate is installed)
  offers the fixtures `frozen_clock`, `identity_directory`, `make_certification` and `run_policy`.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import unicodedata
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from idgate.domain import (
    Carrier,
    Certification,
    Claims,
    Clock,
    Gender,
    IdentityDirectory,
    PolicyContext,
    PolicyResult,
)
from idgate.domain.blocklist import BarredEntry, BlocklistChange
from idgate.policies import PolicyDefinition, hookimpl
from idgate.policies.engine import PluginPolicyEvaluator, configure, load_catalog, new_plugin_manager
from idgate.policies.sdk import AnyPolicyDefinition

__all__ = [
    "NOW",
    "FrozenClock",
    "InMemoryBlocklist",
    "InMemoryIdentityDirectory",
    "InMemoryVerificationHistory",
    "certification",
    "ci_of",
    "di_of",
    "evaluate_policy",
    "evaluate_policy_async",
    "policy_context",
]

NOW = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)  # 12:00 in Seoul: far from a day's edge
"""The default `now` of the kit: a fixed instant, so a test's ages never drift with the calendar."""


def ci_of(seed: str) -> str:
    """A CI shaped as PortOne returns them (88 characters of base64: 64 bytes and 2), one per seed."""
    digest = hashlib.sha512(f"ci:{seed}".encode()).digest()
    return base64.b64encode(digest + digest[:2]).decode()


def di_of(seed: str) -> str:
    """A DI shaped as PortOne returns them (64 characters of base64), one per seed."""
    return base64.b64encode(hashlib.sha384(f"di:{seed}".encode()).digest()).decode()


def certification(**changes: Any) -> Certification:
    """A certified adult (born 1990-01-01) through Danal, with phone, carrier, CI and DI, made a
    minute before NOW. Pass any field to change it: `certification(ci=None, provider="kakao")`."""
    base = Certification(
        imp_uid="imp_100000000001",
        merchant_uid="idg_kit",
        provider="danal",
        name="홍길동",
        gender=Gender.MALE,
        birth_date=date(1990, 1, 1),
        phone="01012345678",
        carrier=Carrier.SKT,
        is_foreigner=False,
        ci=ci_of("홍길동"),
        di=di_of("홍길동"),
        certified=True,
        certified_at=NOW - timedelta(minutes=1),
        origin=None,
    )
    return dataclasses.replace(base, **changes)


@dataclasses.dataclass
class FrozenClock:
    """The Clock port, standing still at `at` until `advance` moves it."""

    at: datetime = NOW

    def now(self) -> datetime:
        return self.at

    def advance(self, delta: timedelta) -> None:
        self.at += delta


class InMemoryIdentityDirectory:
    """The IdentityDirectory port over a dict: `bind(subject, ci=…, di=…)` says who is whose."""

    def __init__(self) -> None:
        self._by_ci: dict[str, set[str]] = {}
        self._by_di: dict[str, set[str]] = {}

    def bind(self, subject: str, *, ci: str | None = None, di: str | None = None) -> None:
        if ci is not None:
            self._by_ci.setdefault(ci, set()).add(subject)
        if di is not None:
            self._by_di.setdefault(di, set()).add(subject)

    async def subjects_with_ci(self, ci: str) -> Sequence[str]:
        return sorted(self._by_ci.get(ci, ()))

    async def subjects_with_di(self, di: str) -> Sequence[str]:
        return sorted(self._by_di.get(di, ()))


class InMemoryVerificationHistory:
    """The VerificationHistory port over a list: `add(at=…, ci=…, di=…, subject=…)` records a past
    decision. Counted as the decision log counts: a person by CI, and by DI the decisions whose
    certification had no CI; subjects compared in NFC. Held to idgate's own contract suite."""

    def __init__(self) -> None:
        self._decisions: list[tuple[str | None, str | None, str | None, datetime]] = []

    def add(
        self, *, at: datetime, ci: str | None = None, di: str | None = None, subject: str | None = None
    ) -> None:
        self._decisions.append((_key(ci), _key(di), _nfc(subject), at))

    async def decisions_of_person(self, *, ci: str | None, di: str | None, since: datetime) -> int:
        ci, di = _key(ci), _key(di)
        return sum(
            1
            for c, d, _, at in self._decisions
            if at >= since and ((ci is not None and c == ci) or (di is not None and c is None and d == di))
        )

    async def decisions_of_subject(self, subject: str, *, since: datetime) -> int:
        wanted = _nfc(subject)
        return sum(1 for _, _, s, at in self._decisions if s == wanted and at >= since)


def _key(value: str | None) -> str | None:
    """CIs and DIs as the store keys them: surrounding whitespace is not part of them."""
    return value.strip() or None if value is not None else None


def _nfc(text: str | None) -> str | None:
    return None if text is None else unicodedata.normalize("NFC", text)


@dataclasses.dataclass
class InMemoryBlocklist:
    """The blocklist in memory (the BarredPeople port and the operators' Blocklist), keyed like the
    real one by a digest of the CI, never the CI itself. `bar(ci, …)` fills it from a sync test.
    Held to idgate's own contract suite."""

    clock: Clock = dataclasses.field(default_factory=FrozenClock)
    barred: dict[str, tuple[datetime, str]] = dataclasses.field(default_factory=dict)  # digest → (at, by)

    @staticmethod
    def _digest(ci: str) -> str:
        return hashlib.sha256(f"fake-key/blocklist/{ci.strip()}".encode()).hexdigest()

    def bar(self, *cis: str, added_by: str = "test") -> None:
        for ci in cis:
            self.barred.setdefault(self._digest(ci), (self.clock.now(), added_by))

    async def is_barred(self, ci: str) -> bool:
        return self._digest(ci) in self.barred

    async def add(self, cis: Sequence[str], *, added_by: str) -> BlocklistChange:
        new = {self._digest(ci) for ci in cis} - set(self.barred)
        for digest in sorted(new):
            self.barred[digest] = (self.clock.now(), added_by)
        return BlocklistChange(changed=len(new), unchanged=len(cis) - len(new))

    async def remove(self, cis: Sequence[str]) -> BlocklistChange:
        found = [digest for ci in cis if (digest := self._digest(ci)) in self.barred]
        for digest in found:
            del self.barred[digest]
        return BlocklistChange(changed=len(found), unchanged=len(cis) - len(found))

    async def entries(self) -> list[BarredEntry]:
        return sorted(
            (
                BarredEntry((0,), digest[:12], added_at, added_by, matches=True)
                for digest, (added_at, added_by) in self.barred.items()
            ),
            key=lambda entry: entry.added_at,
        )


def policy_context(
    *,
    subject: str | None = "user-1",
    now: datetime = NOW,
    identities: IdentityDirectory | None = None,
    claims: Claims | None = None,
    **ports: Any,
) -> PolicyContext:
    """The context a policy receives; `ports` are the other PolicyContext fields (history, barred)."""
    return PolicyContext(subject=subject, now=now, identities=identities, claims=claims, **ports)


async def evaluate_policy_async(
    policy: AnyPolicyDefinition | str,
    *,
    options: Mapping[str, Any] | None = None,
    certification: Certification | None = None,
    context: PolicyContext | None = None,
) -> PolicyResult:
    """Configure one policy with `options` (its run keys too: enforce, timeout_seconds, on_error)
    and run it the way `idgate serve` would. `policy` is a PolicyDefinition, or the name of an
    installed policy. Bad options raise ConfigurationError, as at startup."""
    plugins: list[object] = []
    if isinstance(policy, PolicyDefinition):
        plugins.append(_offering(policy))
        name = policy.name
    else:
        name = policy
    catalog = load_catalog(new_plugin_manager(), [] if plugins else None, extra=plugins)
    configured = configure(catalog, [name], {name: dict(options or {})})
    evaluator = PluginPolicyEvaluator(configured)
    [result] = await evaluator.evaluate(certification or _a_certification(), context or policy_context())
    return result


def evaluate_policy(
    policy: AnyPolicyDefinition | str,
    *,
    options: Mapping[str, Any] | None = None,
    certification: Certification | None = None,
    context: PolicyContext | None = None,
) -> PolicyResult:
    """`evaluate_policy_async` for synchronous tests (it runs its own event loop)."""
    return asyncio.run(
        evaluate_policy_async(policy, options=options, certification=certification, context=context)
    )


_a_certification = certification  # the factory, under a name the parameters above do not hide


def _offering(definition: AnyPolicyDefinition) -> object:
    class _Plugin:
        @hookimpl
        def idgate_policy_definitions(self) -> list[AnyPolicyDefinition]:
            return [definition]

    return _Plugin()
