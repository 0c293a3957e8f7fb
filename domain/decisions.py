"""Pure rules for turning policy results into one verdict."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from datetime import datetime

from .model import Outcome, PolicyResult, Verdict

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def combine(results: Iterable[PolicyResult]) -> Verdict:
    """Deny overrides review, review overrides allow; shadow (not enforced) results never count.

    A policy that failed (`error`) counts as deny: idgate fails closed. Abstentions are ignored, so a
    set of policies that all abstain, or no policies at all, allows.
    """
    enforced = [r.outcome for r in results if r.enforced]
    if Outcome.DENY in enforced or Outcome.ERROR in enforced:
        return Verdict.DENY
    if Outcome.REVIEW in enforced:
        return Verdict.REVIEW
    return Verdict.ALLOW


def policy_set_digest(policies: Iterable[Mapping[str, object]]) -> str:
    """A short, stable digest of every enabled policy's description: its name, version, the
    distribution it came from, its options and how it runs (enforced or shadow, timeout, what an
    error does). Two decisions with the same digest were made by the same rules; the order of
    configuration is irrelevant.
    """
    canonical = sorted(
        json.dumps(dict(policy), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
        for policy in policies
    )
    digest = hashlib.sha256("\n".join(canonical).encode()).hexdigest()
    return f"sha256:{digest[:32]}"


def new_decision_id(at: datetime) -> str:
    """A ULID-style id: 48 bits of milliseconds then 80 random bits, so ids sort by creation time."""
    millis = int(at.timestamp() * 1000)
    value = (millis << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "dec_" + "".join(reversed(chars))
