"""The columns the filters read are copies of each record's fields (decisions.verdict, subject …, and
the decision_results rows). One changed in SQL, its record untouched, would hide a decision from an
auditor's filter or show it where it does not belong: `verify` holds every copy against its record
and names the first seq and column that disagree, as an edit. On both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import date

import pytest

from idgate.domain import Channel
from idgate.domain.audit import Tampering, VerifyReport
from idgate.entrypoints.bootstrap import Container, bootstrap
from idgate.entrypoints.settings import Settings, with_overrides
from tests.conftest import Sandbox
from tests.databases import TestDatabase

ENTRIES = 6
EDITED_SEQ = 4  # an allowed adult, verified from the CLI by an operator, with a subject
# An operator's name in text the two JSON writers (Python's for records, the database's for the
# columns) escape differently: a control character, quotes, a backslash; and Korean typed as
# decomposed jamo, which the record holds NFC-normalised, and so does its column.
AWKWARD_CALLER = '김 "ops"\\\t\x01 \u1112\u1161\u11ab'


@pytest.fixture
async def log(settings: Settings, sandbox: Sandbox) -> AsyncIterator[Container]:
    """Six decisions: adults allowed and minors denied, with and without a subject, over HTTP and
    from the CLI with an operator's name (one in awkward text)."""
    relaxed = with_overrides(settings, verification={"require_prepare": False})
    async with bootstrap(relaxed) as container:
        for n in range(1, ENTRIES + 1):
            born = date(2015, 6, 1) if n % 3 == 0 else date(1990, 1, 1)  # seqs 3 and 6 are minors
            person = sandbox.state.mint_person(born).id
            from_cli = n in (1, EDITED_SEQ, 5)
            await container.verify(
                await sandbox.certify(person),
                None,
                None if n == 2 else f"acct-{n}",
                channel=Channel.CLI if from_cli else Channel.HTTP,
                caller=AWKWARD_CALLER if n == 5 else "ops-kim" if from_cli else None,
            )
        yield container


async def verified(container: Container) -> VerifyReport:
    log, signer = container.decision_log()
    return await log.verify(lambda checkpoint: signer.verifies(checkpoint.note))


Edit = Callable[[TestDatabase], object]


def set_column(column: str, value: object) -> Edit:
    def edit(database: TestDatabase) -> object:
        return database.execute(f"UPDATE decisions SET {column} = ? WHERE seq = ?", [value, EDITED_SEQ])  # noqa: S608

    edit.__name__ = f"{column}={value!r}"
    return edit


def later_by_a_second(database: TestDatabase) -> object:
    shifted = (
        "strftime('%Y-%m-%d %H:%M:%f', decided_at, '+1 second') || '000'"
        if database.kind == "sqlite"
        else "decided_at + interval '1 second'"
    )
    return database.execute(f"UPDATE decisions SET decided_at = {shifted} WHERE seq = ?", [EDITED_SEQ])  # noqa: S608


def set_result(column: str, value: object) -> Edit:
    def edit(database: TestDatabase) -> object:
        return database.execute(
            f"UPDATE decision_results SET {column} = ? WHERE seq = ? AND position = 0",  # noqa: S608
            [value, EDITED_SEQ],
        )

    edit.__name__ = f"results.{column}={value!r}"
    return edit


def flip_enforced(database: TestDatabase) -> object:
    return database.execute(
        "UPDATE decision_results SET enforced = NOT enforced WHERE seq = ? AND position = 1", [EDITED_SEQ]
    )


def delete_a_result(database: TestDatabase) -> object:
    return database.execute("DELETE FROM decision_results WHERE seq = ? AND position = 1", [EDITED_SEQ])


def add_a_result(database: TestDatabase) -> object:
    return database.execute(
        "INSERT INTO decision_results (seq, position, policy, version, outcome, code, enforced) "
        "SELECT seq, 2, policy, version, outcome, code, enforced FROM decision_results "
        "WHERE seq = ? AND position = 0",
        [EDITED_SEQ],
    )


def swap_the_results(database: TestDatabase) -> object:
    database.execute("UPDATE decision_results SET position = 9 WHERE seq = ? AND position = 0", [EDITED_SEQ])
    database.execute("UPDATE decision_results SET position = 0 WHERE seq = ? AND position = 1", [EDITED_SEQ])
    return database.execute(
        "UPDATE decision_results SET position = 1 WHERE seq = ? AND position = 9", [EDITED_SEQ]
    )


