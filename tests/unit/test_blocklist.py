"""The blocklist's use cases: how CIs are read, and that every change is in the access log first,
with a count and never a CI."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from idgate.domain import InvalidRequest, Principal, Role
from idgate.domain.blocklist import BlocklistChange, bar, read_cis, unbar
from idgate.testing import InMemoryBlocklist
from tests.fakes import T0, InMemoryDecisionLog, InMemoryVerificationStore

OPERATOR = Principal(name="cli:ops", role=Role.ADMIN)
CI_A = "CNwZM1xMxB6yGYCiqmwaks04A7prdT3rfkw17kaR0KqvAl5JVuiWeqxehqDYmAKPZL6Mxf70L25p+Ps8UAYInQ=="
CI_B = "Zm9yIHRoZSBibG9ja2xpc3QgY29udHJhY3QsIGEgc2Vjb25kIHBlcnNvbidzIENJIG9mIDg4IGNoYXJhY3RlcnM="

ci_text = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=", min_size=1, max_size=88
)
blank = st.sampled_from(["", " ", "\t", "\r"])


@given(st.lists(st.tuples(ci_text, blank, blank), min_size=1), st.lists(blank))
def test_cis_are_read_stripped_once_each_in_order_and_blank_lines_skipped(
    given_cis: list[tuple[str, str, str]], blanks: list[str]
) -> None:
    lines = [f"{before}{ci}{after}" for ci, before, after in given_cis] + blanks
    expected = list(dict.fromkeys(ci for ci, _, _ in given_cis))
    assert read_cis(lines) == expected


@pytest.mark.parametrize(
    ("lines", "says"),
    [
        ([], "no CI was given"),
        (["", "  ", "\r"], "no CI was given"),
        ([CI_A, "", f"{CI_B} {CI_A}"], "line 3 holds more than one word"),
        ([CI_A, "x" * 201], "line 2 is 201 characters long"),
    ],
)
def test_what_is_not_a_list_of_cis_is_refused_naming_the_line_not_its_text(
    lines: list[str], says: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        read_cis(lines)
    assert says in refused.value.message
    assert CI_A not in refused.value.message
    assert CI_B not in refused.value.message


async def test_each_change_is_in_the_access_log_with_a_count_and_no_ci() -> None:
    log = InMemoryDecisionLog(InMemoryVerificationStore())
    blocklist = InMemoryBlocklist()
    added = await bar([CI_A, "", f" {CI_B}", CI_A], blocklist=blocklist, log=log, operator=OPERATOR)
    assert added == BlocklistChange(changed=2, unchanged=0)
    assert await blocklist.is_barred(CI_B)
    removed = await unbar([CI_B], blocklist=blocklist, log=log, operator=OPERATOR)
    assert removed == BlocklistChange(changed=1, unchanged=0)
    trail = await log.accesses(limit=10)
    assert [(a.actor, a.route, dict(a.query)) for a in trail] == [
        ("cli:ops", "blocklist.remove", {"count": "1"}),
        ("cli:ops", "blocklist.add", {"count": "2"}),
    ]
    assert all(a.at == T0 for a in trail)
    assert [e.added_by for e in await blocklist.entries()] == ["cli:ops"]


async def test_a_refused_list_changes_nothing_and_is_not_logged() -> None:
    log = InMemoryDecisionLog(InMemoryVerificationStore())
    blocklist = InMemoryBlocklist()
    with pytest.raises(InvalidRequest):
        await bar([CI_A, "two words"], blocklist=blocklist, log=log, operator=OPERATOR)
    assert await blocklist.entries() == []
    assert await log.accesses(limit=10) == []
