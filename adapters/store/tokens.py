"""API tokens. Only a SHA-256 of each token is stored: tokens are 256-bit random, so a plain hash
cannot be reversed, and lookups stay a single indexed query."""

from __future__ import annotations

import hashlib
import secrets

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from idgate.domain import Clock, Principal, Role, TokenInfo, TokenNameTaken

from .errors import translated_errors
from .tables import API_TOKENS, ApiTokenRow

TOKEN_PREFIX = "idgt_"  # noqa: S105 - a recognisable prefix, not a secret


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SqlAccessTokens:
    def __init__(self, engine: AsyncEngine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock

    def _session(self) -> AsyncSession:
        return AsyncSession(self._engine, expire_on_commit=False)

    async def create(self, name: str, role: Role) -> str:
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = ApiTokenRow(name=name, role=role.value, token_hash=_hash(token), created_at=self._clock.now())
        async with translated_errors(), self._session() as session:
            session.add(row)
            try:
                await session.commit()
            except IntegrityError:
                raise TokenNameTaken(f"a token named {name!r} already exists; pick another name.") from None
        return token

    async def authenticate(self, token: str) -> Principal | None:
        # Core, not the ORM: every authenticated request makes this lookup.
        t = API_TOKENS.c
        query = sa.select(t.name, t.role, t.revoked_at).where(t.token_hash == _hash(token))
        async with translated_errors(), self._engine.connect() as connection:
            row = (await connection.execute(query)).first()
        if row is None or row.revoked_at is not None:
            return None
        return Principal(name=row.name, role=Role(row.role))

    async def list_tokens(self) -> list[TokenInfo]:
        async with translated_errors(), self._session() as session:
            rows = (await session.exec(select(ApiTokenRow).order_by(col(ApiTokenRow.created_at)))).all()
        return [
            TokenInfo(name=r.name, role=Role(r.role), created_at=r.created_at, revoked_at=r.revoked_at)
            for r in rows
        ]

    async def revoke(self, name: str) -> bool:
        async with translated_errors(), self._session() as session:
            result = await session.exec(
                sa.update(ApiTokenRow)
                .where(col(ApiTokenRow.name) == name, col(ApiTokenRow.revoked_at).is_(None))
                .values(revoked_at=self._clock.now())
            )
            await session.commit()
        return bool(result.rowcount)
