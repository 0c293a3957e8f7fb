"""One contract for the AccessTokens port, run against the fake and the SQLite adapter."""

from __future__ import annotations

import pytest

from idgate.domain import AccessTokens, Principal, Role, TokenNameTaken


async def test_a_token_authenticates_as_its_name_and_role(tokens: AccessTokens) -> None:
    token = await tokens.create("shop-backend", Role.SERVICE)
    other = await tokens.create("dpo", Role.ADMIN)
    assert token != other
    assert await tokens.authenticate(token) == Principal(name="shop-backend", role=Role.SERVICE)
    assert await tokens.authenticate(other) == Principal(name="dpo", role=Role.ADMIN)
    assert await tokens.authenticate(token + "x") is None
    assert await tokens.authenticate("") is None


async def test_names_are_unique(tokens: AccessTokens) -> None:
    await tokens.create("shop-backend", Role.SERVICE)
    with pytest.raises(TokenNameTaken):
        await tokens.create("shop-backend", Role.ADMIN)
    assert [info.name for info in await tokens.list_tokens()] == ["shop-backend"]


async def test_a_revoked_token_no_longer_authenticates(tokens: AccessTokens) -> None:
    token = await tokens.create("shop-backend", Role.SERVICE)
    assert await tokens.revoke("shop-backend")
    assert not await tokens.revoke("shop-backend")  # already revoked
    assert not await tokens.revoke("nobody")
    assert await tokens.authenticate(token) is None
    [info] = await tokens.list_tokens()
    assert info.revoked_at is not None
    assert info.role is Role.SERVICE


async def test_listing_never_shows_a_token(tokens: AccessTokens) -> None:
    token = await tokens.create("shop-backend", Role.AUDITOR)
    assert token not in repr(await tokens.list_tokens())
