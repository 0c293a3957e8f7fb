"""The policy plugin kit: everything a product team needs to write an eligibility policy.

A plugin is a module (or object) with `@hookimpl` functions, published under the entry-point group
`idgate.policies`. idgate's own built-in policies are declared and loaded the same way.
"""

from idgate.domain import AgeMethod, Certification, Outcome, PolicyContext, Ruling

from .hookspecs import PROJECT, hookimpl, hookspec
from .sdk import Policy, PolicyDefinition

ENTRY_POINT_GROUP = "idgate.policies"

__all__ = [
    "ENTRY_POINT_GROUP",
    "PROJECT",
    "AgeMethod",
    "Certification",
    "Outcome",
    "Policy",
    "PolicyContext",
    "PolicyDefinition",
    "Ruling",
    "hookimpl",
    "hookspec",
]