COLUMN_EDITS = [
    (set_column("verdict", "deny"), "verdict column"),
    (set_column("subject", "acct-someone-else"), "subject column"),
    (set_column("subject", None), "subject column"),
    (set_column("imp_uid", "imp_999999999999"), "imp_uid column"),
    (set_column("provider", "kcp"), "provider column"),
    (later_by_a_second, "decided_at column"),
    (set_column("policy_set", "sha256:0000"), "policy_set column"),
    (set_column("identity_ref", "ci:1:" + "0" * 64), "identity_ref column"),
    (set_column("identity_ref", None), "identity_ref column"),
    (set_column("channel", "http"), "channel column"),
    (set_column("caller", "ops-lee"), "caller column"),
    (set_column("caller", None), "caller column"),
    (set_column("decision_id", "dec_forged"), "decision_id column"),
    (set_result("policy", "other_policy"), "policy of a decision_results row"),
    (set_result("version", "9.9.9"), "version of a decision_results row"),
    (set_result("outcome", "deny"), "outcome of a decision_results row"),
    (set_result("code", "forged_code"), "code of a decision_results row"),
    (flip_enforced, "enforced of a decision_results row"),
    (delete_a_result, "decision_results rows"),
    (add_a_result, "decision_results rows"),
    (swap_the_results, "policy of a decision_results row"),
]


@pytest.mark.parametrize(("edit", "named"), COLUMN_EDITS, ids=lambda value: getattr(value, "__name__", ""))
async def test_a_column_changed_in_sql_is_an_edit_at_its_seq(
    log: Container, database: TestDatabase, edit: Edit, named: str
) -> None:
    assert (await verified(log)).ok
    before = database.rows("SELECT * FROM decisions WHERE seq = ?", [EDITED_SEQ])
    assert edit(database) == 1
    report = await verified(log)
    assert report.finding is not None
    assert (report.finding.seq, report.finding.kind) == (EDITED_SEQ, Tampering.EDITED), report.finding
    assert named in report.finding.detail
    # The finding names the column, never what it held or holds: the values may be personal data.
    for value in [*before[0], "acct-someone-else", "imp_999999999999", "forged_code", "ops-lee"]:
        if isinstance(value, str) and len(value) > 3:
            assert value not in report.finding.detail
    assert report.rows == ENTRIES  # every row was still read


async def test_the_first_seq_whose_copies_disagree_is_named(log: Container, database: TestDatabase) -> None:
    database.execute("UPDATE decisions SET provider = 'kcp' WHERE seq = 5")
    database.execute("UPDATE decision_results SET code = 'forged' WHERE seq = 2 AND position = 1")
    report = await verified(log)
    assert report.finding is not None
    assert (report.finding.seq, report.finding.kind) == (2, Tampering.EDITED)
    assert "code of a decision_results row of seq 2" in report.finding.detail


async def test_an_untouched_log_verifies_whatever_text_its_columns_hold(
    log: Container, database: TestDatabase
) -> None:
    caller = database.scalar("SELECT caller FROM decisions WHERE seq = 5")
    assert "\t" in caller
    assert "\x01" in caller
    assert caller.endswith("\ud55c")  # the jamo, stored NFC-normalised as the record holds them
    assert database.scalar("SELECT count(*) FROM decisions WHERE caller = 'ops-kim'") == 2
    report = await verified(log)
    assert report.ok, report.finding
    assert (report.size, report.rows) == (ENTRIES, ENTRIES)


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_a_copy_of_another_type_disagrees_though_its_bytes_are_alike(
    log: Container, database: TestDatabase
) -> None:
    """SQLite keeps whatever type it is given: the verdict as a BLOB of the same bytes no longer
    matches a filter for that verdict, so it is an edit too."""
    database.execute("UPDATE decisions SET verdict = CAST(verdict AS BLOB) WHERE seq = ?", [EDITED_SEQ])
    report = await verified(log)
    assert report.finding is not None
    assert (report.finding.seq, report.finding.kind) == (EDITED_SEQ, Tampering.EDITED)
    assert "verdict column" in report.finding.detail


async def test_an_edited_record_is_named_as_such_before_its_disagreeing_columns(
    log: Container, database: TestDatabase
) -> None:
    """The record of seq 3 (a denial) now says allow; its verdict column still says deny. Both are
    wrong at seq 3; the record's own edit is the finding."""
    record = bytes(database.scalar("SELECT record FROM decisions WHERE seq = 3"))
    database.execute(
        "UPDATE decisions SET record = ? WHERE seq = 3",
        [record.replace(b'"verdict":"deny"', b'"verdict":"allow"')],
    )
    report = await verified(log)
    assert report.finding is not None
    assert (report.finding.seq, report.finding.kind) == (3, Tampering.EDITED)
    assert "not the one the tree holds" in report.finding.detail
