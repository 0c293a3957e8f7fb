"""Database-backed store adapters."""

from .sql import SqlVerificationStore, create_engine

__all__ = ["SqlVerificationStore", "create_engine"]
