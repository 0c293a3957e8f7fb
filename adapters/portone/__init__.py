"""PortOne REST API adapters."""

from .v1 import PortOneV1Credentials, PortOneV1Provider, RetryPolicy

__all__ = ["PortOneV1Credentials", "PortOneV1Provider", "RetryPolicy"]
