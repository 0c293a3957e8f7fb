"""The policy plugin kit: everything a product team needs to write an eligibility policy.

A plugin is a module (or object) with `@hookimpl` functions, published under the entry-point group
`idgate.policies`. idgate's own built-in policies are declared and loaded the same way.
"""

from idgate.domain import (
    AgeMethod,
    BarredPeople,
    Carrier,
    Certification,
    Claims,
    Gender,
    IdentityDirectory,
    Outcome,
    PolicyContext,
    Ruling,
    VerificationHistory,
)

from .hookspecs import PROJECT, hookimpl, hookspec
from .sdk import AnyPolicyDefinition, Policy, PolicyDefinition

ENTRY_POINT_GROUP = "idgate.policies"

__all__ = [
    "ENTRY_POINT_GROUP",
    "PROJECT",
    "AgeMethod",
    "AnyPolicyDefinition",
    "BarredPeople",
    "Carrier",
    "Certification",
    "Claims",
    "Gender",
    "IdentityDirectory",
    "Outcome",
    "Policy",
    "PolicyContext",
    "PolicyDefinition",
    "Ruling",
    "VerificationHistory",
    "hookimpl",
    "hookspec",
]
