"""`idgate blocklist add|remove|list`, run as an operator would run them, with CIs from a file and from
standard input. On SQLite only: the adapter and the use cases under these commands run on both
databases in tests/contract/test_blocklist.py and tests/integration/test_store_policies.py; here
what is checked is the terminal's side, and that no CI shows up in any output or in the access log."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from idgate.adapters.crypto import Keyring, KeyringSource
from tests.conftest import only_sqlite
from tests.databases import TestDatabase
from tests.e2e.test_cli import IDGATE, Run, assert_clean_failure
from tests.e2e.test_cli_operations import status_rows

CIS = [
    "CNwZM1xMxB6yGYCiqmwaks04A7prdT3rfkw17kaR0KqvAl5JVuiWeqxehqDYmAKPZL6Mxf70L25p+Ps8UAYInQ==",
    "Zm9yIHRoZSBibG9ja2xpc3QgY29udHJhY3QsIGEgc2Vjb25kIHBlcnNvbidzIENJIG9mIDg4IGNoYXJhY3RlcnM=",
    "dGhpcmQgcGVyc29uOiBuZXZlciBiYXJyZWQgaW4gdGhlc2UgdGVzdHMsIGEgQ0kgb2YgODggY2hhcmFjdGVycw==",
]


async def idgate(*args: str, env: dict[str, str], stdin: bytes = b"") -> Run:
    """The installed command with `stdin` as its standard input (closed after it)."""
    process = await asyncio.create_subprocess_exec(
        IDGATE,
        *args,
        env={**os.environ, **env},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate(stdin)
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


def no_ci_in(*texts: str) -> bool:
    return not any(ci[:20] in text for ci in CIS for text in texts)


@pytest.fixture
def env(tmp_path: Path, database: TestDatabase) -> dict[str, str]:
    KeyringSource(tmp_path / "keyring.json").save(Keyring.generate(), create=True)
    return {
        "IDGATE_KEYRING_PATH": str(tmp_path / "keyring.json"),
        "IDGATE_DATABASE_URL": database.url,
        "COLUMNS": "200",  # rich fits tables to the terminal; wide enough that no cell wraps
    }


@only_sqlite
async def test_add_from_a_file_and_stdin_list_and_remove(
    env: dict[str, str], tmp_path: Path, database: TestDatabase
) -> None:
    listing = tmp_path / "barred.txt"
    listing.write_bytes(f"{CIS[0]}\r\n\r\n  {CIS[1]}  \r\n\n".encode())  # CRLF, blank lines, spaces
    outputs: list[str] = []

    from_file = await idgate("blocklist", "add", "--file", str(listing), env=env)
    assert from_file.code == 0, from_file
    assert from_file.out.strip() == "barred 2 people"

    from_stdin = await idgate("blocklist", "add", env=env, stdin=f"{CIS[1]}\n{CIS[2]}\n".encode())
    assert from_stdin.code == 0, from_stdin
    assert from_stdin.out.strip() == "barred 1 person; 1 already barred"

    listed = await idgate("blocklist", "list", env=env)
    assert listed.code == 0, listed
    rows = status_rows(listed.out)
    assert len(rows) == 3
    assert {(r[1].startswith("cli:"), r[2], r[4]) for r in rows} == {(True, "1", "yes")}
    assert all(len(r[3]) == 12 for r in rows)
    as_json = await idgate("blocklist", "list", "--json", env=env)
    entries = json.loads(as_json.out)
    assert [sorted(e) for e in entries] == [
        ["added_at", "added_by", "digest_prefix", "index_keys", "matches"]
    ] * 3
    assert {(tuple(e["index_keys"]), e["matches"]) for e in entries} == {((1,), True)}
    assert sorted(e["digest_prefix"] for e in entries) == sorted(r[3] for r in rows)

    removed = await idgate(
        "blocklist", "remove", "--file", "-", env=env, stdin=f"{CIS[0]}\nnot-barred\n".encode()
    )
    assert removed.code == 0, removed
    assert removed.out.strip() == "removed 1 person; 1 were not barred"
    assert len(json.loads((await idgate("blocklist", "list", "--json", env=env)).out)) == 2

    trail = await idgate("access-log", "list", "--json", env=env)
    changes = [(a["route"], a["filters"]) for a in json.loads(trail.out)]
    assert changes == [
        ("blocklist.remove", {"count": "2"}),
        ("blocklist.add", {"count": "2"}),
        ("blocklist.add", {"count": "2"}),
    ]
    shown = await idgate("access-log", "list", env=env)
    assert ["blocklist.add", "count=2"] in [r[2:4] for r in status_rows(shown.out)]

    outputs += [r.out + r.err for r in (from_file, from_stdin, listed, as_json, removed, trail, shown)]
    assert no_ci_in(*outputs)
    stored = database.stored_bytes()
    assert not [where for where, data in stored.items() for ci in CIS if ci[:20].encode() in data]


@only_sqlite
async def test_cis_come_only_from_a_readable_file_or_stdin(env: dict[str, str], tmp_path: Path) -> None:
    assert_clean_failure(
        await idgate("blocklist", "add", "--file", str(tmp_path / "missing.txt"), env=env),
        2,
        "cannot read",
        "No such file or directory",
    )
    assert_clean_failure(await idgate("blocklist", "add", "--file", str(tmp_path), env=env), 2, "cannot read")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    assert_clean_failure(
        await idgate("blocklist", "add", "--file", str(tmp_path / "latin1.txt"), env=env),
        2,
        "is not UTF-8 text",
    )
    assert_clean_failure(await idgate("blocklist", "remove", env=env, stdin=b"\n \n"), 2, "no CI was given")
    two = await idgate("blocklist", "add", env=env, stdin=f"{CIS[0]} {CIS[1]}\n".encode())
    assert_clean_failure(two, 2, "line 1 holds more than one word")
    assert no_ci_in(two.out + two.err)
    on_argv = await idgate("blocklist", "add", CIS[0], env=env)
    assert_clean_failure(on_argv, 2, "never taken from the command line")
    assert no_ci_in(on_argv.out + on_argv.err)  # not even repeated back
    assert json.loads((await idgate("blocklist", "list", "--json", env=env)).out) == []
