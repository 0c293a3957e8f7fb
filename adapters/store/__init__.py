"""Database-backed store adapters."""

from .identities import IdentityCodec
from .maintenance import KeyMaintenance, KeyUsage
from .sql import SqlVerificationStore, create_engine
from .tokens import SqlAccessTokens, TokenInfo

__all__ = [
    "IdentityCodec",
    "KeyMaintenance",
    "KeyUsage",
    "SqlAccessTokens",
    "SqlVerificationStore",
    "TokenInfo",
    "create_engine",
]
