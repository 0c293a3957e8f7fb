"""Database-backed store adapters."""

from . import schema
from .database import Database, DatabaseOptions, open_database, parse_url
from .decision_log import SqlDecisionLog
from .identities import IdentityCodec
from .keyring_check import KeyFinding, VerifiedKeyring, mismatch_message
from .maintenance import KeyMaintenance, KeyUsage
from .reviews import SqlReviewCases
from .sql import SqlVerificationStore
from .tokens import SqlAccessTokens

__all__ = [
    "Database",
    "DatabaseOptions",
    "IdentityCodec",
    "KeyFinding",
    "KeyMaintenance",
    "KeyUsage",
    "SqlAccessTokens",
    "SqlDecisionLog",
    "SqlReviewCases",
    "SqlVerificationStore",
    "VerifiedKeyring",
    "mismatch_message",
    "open_database",
    "parse_url",
    "schema",
]
