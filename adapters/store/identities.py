"""Mapping identities to encrypted rows and back. Plaintext exists only inside these functions."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from idgate.adapters.crypto import BlindIndexer, DecryptionError, FieldCipher, normalize
from idgate.domain import Carrier, Certification, Gender, IdentityIntegrityError, VerifiedIdentity

from .tables import IdentityRow, as_utc

TABLE = "identities"
ENCRYPTED = ("ci", "di", "phone", "name", "birth_date")
INDEXED = ("ci", "di", "phone")


class IdentityCodec:
    def __init__(self, cipher: FieldCipher, indexer: BlindIndexer) -> None:
        self.cipher = cipher
        self.indexer = indexer

    def new_row(self, subject: str, certification: Certification, bound_at: datetime) -> dict[str, Any]:
        """The column values of a new identities row, encrypted fields sealed.

        A dict, not an IdentityRow: building an ORM-instrumented object cost forty times the encryption.
        """
        row_id = str(uuid.uuid4())
        return {
            "id": row_id,
            "subject": subject,
            "key_id": self.cipher.primary_key_id(),
            "index_key_id": self.indexer.primary_key_id(),
            "gender": certification.gender.value if certification.gender else None,
            "is_foreigner": certification.is_foreigner,
            "carrier": certification.carrier.value if certification.carrier else None,
            "provider": certification.provider,
            "certified_at": certification.certified_at,
            "bound_at": bound_at,
            **self.sealed(row_id, _plaintexts(certification)),
        }

    def sealed(self, row_id: str, values: dict[str, str | None]) -> dict[str, bytes | None]:
        """Fresh envelopes of every encrypted column under the primary key, bound to the row id."""
        row = uuid.UUID(row_id).bytes
        return {
            column: None
            if (value := values[column]) is None
            else self.cipher.seal(value.encode(), table=TABLE, column=column, row_id=row)
            for column in ENCRYPTED
        }

    def index_entries(
        self, identity_id: str, values: dict[str, str | None], *, only_key: int | None = None
    ) -> Iterator[dict[str, object]]:
        """Rows for the identity_index table (as plain dicts, for one bulk INSERT)."""
        for kind in INDEXED:
            value = values.get(kind)
            if not value:
                continue
            for key_id, digest in self.indexer.digests(kind, value).items():
                if only_key is None or key_id == only_key:
                    yield {"identity_id": identity_id, "kind": kind, "index_key_id": key_id, "digest": digest}

    def plaintexts(self, row: IdentityRow | sa.Row[Any]) -> dict[str, str | None]:
        row_id = uuid.UUID(row.id).bytes
        values: dict[str, str | None] = {}
        try:
            for column in ENCRYPTED:
                envelope = getattr(row, column)
                values[column] = (
                    None
                    if envelope is None
                    else self.cipher.open(envelope, table=TABLE, column=column, row_id=row_id).decode()
                )
        except DecryptionError as exc:
            raise IdentityIntegrityError(
                f"a stored identity could not be decrypted ({exc}); it was altered, or the keyring is not the one it was written with."
            ) from None
        return values

    def identity(self, row: IdentityRow | sa.Row[Any]) -> VerifiedIdentity:
        values = self.plaintexts(row)
        return VerifiedIdentity(
            subject=row.subject,
            name=values["name"] or "",
            birth_date=date.fromisoformat(values["birth_date"] or ""),
            gender=Gender(row.gender) if row.gender else None,
            phone=values["phone"],
            carrier=Carrier(row.carrier) if row.carrier else None,
            is_foreigner=None if row.is_foreigner is None else bool(row.is_foreigner),  # SQLite says 0 or 1
            provider=row.provider,
            certified_at=as_utc(row.certified_at),
        )

    def digests(self, kind: str, value: str) -> dict[int, bytes]:
        return self.indexer.digests(kind, value)

    def identity_ref(self, certification: Certification) -> str | None:
        """The person's pseudonym in the decision log: a keyed digest of the CI (of the DI without a
        CI), under the primary index key, tagged with its kind and key: `ci:1:<64 hex digits>`."""
        for kind, value in (("ci", certification.ci), ("di", certification.di)):
            if value:
                canonical = normalize(kind, value).decode()
                key_id = self.indexer.primary_key_id()
                return f"{kind}:{key_id}:{self.indexer.pseudonym(f'identity-ref/{kind}', canonical)}"
        return None

    def identity_refs(self, kind: str, value: str) -> list[str]:
        """Every ref the person may have been logged under: one per readable index key."""
        canonical = normalize(kind, value).decode()
        found = self.indexer.pseudonyms(f"identity-ref/{kind}", canonical)
        return [f"{kind}:{key_id}:{digest}" for key_id, digest in found.items()]

    @staticmethod
    def canonical(kind: str, value: str) -> bytes:
        return normalize(kind, value)


def _plaintexts(c: Certification) -> dict[str, str | None]:
    return {"ci": c.ci, "di": c.di, "phone": c.phone, "name": c.name, "birth_date": c.birth_date.isoformat()}
