"""Decision records as the log keeps them: the one form that is hashed, stored, exported and verified.

Format 1 (`docs/audit-log.md` specifies it for auditors' own tools):

- a JSON object with exactly the keys of `record_of`, in the canonical form of RFC 8785 (JCS):
  members sorted by key, no whitespace, UTF-8, strings escaped as JCS escapes them;
- no floats (durations are whole microseconds), so JCS's number rules never come into play;
- every string NFC-normalised before encoding, so a message typed on another system hashes alike;
- times as UTC, `YYYY-MM-DDTHH:MM:SS.ffffffZ`.

Python's `json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)` writes
exactly this for these records (ASCII keys, no floats), which is what makes a short independent
verifier possible. The record's position in the log (its `seq`) is not inside it: the Merkle tree
fixes positions, and a record moved to another place no longer verifies.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .model import Channel, Outcome, PolicyDecision, PolicyResult, Verdict

FORMAT = 1


def utc_text(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record_of(decision: PolicyDecision, identity_ref: str | None) -> dict[str, Any]:
    """The decision as a format-1 record. `identity_ref` is the keyed digest of the person's CI (or
    DI) the store computed; the record never holds the CI, a name, a phone number or a birth date."""
    record: dict[str, Any] = normalized(
        {
            "format": FORMAT,
            "decision_id": decision.decision_id,
            "decided_at": utc_text(decision.decided_at),
            "verdict": decision.verdict.value,
            "policy_set": decision.policy_set,
            "subject": decision.subject,
            "imp_uid": decision.imp_uid,
            "provider": decision.provider,
            "identity_ref": identity_ref,
            "channel": decision.channel.value if decision.channel else None,
            "caller": decision.caller,
            "results": [
                {
                    "policy": r.policy,
                    "version": r.version,
                    "outcome": r.outcome.value,
                    "code": r.code,
                    "message": r.message,
                    "enforced": r.enforced,
                    "duration_us": r.duration_us,
                }
                for r in decision.results
            ],
        }
    )
    return record


def normalized(value: Any) -> Any:
    """Every string NFC; refuses what format 1 has no room for (floats, non-string keys)."""
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, list | tuple):
        return [normalized(item) for item in value]
    if isinstance(value, Mapping):
        if not all(isinstance(key, str) for key in value):
            raise TypeError("record keys must be strings")
        return {key: normalized(item) for key, item in value.items()}
    raise TypeError(f"a record holds no {type(value).__name__} (format 1 has no floats)")


def canonical(record: Mapping[str, Any]) -> bytes:
    """The record's canonical bytes: what its leaf hash is taken over."""
    return json.dumps(normalized(record), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def decision_of(record: Mapping[str, Any]) -> PolicyDecision:
    """The decision a format-1 record holds (the inverse of `record_of`, its identity_ref aside)."""
    return PolicyDecision(
        decision_id=record["decision_id"],
        imp_uid=record["imp_uid"],
        subject=record["subject"],
        verdict=Verdict(record["verdict"]),
        results=tuple(
            PolicyResult(
                policy=r["policy"],
                version=r["version"],
                outcome=Outcome(r["outcome"]),
                code=r["code"],
                message=r["message"],
                enforced=r["enforced"],
                duration_us=r["duration_us"],
            )
            for r in record["results"]
        ),
        decided_at=datetime.strptime(record["decided_at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC),
        policy_set=record["policy_set"],
        provider=record["provider"],
        channel=Channel(record["channel"]) if record["channel"] else None,
        caller=record["caller"],
    )


def parse(data: bytes) -> dict[str, Any]:
    found = json.loads(data)
    if not isinstance(found, dict) or found.get("format") != FORMAT:
        raise ValueError("not a format-1 decision record")
    return found
