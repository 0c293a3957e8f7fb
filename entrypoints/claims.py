"""Claims as they arrive over HTTP or from a file: what the user typed into the product's own form.

They go to the policies and nowhere else: never stored, logged or echoed, not even in an error (the
errors name the field, never its value).
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path
from typing import Annotated

import msgspec

from idgate.domain import Claims, InvalidRequest


class ClaimsIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What the user typed into your own sign-up form, for policies such as `identity_match` to hold
    against what was certified. Never stored, logged or echoed."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    birth_date: date | None = None
    phone: Annotated[str, msgspec.Meta(min_length=1, max_length=20)] | None = None

    def to_claims(self) -> Claims:
        return Claims(name=self.name, birth_date=self.birth_date, phone=self.phone)


def claims_from_json(text: bytes, source: str) -> Claims:
    """Claims from a JSON object such as `{"name": …, "birth_date": "1990-01-31", "phone": …}`."""
    try:
        return msgspec.json.decode(text, type=ClaimsIn).to_claims()
    except msgspec.ValidationError as exc:
        # msgspec names the field and the rule (`Expected `date`… - at `$.birth_date``), not the value.
        raise InvalidRequest(f"the claims in {source} are not valid: {exc}") from None
    except msgspec.DecodeError:
        raise InvalidRequest(f"the claims in {source} are not a JSON object.") from None


def claims_from_file(path: str) -> Claims:
    """`-` reads standard input."""
    try:
        text = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise InvalidRequest(f"cannot read the claims file {path}: {exc.strerror}.") from None
    return claims_from_json(text, "standard input" if path == "-" else path)
