"""Database-backed store adapters."""

from .identities import IdentityCodec
from .keyring_check import KeyFinding, VerifiedKeyring, mismatch_message
from .maintenance import KeyMaintenance, KeyUsage
from .sql import SqlVerificationStore, create_engine
from .tokens import SqlAccessTokens

__all__ = [
    "IdentityCodec",
    "KeyFinding",
    "KeyMaintenance",
    "KeyUsage",
    "SqlAccessTokens",
    "SqlVerificationStore",
    "VerifiedKeyring",
    "create_engine",
    "mismatch_message",
]
