"""PortOne REST API adapters."""

from .http import PortOneHttp
from .v1 import PortOneV1Credentials, PortOneV1Provider, RetryPolicy, certification_from_record

__all__ = [
    "PortOneHttp",
    "PortOneV1Credentials",
    "PortOneV1Provider",
    "RetryPolicy",
    "certification_from_record",
]
