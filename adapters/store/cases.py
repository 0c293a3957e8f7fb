"""The identity a review case keeps: sealed with the identities' own cipher, bound to the case.

Each field is an envelope of the same FieldCipher identities use, its associated data naming the
`review_cases` table, the column and the opening decision's id, so a kept ciphertext copied into
another case, another column or the identities table fails its integrity check. Nothing is indexed:
a case is found by its decision_id, and the blind indexes are made when an allow binds the identity,
under the index keys of that moment. Plaintext exists only inside these functions.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import sqlalchemy as sa

from idgate.adapters.crypto import DecryptionError
from idgate.domain import (
    Carrier,
    Certification,
    Gender,
    IdentityIntegrityError,
    PolicyDecision,
)
from idgate.domain.cases import CaseState

from .identities import ENCRYPTED, IdentityCodec
from .runner import plain_sql
from .tables import REVIEW_CASES, as_utc

TABLE = "review_cases"
# Cleared when the case closes: everything of the person the case held.
KEPT = (*ENCRYPTED, "key_id", "gender", "is_foreigner", "carrier", "certified_at")


def opened_case(
    codec: IdentityCodec, decision: PolicyDecision, certification: Certification
) -> dict[str, Any]:
    """The review_cases row a review decision with a subject opens, its identity sealed."""
    row_id = decision.decision_id.encode()
    plaintexts = {
        "ci": certification.ci,
        "di": certification.di,
        "phone": certification.phone,
        "name": certification.name,
        "birth_date": certification.birth_date.isoformat(),
    }
    return {
        "decision_id": decision.decision_id,
        "subject": decision.subject,
        "opened_at": decision.decided_at,
        "state": CaseState.OPEN.value,
        "key_id": codec.cipher.primary_key_id(),
        **{
            column: None
            if (value := plaintexts[column]) is None
            else codec.cipher.seal(value.encode(), table=TABLE, column=column, row_id=row_id)
            for column in ENCRYPTED
        },
        "gender": certification.gender.value if certification.gender else None,
        "is_foreigner": certification.is_foreigner,
        "carrier": certification.carrier.value if certification.carrier else None,
        "certified_at": certification.certified_at,
    }


def kept_certification(codec: IdentityCodec, row: Any, opened: PolicyDecision) -> Certification:
    """The certification an open case keeps, as the verification saw it (for binding it on allow)."""
    row_id = opened.decision_id.encode()
    values: dict[str, str | None] = {}
    try:
        for column in ENCRYPTED:
            envelope = getattr(row, column)
            values[column] = (
                None
                if envelope is None
                else codec.cipher.open(bytes(envelope), table=TABLE, column=column, row_id=row_id).decode()
            )
    except DecryptionError as exc:
        raise IdentityIntegrityError(
            f"the identity a review case keeps could not be decrypted ({exc}); it was altered, or the "
            "keyring is not the one it was written with."
        ) from None
    if values["name"] is None or values["birth_date"] is None or row.certified_at is None:
        raise IdentityIntegrityError("an open review case has lost the identity it keeps.")
    return Certification(
        imp_uid=opened.imp_uid,
        merchant_uid=None,
        provider=opened.provider,
        name=values["name"],
        gender=Gender(row.gender) if row.gender else None,
        birth_date=date.fromisoformat(values["birth_date"]),
        phone=values["phone"],
        carrier=Carrier(row.carrier) if row.carrier else None,
        is_foreigner=None if row.is_foreigner is None else bool(row.is_foreigner),  # SQLite says 0 or 1
        ci=values["ci"],
        di=values["di"],
        certified=True,
        certified_at=as_utc(row.certified_at),
    )


_OPENED_COLUMNS = [
    c.name
    for c in REVIEW_CASES.columns
    if c.name not in {"resolved_at", "resolved_by", "note", "resolution_id"}  # set when it closes
]
INSERT_CASE = plain_sql(sa.insert(REVIEW_CASES), columns=_OPENED_COLUMNS)
