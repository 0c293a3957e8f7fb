"""The types a policy plugin implements and returns."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from idgate.domain import Certification, PolicyContext, Ruling

OptionsT = TypeVar("OptionsT")

Policy = Callable[[Certification, PolicyContext], Ruling | Awaitable[Ruling]]
"""A configured policy: called once per verification, sync or async, returns a Ruling."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyDefinition(Generic[OptionsT]):
    """Describes one policy a plugin offers.

    `options` is a dataclass whose fields are the policy's options (with their defaults); idgate
    validates the configuration against it, rejecting unknown keys and wrong types, then calls
    `build(options)` once at startup to get the callable that evaluates certifications.
    """

    name: str
    version: str
    options: type[OptionsT]
    build: Callable[[OptionsT], Policy]
    summary: str = ""


AnyPolicyDefinition = PolicyDefinition[Any]
