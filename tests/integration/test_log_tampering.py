"""Rows of the decision log changed directly in SQL, as an operator with database access could:
`verify` names the first bad seq and which of edited, deleted, inserted or reordered it looks like,
on both databases. A forger who also rewrites the tree is caught by the signed checkpoint."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import date

import pytest

from idgate.domain import Channel, Principal, Role, auditing, merkle, records, services
from idgate.domain.audit import Tampering, VerifyReport
from idgate.entrypoints.bootstrap import Container, bootstrap
from idgate.entrypoints.settings import Settings, with_overrides
from tests.conftest import Sandbox
from tests.databases import TestDatabase

ENTRIES = 7


@pytest.fixture
async def log(settings: Settings, sandbox: Sandbox) -> AsyncIterator[Container]:
    """A log of seven decisions: adults allowed, minors denied, one signed checkpoint over them all."""
    relaxed = with_overrides(settings, verification={"require_prepare": False})
    async with bootstrap(relaxed) as container:
        for n in range(ENTRIES):
            born = date(1990, 1, 1) if n % 3 else date(2015, 6, 1)  # every third one a minor
            person = sandbox.state.mint_person(born).id
            await container.verify(await sandbox.certify(person), None, f"acct-{n}", channel=Channel.CLI)
        yield container


async def verified(container: Container) -> VerifyReport:
    log, signer = container.decision_log()
    return await auditing.verify_log(log=log, asker=Principal(name="test", role=Role.AUDITOR), checker=signer)


def shift(database: TestDatabase, first: int, by: int) -> None:
    """Move decisions from seq `first` on by `by`, through negative seqs so the key never collides."""
    database.execute("UPDATE decisions SET seq = -seq WHERE seq >= ?", [first])
    database.execute("UPDATE decisions SET seq = -seq + ? WHERE seq < 0", [by])


def record_of(database: TestDatabase, seq: int) -> bytes:
    found: bytes = database.scalar("SELECT record FROM decisions WHERE seq = ?", [seq])
    return bytes(found)


def forge_row(database: TestDatabase, seq: int, record: bytes) -> None:
    """A new decisions row at `seq`, its columns copied from seq 2 and its record the one given."""
    database.execute(
        "INSERT INTO decisions (seq, decision_id, imp_uid, subject, provider, verdict, policy_set, "
        "decided_at, identity_ref, channel, caller, record) SELECT ?, 'dec_forged', imp_uid, subject, "
        "provider, verdict, policy_set, decided_at, identity_ref, channel, caller, ? FROM decisions "
        "WHERE seq = 2",
        [seq, record],
    )


def allowed_instead(record: bytes) -> bytes:
    changed = record.replace(b'"verdict":"deny"', b'"verdict":"allow"')
    assert changed != record
    return changed


def edit(database: TestDatabase) -> None:  # the record of a denial (seq 4) now says allow
    database.execute(
        "UPDATE decisions SET record = ? WHERE seq = 4", [allowed_instead(record_of(database, 4))]
    )


def delete_leaving_a_gap(database: TestDatabase) -> None:
    database.execute("DELETE FROM decisions WHERE seq = 4")


def delete_and_close_the_gap(database: TestDatabase) -> None:
    database.execute("DELETE FROM decisions WHERE seq = 4")
    shift(database, 5, -1)


def delete_the_newest(database: TestDatabase) -> None:
    database.execute("DELETE FROM decisions WHERE seq >= 6")


def insert_in_the_middle(database: TestDatabase) -> None:
    shift(database, 4, 1)
    forge_row(database, 4, allowed_instead(record_of(database, 5)).replace(b"dec_", b"dec_f"))


def insert_after_the_end(database: TestDatabase) -> None:
    forge_row(database, ENTRIES + 1, allowed_instead(record_of(database, 4)).replace(b"dec_", b"dec_f"))


def swap(first: int, second: int) -> Callable[[TestDatabase], None]:
    def reorder(database: TestDatabase) -> None:
        database.execute("UPDATE decisions SET seq = -1 WHERE seq = ?", [first])
        database.execute("UPDATE decisions SET seq = ? WHERE seq = ?", [first, second])
        database.execute("UPDATE decisions SET seq = ? WHERE seq = -1", [second])

    return reorder


@pytest.mark.parametrize(
    ("tamper", "seq", "kind"),
    [
        (edit, 4, Tampering.EDITED),
        (delete_leaving_a_gap, 4, Tampering.DELETED),
        (delete_and_close_the_gap, 4, Tampering.DELETED),
        (delete_the_newest, 6, Tampering.DELETED),
        (insert_in_the_middle, 4, Tampering.INSERTED),
        (insert_after_the_end, ENTRIES + 1, Tampering.INSERTED),
        (swap(2, 5), 2, Tampering.REORDERED),
        (swap(3, 4), 3, Tampering.REORDERED),
    ],
    ids=lambda value: getattr(value, "__name__", str(value)),
)
async def test_rows_changed_in_sql_are_found_at_their_seq(
    log: Container,
    database: TestDatabase,
    tamper: Callable[[TestDatabase], None],
    seq: int,
    kind: Tampering,
) -> None:
    assert (await verified(log)).ok
    tamper(database)
    report = await verified(log)
    assert report.finding is not None
    assert (report.finding.seq, report.finding.kind) == (seq, kind), report.finding


async def test_a_forger_who_rewrites_the_tree_too_is_caught_by_the_signed_checkpoint(
    log: Container, database: TestDatabase
) -> None:
    """Edit a record, then recompute every leaf, node and the head from the rows: the tree agrees with
    itself again, but no longer with the root the log's key signed."""
    assert await log.checkpoint() is not None
    edit(database)
    records = [bytes(r) for (r,) in database.rows("SELECT record FROM decisions ORDER BY seq")]
    levels = merkle.perfect_levels([merkle.leaf_hash(r) for r in records])
    database.execute("DELETE FROM log_nodes")
    for level, hashes in levels:
        for index, node in enumerate(hashes):
            database.execute(
                "INSERT INTO log_nodes (level, idx, hash) VALUES (?, ?, ?)", [level, index, node]
            )
    frontier = merkle.Frontier()
    for record in records:
        frontier.append(merkle.leaf_hash(record))
    database.execute("UPDATE log_head SET frontier = ? WHERE id = 1", [frontier.to_bytes()])

    report = await verified(log)
    assert report.finding is not None
    assert report.finding.kind is Tampering.TREE
    assert "signed" in report.finding.detail
    assert report.finding.seq == 1  # the first checkpoint covers everything from the first entry


async def test_an_untouched_log_verifies_and_counts_every_row(log: Container) -> None:
    assert await log.checkpoint() is not None
    report = await verified(log)
    assert report.ok
    assert (report.size, report.rows, report.checkpoints) == (ENTRIES, ENTRIES, 1)


async def test_erasing_an_identity_leaves_every_record_and_proof_intact(
    log: Container, database: TestDatabase
) -> None:
    assert await log.checkpoint() is not None
    before = database.rows("SELECT seq, record FROM decisions ORDER BY seq")
    admin = Principal(name="ops", role=Role.ADMIN)
    await services.erase_identity("acct-1", accessor=admin, vault=log.vault)
    assert database.scalar("SELECT count(*) FROM identities WHERE subject = 'acct-1'") == 0
    assert database.rows("SELECT seq, record FROM decisions ORDER BY seq") == before
    assert (await verified(log)).ok
    entries, _ = log.decision_log()
    found = await entries.find(records.parse(bytes(before[1][1]))["decision_id"])
    assert found is not None
    assert (await entries.inclusion_proof(found.seq, ENTRIES)).verifies()
