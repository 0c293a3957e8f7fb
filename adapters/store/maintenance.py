"""Key maintenance on stored identities: status, re-encryption and re-indexing, retiring keys.

Re-encryption is stateless and therefore resumable: each batch takes the rows whose envelopes or
index entries are not yet under the primary keys, rewrites them, and commits. A killed run simply
finds fewer rows next time. Each row is updated only if it is still the version that was read
(compare-and-swap on its key ids), so a verification that rebinds a subject meanwhile is never undone.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from idgate.domain import ConfigurationError, StoreUnavailable

from .errors import translated_errors
from .identities import ENCRYPTED, IdentityCodec
from .tables import IDENTITIES, IDENTITY_INDEX, IdentityIndexRow, IdentityRow


@dataclass(frozen=True, slots=True)
class KeyUsage:
    identities: int
    by_encryption_key: dict[int, int]
    by_index_key: dict[int, int]  # identities whose digests are complete under each index key
    index_rows: dict[int, int]


class KeyMaintenance:
    def __init__(self, engine: AsyncEngine, codec: IdentityCodec) -> None:
        self._engine = engine
        self._codec = codec

    def _session(self) -> AsyncSession:
        return AsyncSession(self._engine, expire_on_commit=False)

    async def usage(self) -> KeyUsage:
        async with translated_errors(), self._session() as session:
            total = (await session.exec(select(func.count()).select_from(IdentityRow))).one()
            by_key = (
                await session.exec(select(IdentityRow.key_id, func.count()).group_by(col(IdentityRow.key_id)))
            ).all()
            by_index = (
                await session.exec(
                    select(IdentityRow.index_key_id, func.count()).group_by(col(IdentityRow.index_key_id))
                )
            ).all()
            index_rows = (
                await session.exec(
                    select(IdentityIndexRow.index_key_id, func.count()).group_by(
                        col(IdentityIndexRow.index_key_id)
                    )
                )
            ).all()
        return KeyUsage(total, dict(by_key), dict(by_index), dict(index_rows))

    def _outdated(self) -> sa.ColumnElement[bool]:
        return sa.or_(
            col(IdentityRow.key_id) != self._codec.cipher.primary_key_id(),
            col(IdentityRow.index_key_id) != self._codec.indexer.primary_key_id(),
        )

    async def pending(self) -> int:
        async with translated_errors(), self._session() as session:
            return (
                await session.exec(select(func.count()).select_from(IdentityRow).where(self._outdated()))
            ).one()

    async def reencrypt_batch(self, limit: int, after: str = "") -> tuple[int, str]:
        """Bring up to `limit` outdated rows (ids after `after`) under the primary keys, in one transaction.

        Returns how many rows were rewritten and the last id looked at ("" when nothing was left).
        Works on SQLAlchemy Core rows: building ORM objects cost ten times the cryptography.
        """
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
            rows = (
                await connection.execute(
                    sa.select(identities)
                    .where(self._outdated(), identities.c.id > after)
                    .order_by(identities.c.id)
                    .limit(limit)
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
            if swapped.rowcount != len(rows):
                # Cannot happen inside BEGIN IMMEDIATE (what `operations()` uses on SQLite); a database
                # without it must lock the rows it reads. Rolling back keeps every row consistent.
                raise StoreUnavailable(
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

    async def check_retirable(self, ring: str, key_id: int) -> None:
        """Refuse to retire a key that still protects or indexes a row."""
        usage = await self.usage()
        in_use = (usage.by_encryption_key if ring == "encryption" else usage.by_index_key).get(key_id, 0)
        if in_use:
            raise ConfigurationError(
                f"{ring} key {key_id} still covers {in_use} identities; run `idgate keys reencrypt` first."
            )

    async def drop_index_entries(self, key_id: int) -> int:
        async with translated_errors(), self._session() as session:
            result = await session.exec(
                sa.delete(IdentityIndexRow).where(col(IdentityIndexRow.index_key_id) == key_id)
            )
            await session.commit()
        return int(result.rowcount)
