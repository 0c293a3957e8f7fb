"""The schema's migrations on SQLite and PostgreSQL: they build exactly the tables the code declares,
carry an older database's data over untouched, and `serve` refuses a schema it was not written for."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

from idgate.adapters.crypto import BlindIndexer, FieldCipher, Keyring, KeyringSource
from idgate.adapters.store import IdentityCodec, schema
from idgate.adapters.store.tables import (
    CONSUMED_CERTIFICATIONS,
    IDENTITIES,
    IDENTITY_INDEX,
    PREPARED_REQUESTS,
)
from idgate.domain import Principal, Role, StoreConflict, merkle, records
from tests.databases import TestDatabase
from tests.e2e.test_cli import assert_clean_failure, free_port, idgate
from tests.fakes import a_certification
from tests.stores import sql_store

AT = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
READER = Principal(name="migration-test", role=Role.SERVICE)


def migrate(database: TestDatabase, target: str = "head") -> tuple[str | None, str]:
    engine = database.sync_engine()
    try:
        with engine.begin() as connection:
            return schema.upgrade_connection(connection, target)
    finally:
        engine.dispose()


def revision(database: TestDatabase) -> str | None:
    engine = database.sync_engine()
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def test_the_migrations_build_exactly_the_tables_the_code_declares(empty_database: TestDatabase) -> None:
    assert migrate(empty_database) == (None, schema.head())
    engine = empty_database.sync_engine()
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    engine.dispose()
    assert differences == []


def fill_as_revision_0001(database: TestDatabase, keyring_path: Path) -> dict[str, list[tuple[object, ...]]]:
    """What an idgate at revision 0001 wrote: prepared and used requests, decisions, identities."""
    KeyringSource(keyring_path).save(Keyring.generate(), create=True)
    keyring = KeyringSource(keyring_path).load()
    codec = IdentityCodec(FieldCipher(lambda: keyring), BlindIndexer(lambda: keyring))
    engine = database.sync_engine()
    with engine.begin() as connection:
        for n in range(3):
            certification = a_certification(
                imp_uid=f"imp_{n}", ci=f"CI-{n}", di=f"DI-{n}", phone=f"0101234000{n}", name=f"사람{n}"
            )
            row = codec.new_row(f"acct-{n}", certification, AT)
            connection.execute(IDENTITIES.insert(), row)
            values = {"ci": certification.ci, "di": certification.di, "phone": certification.phone}
            connection.execute(IDENTITY_INDEX.insert(), list(codec.index_entries(row["id"], values)))
            connection.execute(
                sa.text(
                    "INSERT INTO decisions (seq, decision_id, imp_uid, subject, provider, verdict, results, "
                    "policy_set, decided_at) VALUES (:seq, :decision_id, :imp_uid, :subject, 'danal', :verdict, "
                    ":results, 'sha256:old', :at)"
                ),
                {
                    "seq": (1, 2, 5)[n],  # a PostgreSQL sequence leaves gaps where a transaction rolled back
                    "decision_id": f"dec_{n}",
                    "imp_uid": f"imp_{n}",
                    "subject": f"acct-{n}",
                    "verdict": ("allow", "deny", "allow")[n],
                    "results": json.dumps(OLD_RESULTS[n], ensure_ascii=False),
                    "at": AT + timedelta(seconds=n),
                },
            )
            connection.execute(
                CONSUMED_CERTIFICATIONS.insert(),
                {"imp_uid": f"imp_{n}", "decision_id": f"dec_{n}", "consumed_at": AT},
            )
        connection.execute(
            PREPARED_REQUESTS.insert(),
            {
                "merchant_uid": "idg_waiting",
                "subject": "acct-9",
                "created_at": AT,
                "expires_at": AT + timedelta(days=365),
                "used_at": None,
            },
        )
    engine.dispose()
    return {
        table: database.rows(f"select * from {table} order by 1, 2")  # noqa: S608 - fixed table names
        for table in ("identities", "identity_index", "consumed_certifications", "prepared_requests")
    }


OLD_RESULTS: list[list[dict[str, object]]] = [
    [
        {
            "policy": "age_limit",
            "version": "1.0.0",
            "outcome": "allow",
            "code": "age_ok",
            "message": "",
            "enforced": True,
        },
        {
            "policy": "duplicate_identity",
            "version": "1.0.0",
            "outcome": "allow",
            "code": "identity_unique",
            "message": "",
            "enforced": True,
        },
    ],
    [
        {
            "policy": "age_limit",
            "version": "1.0.0",
            "outcome": "deny",
            "code": "under_age",
            "message": "만 19세 미만",
            "enforced": True,
        }
    ],
    [],
]


async def test_a_database_at_the_previous_revision_keeps_everything(
    empty_database: TestDatabase, tmp_path: Path
) -> None:
    migrate(empty_database, "0001")
    before = fill_as_revision_0001(empty_database, tmp_path / "keyring.json")
    assert migrate(empty_database) == ("0001", schema.head())
    for table, rows in before.items():
        assert empty_database.rows(f"select * from {table} order by 1, 2") == rows, table  # noqa: S608
    # The decisions became the log's first entries, in their order, without gaps, nothing lost.
    logged = empty_database.rows(
        "select seq, decision_id, verdict, record, hash from decisions join log_nodes "
        "on log_nodes.level = 0 and log_nodes.idx = decisions.seq - 1 order by seq"
    )
    assert [(seq, decision_id, verdict) for seq, decision_id, verdict, _, _ in logged] == [
        (1, "dec_0", "allow"),
        (2, "dec_1", "deny"),
        (3, "dec_2", "allow"),
    ]
    for (_, _, _, record, leaf), old in zip(logged, OLD_RESULTS, strict=True):
        assert leaf == merkle.leaf_hash(record)
        parsed = records.parse(record)
        assert parsed["results"] == [{**r, "duration_us": 0} for r in old]
        assert parsed["decided_at"].startswith("2026-11-30T09:00:0")
        assert (parsed["identity_ref"], parsed["channel"]) == (None, None)  # not known then
    indexed = empty_database.rows("select seq, position, policy, code from decision_results order by 1, 2")
    assert indexed == [
        (1, 0, "age_limit", "age_ok"),
        (1, 1, "duplicate_identity", "identity_unique"),
        (2, 0, "age_limit", "under_age"),
    ]
    size, frontier = empty_database.rows("select size, frontier from log_head")[0]
    assert merkle.Frontier.from_bytes(size, frontier).root() == merkle.root_of(leaf for *_, leaf in logged)
    # And today's code reads it: identities decrypt, lookups find them, replays are still refused.
    async with sql_store(empty_database, tmp_path) as store:
        old_deny = await store.get_decision("dec_1")
        assert old_deny is not None
        assert [r.message for r in old_deny.results] == ["만 19세 미만"]
        identity = await store.read_identity("acct-1", READER)
        assert identity is not None
        assert (identity.name, identity.phone) == ("사람1", "01012340001")
        assert await store.subjects_with_ci("CI-2") == ["acct-2"]
        assert await store.subjects_with_di("DI-0") == ["acct-0"]
        assert await store.is_consumed("imp_1")
        prepared = await store.find_prepared_request("idg_waiting")
        assert prepared is not None
        assert prepared.subject == "acct-9"


def test_a_database_made_before_migrations_is_recognised_and_upgraded(empty_database: TestDatabase) -> None:
    migrate(empty_database, "0001")
    empty_database.execute("drop table alembic_version")  # as `create_all` left it: tables, no revision
    assert migrate(empty_database) == ("0001", schema.head())
    assert revision(empty_database) == schema.head()


def test_a_person_bound_twice_by_di_stops_the_upgrade_and_names_the_subjects(
    empty_database: TestDatabase, tmp_path: Path
) -> None:
    migrate(empty_database, "0001")
    fill_as_revision_0001(empty_database, tmp_path / "keyring.json")
    # Before the unique index, a race could bind one DI to two accounts.
    empty_database.execute(
        "update identity_index set digest = (select digest from identity_index where kind = 'di' "
        "and identity_id = (select id from identities where subject = 'acct-0')) "
        "where kind = 'di' and identity_id = (select id from identities where subject = 'acct-2')"
    )
    with pytest.raises(StoreConflict, match=r"2 subjects share a person by DI \(acct-0, acct-2\)"):
        migrate(empty_database)
    assert revision(empty_database) == "0001"  # nothing changed
    acct_2 = "(select id from identities where subject = 'acct-2')"
    empty_database.execute(f"delete from identity_index where identity_id = {acct_2}")  # noqa: S608
    empty_database.execute("delete from identities where subject = 'acct-2'")  # as `idgate erase` does
    assert migrate(empty_database) == ("0001", schema.head())


async def test_serve_refuses_a_schema_it_was_not_written_for_and_says_what_to_run(
    empty_database: TestDatabase, tmp_path: Path
) -> None:
    KeyringSource(tmp_path / "keyring.json").save(Keyring.generate(), create=True)
    env = {
        "IDGATE_DATABASE_URL": empty_database.url,
        "IDGATE_KEYRING_PATH": str(tmp_path / "keyring.json"),
        "IDGATE_PORTONE_IMP_KEY": "k",
        "IDGATE_PORTONE_IMP_SECRET": "s",
    }
    serve = ("serve", "--port", str(free_port()))
    assert_clean_failure(
        await idgate(*serve, env=env), 5, "schema_out_of_date", "no idgate tables", "idgate db upgrade"
    )
    migrate(empty_database, "0001")
    assert_clean_failure(
        await idgate(*serve, env=env),
        5,
        "schema revision 0001",
        f"needs {schema.head()}",
        "idgate db upgrade",
    )
    current = await idgate("db", "current", env=env)
    assert current.code == 5
    assert "revision: 0001" in current.out
    upgraded = await idgate("db", "upgrade", env=env)
    assert upgraded.code == 0, upgraded
    assert f"from revision 0001 to {schema.head()}" in upgraded.out
    assert (await idgate("db", "current", env=env)).code == 0
    empty_database.execute("update alembic_version set version_num = '9999'")  # a newer idgate was here
    assert_clean_failure(await idgate(*serve, env=env), 5, "revision 9999", "newer idgate")
    assert_clean_failure(await idgate("db", "upgrade", env=env), 5, "revision 9999", "newer idgate")


def test_the_newest_revision_read_from_file_names_is_alembics_head() -> None:
    from alembic.config import Config  # noqa: PLC0415 - idgate imports alembic only to migrate
    from alembic.script import ScriptDirectory  # noqa: PLC0415

    config = Config()
    config.set_main_option("script_location", str(schema.MIGRATIONS))
    assert schema.head() == ScriptDirectory.from_config(config).get_current_head()
