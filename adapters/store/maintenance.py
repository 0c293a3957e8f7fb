"""Operator use cases on keys and stored identities: status, rotation, re-encryption, retirement.

The CLI only parses, prints and draws progress bars; tests call these same methods.

Re-encryption is stateless and therefore resumable: each batch takes the rows whose envelopes or
index entries are not yet under the primary keys, rewrites them, and commits. A killed run simply
finds fewer rows next time. Each row is updated only if it is still the version that was read
(compare-and-swap on its key ids), so a verification that rebinds a subject meanwhile is never undone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from idgate.adapters.crypto import BlindIndexer, FieldCipher, KeyringSource
from idgate.domain import Clock, KeyInUse, StoreConflict

from .errors import translated_errors
from .identities import ENCRYPTED, IdentityCodec
from .keyring_check import KeyFinding, VerifiedKeyring, inspect_keyring, key_usage, record_check_values
from .tables import IDENTITIES, IDENTITY_INDEX

Progress = Callable[[int, int], None]
"""Called after every batch with (rows rewritten so far, rows outdated when the run started)."""


@dataclass(frozen=True, slots=True)
class KeyUsage:
    identities: int
    by_encryption_key: dict[int, int]
    by_index_key: dict[int, int]  # identities whose digests are complete under each index key
    index_rows: dict[int, int]


class KeyMaintenance:
    def __init__(self, engine: AsyncEngine, source: KeyringSource, clock: Clock) -> None:
        self._engine = engine
        self._source = source
        self._clock = clock
        self._keyring = VerifiedKeyring(source.current, engine, clock)
        self._codec = IdentityCodec(FieldCipher(self._keyring), BlindIndexer(self._keyring))

    # ---- reading ------------------------------------------------------------------------------
    async def status(self) -> list[KeyFinding]:
        """Every key of the keyring, and every key id stored identities use, against the database.

        Unlike every other method this one never refuses a mismatched keyring: it is how an operator
        finds out what is wrong with it.
        """
        return await inspect_keyring(self._engine, self._source.load())

    async def usage(self) -> KeyUsage:
        async with translated_errors(), self._engine.connect() as connection:
            total = (
                await connection.execute(sa.select(sa.func.count()).select_from(IDENTITIES))
            ).scalar_one()
            usage = await key_usage(connection)
            index_rows = await connection.execute(
                sa.select(IDENTITY_INDEX.c.index_key_id, sa.func.count()).group_by(
                    IDENTITY_INDEX.c.index_key_id
                )
            )
            return KeyUsage(
                int(total),
                usage["encryption"],
                usage["index"],
                {int(k): int(n) for k, n in index_rows.all()},
            )

    async def pending(self) -> int:
        """How many identities are not yet entirely under the primary keys."""
        await self._keyring.refresh()
        async with translated_errors(), self._engine.connect() as connection:
            query = sa.select(sa.func.count()).select_from(IDENTITIES).where(self._outdated())
            return int((await connection.execute(query)).scalar_one())

    # ---- the operator's commands --------------------------------------------------------------
    async def rotate(self, *, index: bool = False) -> int:
        """Make a new primary encryption (or index) key and return its id; the old one stays readable."""
        await self._keyring.refresh()  # never rotate away from a keyring that does not fit
        rotated = self._source.load().rotated(index=index)
        self._source.save(rotated)
        # Saved first: a value recorded for a key that never reached the file would later refuse a
        # different key given the same id.
        await record_check_values(self._engine, rotated, self._clock)
        return rotated.ring(index=index).primary.id

    async def reencrypt_all(self, *, batch_size: int = 500, progress: Progress | None = None) -> int:
        """Move every identity under the primary keys, a batch per transaction; returns rows rewritten."""
        total = await self.pending()
        rewritten, after = 0, ""
        while True:
            done, after = await self.reencrypt_batch(batch_size, after)
            if not after:
                return rewritten
            rewritten += done
            if progress is not None:
                progress(rewritten, total)

    async def retire(self, key_id: int, *, index: bool = False) -> None:
        """Retire a key no identity needs any more; refuses the primary key and a key still in use."""
        await self._keyring.refresh()
        retired = self._source.load().retired(key_id, index=index)  # refuses the primary and unknown ids
        ring = "index" if index else "encryption"
        usage = await self.usage()
        in_use = (usage.by_index_key if index else usage.by_encryption_key).get(key_id, 0)
        if in_use:
            raise KeyInUse(
                f"{ring} key {key_id} still covers {in_use} identities; run `idgate keys reencrypt` first."
            )
        if index:
            await self._drop_index_entries(key_id)
        self._source.save(retired)

    # ---- the batch behind reencrypt_all -------------------------------------------------------
    def _outdated(self) -> sa.ColumnElement[bool]:
        return sa.or_(
            IDENTITIES.c.key_id != self._codec.cipher.primary_key_id(),
            IDENTITIES.c.index_key_id != self._codec.indexer.primary_key_id(),
        )

    async def reencrypt_batch(self, limit: int, after: str = "") -> tuple[int, str]:
        """Bring up to `limit` outdated rows (ids after `after`) under the primary keys, in one transaction.

        Returns how many rows were rewritten and the last id looked at ("" when nothing was left).
        Works on SQLAlchemy Core rows: building ORM objects cost ten times the cryptography.
        """
        await self._keyring.refresh()
        primary_key = self._codec.cipher.primary_key_id()
        primary_index = self._codec.indexer.primary_key_id()
        identities = IDENTITIES
        compare_and_swap = (
            sa.update(identities)
            .where(
                identities.c.id == sa.bindparam("row_id"),
                identities.c.key_id == sa.bindparam("old_key"),
                identities.c.index_key_id == sa.bindparam("old_index"),
            )
            .values(
                {
                    **{c: sa.bindparam(f"new_{c}") for c in ENCRYPTED},
                    "key_id": primary_key,
                    "index_key_id": primary_index,
                }
            )
        )
        async with translated_errors(), self._engine.begin() as connection:
            # SQLite: the engine's BEGIN IMMEDIATE already holds every other writer off. PostgreSQL: the
            # rows are locked for the batch, and rows a verification is rebinding right now are left
            # for the next run instead of waited for (SQLite's compiler leaves the clause out).
            rows = (
                await connection.execute(
                    sa.select(identities)
                    .where(self._outdated(), identities.c.id > after)
                    .order_by(identities.c.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return 0, ""
            plaintexts = {row.id: self._codec.plaintexts(row) for row in rows}
            swapped = await connection.execute(
                compare_and_swap,
                [
                    {"row_id": row.id, "old_key": row.key_id, "old_index": row.index_key_id}
                    | {f"new_{c}": v for c, v in self._codec.sealed(row.id, plaintexts[row.id]).items()}
                    for row in rows
                ],
            )
            # asyncpg reports no row count for a batch of UPDATEs; the locks above are what count there.
            sane = connection.dialect.supports_sane_multi_rowcount
            if sane and swapped.rowcount != len(rows):
                # Cannot happen while the rows are locked (above); should it ever, rolling back keeps
                # every row consistent.
                raise StoreConflict(
                    "identities changed during re-encryption; run `idgate keys reencrypt` again."
                )
            reindexed = [row.id for row in rows if row.index_key_id != primary_index]
            if reindexed:
                index = IDENTITY_INDEX
                await connection.execute(
                    sa.delete(index).where(
                        index.c.identity_id.in_(reindexed), index.c.index_key_id == primary_index
                    )
                )
                entries = [
                    entry
                    for identity_id in reindexed
                    for entry in self._codec.index_entries(
                        identity_id, plaintexts[identity_id], only_key=primary_index
                    )
                ]
                if entries:
                    await connection.execute(sa.insert(IDENTITY_INDEX), entries)
        return len(rows), rows[-1].id

    async def _drop_index_entries(self, key_id: int) -> int:
        async with translated_errors(), self._engine.begin() as connection:
            result = await connection.execute(
                sa.delete(IDENTITY_INDEX).where(IDENTITY_INDEX.c.index_key_id == key_id)
            )
        return int(result.rowcount)
