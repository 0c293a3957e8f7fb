"""`idgate policies test CASES.toml`: table-driven tests of a policy set, without a database or PortOne.

A case gives a certification (a sandbox person, idgate.testing's adult, or either with fields
changed or left out), what the user claimed, the subject, the time, who this person is already bound
to, how often they were verified lately and whether they are barred; and the verdict and reason codes
it expects. The policies are the configured set (`[policies]` of the config file), or the case
file's own `[policies]` table. docs/plugins.md describes the format.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import msgspec

from idgate.adapters.portone import certification_from_record
from idgate.domain import (
    Certification,
    InvalidRequest,
    Outcome,
    PolicyResult,
    Verdict,
    combine,
)
from idgate.domain.age import SEOUL
from idgate.policies.engine import PluginPolicyEvaluator, configure, load_catalog, new_plugin_manager
from idgate.sandbox.state import load_persons
from idgate.testing import (
    NOW,
    InMemoryBlocklist,
    InMemoryIdentityDirectory,
    InMemoryVerificationHistory,
    certification,
    policy_context,
)

from .claims import ClaimsIn
from .settings import PoliciesSettings, policies_from_table

# Fields a case may leave out: the ones a provider can leave out.
_OPTIONAL_FIELDS = frozenset(
    {"gender", "phone", "carrier", "is_foreigner", "ci", "di", "merchant_uid", "origin"}
)
_REASONS = frozenset({Outcome.DENY, Outcome.REVIEW, Outcome.ERROR})


class Expected(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    verdict: Literal["allow", "deny", "review"]
    # The codes of the enforced results that did not allow or abstain, in any order; left out, not checked.
    codes: list[str] | None = None


class Recent(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """How many decisions this person, and this subject, had just before `now` (for rate rules)."""

    person: int = 0
    subject: int = 0


class Case(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str
    expect: Expected
    person: str | None = None  # a sandbox person's id (sandbox/persons.json)
    certification: dict[str, Any] = msgspec.field(default_factory=dict)
    missing: list[str] = msgspec.field(default_factory=list)
    claims: ClaimsIn | None = None
    subject: str | None = "user-1"
    now: datetime | None = None
    bound_to: list[str] = msgspec.field(default_factory=list)  # subjects this person already has
    recent: Recent = msgspec.field(default_factory=Recent)
    barred: bool = False


class CaseFile(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    case: list[Case]
    policies: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class CaseOutcome:
    """One case's run: what it expected, and what the policies answered."""

    case: Case
    verdict: Verdict
    results: Sequence[PolicyResult]

    @property
    def codes(self) -> list[str]:
        return sorted(r.code for r in self.results if r.enforced and r.outcome in _REASONS)

    @property
    def passed(self) -> bool:
        expected = self.case.expect
        return self.verdict.value == expected.verdict and (
            expected.codes is None or sorted(expected.codes) == self.codes
        )

    def mismatches(self) -> list[str]:
        expected, lines = self.case.expect, []
        if self.verdict.value != expected.verdict:
            lines.append(f"verdict: expected {expected.verdict}, got {self.verdict.value}")
        if expected.codes is not None and sorted(expected.codes) != self.codes:
            lines.append(f"codes:   expected {sorted(expected.codes)}, got {self.codes}")
        return lines


@dataclasses.dataclass(frozen=True, slots=True)
class CaseRun:
    policy_set: str
    enabled: Sequence[str]
    outcomes: Sequence[CaseOutcome]

    @property
    def failed(self) -> list[CaseOutcome]:
        return [o for o in self.outcomes if not o.passed]


def read_case_file(path: Path) -> CaseFile:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidRequest(f"cannot read the case file {path}: {exc.strerror}.") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the case file {path} is not valid TOML: {exc}") from None
    try:
        cases = msgspec.convert(raw, CaseFile, strict=False)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"the case file {path} does not have the cases' shape: {exc}") from None
    if not cases.case:
        raise InvalidRequest(f"the case file {path} has no [[case]]; add at least one.")
    return cases


async def run_case_file(path: Path, configured: PoliciesSettings) -> CaseRun:
    """Every case of the file, under the file's own `[policies]` or else `configured`."""
    cases = read_case_file(path)
    policies = policies_from_table(cases.policies, str(path)) if cases.policies is not None else configured
    catalog = load_catalog(new_plugin_manager(), block=frozenset(policies.block))
    evaluator = PluginPolicyEvaluator(configure(catalog, policies.enabled, policies.options))
    outcomes = [await _run(evaluator, case, path) for case in cases.case]
    return CaseRun(evaluator.policy_set, evaluator.enabled, outcomes)


async def _run(evaluator: PluginPolicyEvaluator, case: Case, path: Path) -> CaseOutcome:
    if case.now is not None and case.now.tzinfo is None:
        raise InvalidRequest(f"{path}: case {case.name!r}: `now` needs a time zone (e.g. +09:00).")
    now = case.now.astimezone(UTC) if case.now else NOW
    certified = _certification(case, now, path)
    directory = InMemoryIdentityDirectory()
    for subject in case.bound_to:
        directory.bind(subject, ci=certified.ci, di=certified.di)
    history = InMemoryVerificationHistory()
    earlier = now - timedelta(seconds=1)
    for _ in range(case.recent.person):
        history.add(ci=certified.ci, di=certified.di, at=earlier)
    for _ in range(case.recent.subject):
        if case.subject is not None:
            history.add(subject=case.subject, at=earlier)
    barred = InMemoryBlocklist()
    if case.barred and certified.ci:
        barred.bar(certified.ci)
    context = policy_context(
        subject=case.subject,
        now=now,
        identities=directory,
        claims=case.claims.to_claims() if case.claims else None,
        history=history,
        barred=barred,
    )
    results = await evaluator.evaluate(certified, context)
    return CaseOutcome(case, combine(results), results)


def _certification(case: Case, now: datetime, path: Path) -> Certification:
    where = f"{path}: case {case.name!r}"
    if case.person is not None:
        persons = {p.id: p for p in load_persons(now.astimezone(SEOUL).date())}
        if case.person not in persons:
            raise InvalidRequest(
                f"{where}: no sandbox person {case.person!r}; known: {', '.join(sorted(persons))}."
            )
        record = {**persons[case.person].record, "imp_uid": "imp_100000000001", "certified": True}
        record["certified_at"] = int((now - timedelta(minutes=1)).timestamp())
        base = certification_from_record(record)
    else:
        base = certification(certified_at=now - timedelta(minutes=1))
    fields = {f.name: f.type for f in dataclasses.fields(Certification)}
    unknown = sorted((set(case.certification) | set(case.missing)) - set(fields))
    if unknown:
        raise InvalidRequest(f"{where}: unknown certification field(s) {', '.join(unknown)}.")
    cannot_miss = sorted(set(case.missing) - _OPTIONAL_FIELDS)
    if cannot_miss:
        raise InvalidRequest(
            f"{where}: {', '.join(cannot_miss)} cannot be missing; only {', '.join(sorted(_OPTIONAL_FIELDS))} can."
        )
    changes: dict[str, Any] = {name: None for name in case.missing}
    if case.certification:
        # Through msgspec, so a date is a date and an enum value one of its members.
        merged = {**_builtins(base), **case.certification}
        try:
            converted = msgspec.convert(merged, Certification, strict=False)
        except msgspec.ValidationError as exc:
            raise InvalidRequest(f"{where}: [case.certification] {exc}") from None
        changes |= {name: getattr(converted, name) for name in case.certification}
    return dataclasses.replace(base, **changes)


def _builtins(value: Certification) -> Mapping[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(value, builtin_types=(datetime, date))
    return out
