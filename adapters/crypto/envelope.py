"""Authenticated field encryption bound to its place, and blind indexes.

Envelope (version 1), all integers big-endian:

    offset  size  field
    0       1     format version, 0x01
    1       1     algorithm, 0x01 = AES-256-GCM
    2       4     encryption key id
    6       12    nonce (random for every write)
    18      n+16  ciphertext and GCM tag

The associated data is pack("idgate/pii/v1", header[0:6], table, column, row id), where pack writes a
count and then each part with its length, so no two different tuples encode alike. Because the header
is inside the associated data, editing the key id fails the tag check like any other edit; the key is
chosen strictly by that id, never by trying several. Each (key, table, column) gets its own subkey
through HKDF-SHA256, and blind indexes use a different keyring altogether.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import struct
from collections.abc import Callable
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .keyring import Key, Keyring

VERSION = 1
AES_256_GCM = 1
HEADER = struct.Struct(">BBI")
NONCE_BYTES = 12
_OVERHEAD = HEADER.size + NONCE_BYTES + 16


class DecryptionError(Exception):
    """A ciphertext failed its integrity check or names a key we do not have. Never carries data."""


def pack(*parts: bytes) -> bytes:
    return struct.pack(">I", len(parts)) + b"".join(struct.pack(">Q", len(p)) + p for p in parts)


@lru_cache(maxsize=1024)
def _subkey(material: bytes, *info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=pack(*info)).derive(material)


@lru_cache(maxsize=1024)
def _aead(material: bytes, table: str, column: str) -> AESGCM:
    return AESGCM(_subkey(material, b"idgate/pii/v1", b"enc", table.encode(), column.encode()))


class FieldCipher:
    """Seals and opens one field of one row. `keyring` is called each time, so rotations are seen."""

    def __init__(self, keyring: Callable[[], Keyring]) -> None:
        self._keyring = keyring

    def primary_key_id(self) -> int:
        return self._keyring().encryption.primary.id

    def seal(
        self, plaintext: bytes, *, table: str, column: str, row_id: bytes, nonce: bytes | None = None
    ) -> bytes:
        """Encrypt under the primary key. `nonce` exists only for the golden test vectors."""
        key = self._keyring().encryption.primary
        header = HEADER.pack(VERSION, AES_256_GCM, key.id)
        nonce = os.urandom(NONCE_BYTES) if nonce is None else nonce
        aad = pack(b"idgate/pii/v1", header, table.encode(), column.encode(), row_id)
        return header + nonce + _aead(key.material, table, column).encrypt(nonce, plaintext, aad)

    def open(self, envelope: bytes, *, table: str, column: str, row_id: bytes) -> bytes:
        where = f"{table}.{column} of row {row_id.hex()}"
        if len(envelope) < _OVERHEAD:
            raise DecryptionError(f"{where}: the ciphertext is truncated")
        version, algorithm, key_id = HEADER.unpack_from(envelope)
        if (version, algorithm) != (VERSION, AES_256_GCM):
            raise DecryptionError(f"{where}: unknown envelope format {version}/{algorithm}")
        key = self._keyring().encryption.get(key_id)
        if key is None:
            raise DecryptionError(f"{where}: encryption key {key_id} is not in the keyring (or is retired)")
        nonce = envelope[HEADER.size : HEADER.size + NONCE_BYTES]
        aad = pack(b"idgate/pii/v1", envelope[: HEADER.size], table.encode(), column.encode(), row_id)
        try:
            return _aead(key.material, table, column).decrypt(
                nonce, envelope[HEADER.size + NONCE_BYTES :], aad
            )
        except InvalidTag:
            raise DecryptionError(f"{where}: the ciphertext failed its integrity check") from None

    @staticmethod
    def key_id_of(envelope: bytes) -> int:
        return int(HEADER.unpack_from(envelope)[2])


# ---- blind indexes --------------------------------------------------------------------------------
NORMALIZATION = {"ci": b"ci/v1", "di": b"di/v1", "phone": b"phone/v1"}


def normalize(kind: str, value: str) -> bytes:
    """The canonical form that is indexed; two spellings of one value index alike."""
    if kind == "phone":
        digits = re.sub(r"\D", "", value)
        if digits.startswith("82") and len(digits) >= 11:  # +82 10 1234 5678 → 01012345678
            digits = "0" + digits[2:]
        return digits.encode()
    # CI and DI are case-sensitive base64 issued by the identity agencies: only whitespace is noise.
    return value.strip().encode()


class BlindIndexer:
    """HMAC-SHA256 digests under the index keys, one subkey per kind and normalisation version."""

    def __init__(self, keyring: Callable[[], Keyring]) -> None:
        self._keyring = keyring

    def digests(self, kind: str, value: str) -> dict[int, bytes]:
        """The value's digest under every readable index key, by index key id."""
        canonical = normalize(kind, value)
        return {key.id: self._digest(key, kind, canonical) for key in self._keyring().index.readable}

    def primary_key_id(self) -> int:
        return self._keyring().index.primary.id

    def pseudonym(self, purpose: str, value: str) -> str:
        """A keyed digest of `value` for `purpose` (hex), under the primary index key: something to
        count or group by that does not keep the value itself (a client's address, say)."""
        return self._pseudonym(self._keyring().index.primary, purpose, value)

    def pseudonyms(self, purpose: str, value: str) -> dict[int, str]:
        """`pseudonym` under every readable index key, by key id: for finding what older keys made."""
        return {key.id: self._pseudonym(key, purpose, value) for key in self._keyring().index.readable}

    @staticmethod
    def _pseudonym(key: Key, purpose: str, value: str) -> str:
        subkey = _subkey(key.material, b"idgate/pseudonym/v1", purpose.encode())
        return hmac.new(subkey, value.encode(), hashlib.sha256).hexdigest()

    @staticmethod
    def _digest(key: Key, kind: str, canonical: bytes) -> bytes:
        subkey = _subkey(key.material, b"idgate/bidx/v1", kind.encode(), NORMALIZATION[kind])
        return hmac.new(subkey, canonical, hashlib.sha256).digest()


def check_value(key: Key, ring: str) -> bytes:
    """A keyed fingerprint of one key (16 bytes), recorded in the database to recognise the keyring.

    It reveals nothing about the key, but a different key with the same id gives a different value,
    so a keyring swapped for another is noticed before anything is written under it.
    """
    subkey = _subkey(key.material, b"idgate/key-check/v1", ring.encode())
    return hmac.new(subkey, b"", hashlib.sha256).digest()[:16]


def same(a: bytes, b: bytes) -> bool:
    """Constant-time equality for digests and plaintexts."""
    return hmac.compare_digest(a, b)
