"""The envelope, the blind index and the keyring: properties, tampering, golden vectors, refusals."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import struct
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given
from hypothesis import strategies as st

from idgate.adapters.crypto import (
    BlindIndexer,
    DecryptionError,
    FieldCipher,
    Key,
    Keyring,
    KeyringSource,
    Ring,
)
from idgate.domain import ConfigurationError, KeyIsPrimary, KeyNotFound, KeyringExists, KeyringUnavailable

GOLDEN_KEY, GOLDEN_INDEX_KEY = bytes(range(32)), bytes(range(32, 64))
GOLDEN_ROW = bytes.fromhex("00112233445566778899aabbccddeeff")
GOLDEN_NAME = "0101000000070000000000000000000000000e9d4b30ad34ac07bfaf4dbfb3c7bdd3ece9b65320c393a1cb"
GOLDEN_EMPTY_CI = "010100000007000102030405060708090a0b1c49e08e92bc7cb89a9a7ca97708fd81"
GOLDEN_CI_DIGEST = "8aeb7a9959d1b3bf63e198d0ef9bdff8abe07c6b9521782475a39b6914f64c08"
GOLDEN_PHONE_DIGEST = "6d47eb5e7aa8193afbebd071edb3059c75dbc442c01ed895cc0d64c8879eb983"

rows = st.binary(min_size=16, max_size=16)
plaintexts = st.one_of(
    st.text(max_size=300),
    st.text(
        alphabet=st.characters(min_codepoint=0xAC00, max_codepoint=0xD7A3), min_size=1, max_size=20
    ),  # 한글
    st.binary(max_size=2000).map(lambda b: b.hex()),
)
columns = st.sampled_from(["ci", "di", "phone", "name", "birth_date"])


def golden_keyring() -> Keyring:
    return Keyring(Ring({7: Key(7, GOLDEN_KEY, "primary")}), Ring({3: Key(3, GOLDEN_INDEX_KEY, "primary")}))


def two_key_keyring() -> Keyring:
    encryption = Ring({1: Key(1, os.urandom(32), "active"), 2: Key(2, os.urandom(32), "primary")})
    return Keyring(encryption, Ring({1: Key(1, os.urandom(32), "primary")}))


KEYS = Keyring.generate()
CIPHER = FieldCipher(lambda: KEYS)


def seal(text: str, column: str = "name", row: bytes = GOLDEN_ROW, table: str = "identities") -> bytes:
    return CIPHER.seal(text.encode(), table=table, column=column, row_id=row)


def open_(envelope: bytes, column: str = "name", row: bytes = GOLDEN_ROW, table: str = "identities") -> str:
    return CIPHER.open(envelope, table=table, column=column, row_id=row).decode()


@given(plaintexts, columns, rows)
def test_round_trip(text: str, column: str, row: bytes) -> None:
    assert open_(seal(text, column, row), column, row) == text


@given(plaintexts, rows, rows)
def test_a_ciphertext_copied_to_another_row_fails(text: str, row: bytes, other: bytes) -> None:
    if row == other:
        return
    with pytest.raises(DecryptionError, match="integrity"):
        open_(seal(text, row=row), row=other)


@given(plaintexts, columns, columns)
def test_a_ciphertext_copied_to_another_column_or_table_fails(text: str, column: str, other: str) -> None:
    envelope = seal(text, column)
    if column != other:
        with pytest.raises(DecryptionError):
            open_(envelope, other)
    with pytest.raises(DecryptionError):
        open_(envelope, column, table="other_table")


@given(plaintexts, st.data())
def test_any_flipped_bit_fails(text: str, data: st.DataObject) -> None:
    envelope = bytearray(seal(text))
    position = data.draw(st.integers(0, len(envelope) - 1))
    envelope[position] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(DecryptionError):
        open_(bytes(envelope))


@given(plaintexts, st.data())
def test_any_truncation_fails_with_the_typed_error(text: str, data: st.DataObject) -> None:
    envelope = seal(text)
    with pytest.raises(DecryptionError):
        open_(envelope[: data.draw(st.integers(0, len(envelope) - 1))])


def test_an_edited_key_id_fails_even_when_it_names_another_real_key() -> None:
    keys = two_key_keyring()
    cipher = FieldCipher(lambda: keys)
    envelope = bytearray(cipher.seal(b"x", table="t", column="c", row_id=GOLDEN_ROW))
    assert struct.unpack(">I", envelope[2:6]) == (2,)
    envelope[2:6] = struct.pack(">I", 1)
    with pytest.raises(DecryptionError, match="integrity"):
        cipher.open(bytes(envelope), table="t", column="c", row_id=GOLDEN_ROW)


def test_a_different_keyring_cannot_read_and_never_returns_garbage() -> None:
    envelope = seal("홍길동")
    other = Keyring.generate()
    with pytest.raises(DecryptionError):
        FieldCipher(lambda: other).open(envelope, table="identities", column="name", row_id=GOLDEN_ROW)


def test_old_keys_read_after_rotation_and_retired_keys_do_not() -> None:
    keys = Keyring.generate()
    holder = {"keys": keys}
    cipher = FieldCipher(lambda: holder["keys"])
    old = cipher.seal(b"v", table="t", column="c", row_id=GOLDEN_ROW)
    holder["keys"] = keys.rotated()
    new = cipher.seal(b"v", table="t", column="c", row_id=GOLDEN_ROW)
    assert (FieldCipher.key_id_of(old), FieldCipher.key_id_of(new)) == (1, 2)
    assert cipher.open(old, table="t", column="c", row_id=GOLDEN_ROW) == b"v"
    holder["keys"] = holder["keys"].retired(1)
    with pytest.raises(DecryptionError, match="not in the keyring"):
        cipher.open(old, table="t", column="c", row_id=GOLDEN_ROW)


def test_every_write_uses_a_fresh_nonce() -> None:
    envelopes = [seal("같은 값") for _ in range(10_000)]
    assert len({e[6:18] for e in envelopes}) == 10_000


def test_golden_vectors() -> None:
    keys = golden_keyring()
    cipher = FieldCipher(lambda: keys)
    name = cipher.seal(
        "홍길동".encode(), table="identities", column="name", row_id=GOLDEN_ROW, nonce=bytes(12)
    )
    empty = cipher.seal(b"", table="identities", column="ci", row_id=GOLDEN_ROW, nonce=bytes(range(12)))
    assert name.hex() == GOLDEN_NAME
    assert empty.hex() == GOLDEN_EMPTY_CI
    assert (
        cipher.open(bytes.fromhex(GOLDEN_NAME), table="identities", column="name", row_id=GOLDEN_ROW)
        == "홍길동".encode()
    )
    indexer = BlindIndexer(lambda: keys)
    assert indexer.digests("ci", " CI== ")[3].hex() == GOLDEN_CI_DIGEST
    assert indexer.digests("phone", "010-1234-5678")[3].hex() == GOLDEN_PHONE_DIGEST


def _pack(*parts: bytes) -> bytes:
    return struct.pack(">I", len(parts)) + b"".join(struct.pack(">Q", len(p)) + p for p in parts)


def _hkdf(material: bytes, *info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_pack(*info)).derive(material)


def test_golden_vectors_follow_the_documented_format() -> None:
    """Re-derive the vectors from the format description with raw primitives, not our code."""
    header = bytes([1, 1]) + struct.pack(">I", 7)
    aad = _pack(b"idgate/pii/v1", header, b"identities", b"name", GOLDEN_ROW)
    key = _hkdf(GOLDEN_KEY, b"idgate/pii/v1", b"enc", b"identities", b"name")
    assert (header + bytes(12) + AESGCM(key).encrypt(bytes(12), "홍길동".encode(), aad)).hex() == GOLDEN_NAME
    index_key = _hkdf(GOLDEN_INDEX_KEY, b"idgate/bidx/v1", b"phone", b"phone/v1")
    assert hmac.new(index_key, b"01012345678", hashlib.sha256).hexdigest() == GOLDEN_PHONE_DIGEST


@pytest.mark.parametrize("spelling", ["010-1234-5678", "01012345678", "+82 10 1234 5678", "010.1234.5678"])
def test_phone_spellings_index_alike(spelling: str) -> None:
    indexer = BlindIndexer(golden_keyring)
    assert indexer.digests("phone", spelling)[3].hex() == GOLDEN_PHONE_DIGEST


@given(st.text(min_size=1, max_size=100))
def test_index_kinds_are_separated(value: str) -> None:
    indexer = BlindIndexer(golden_keyring)
    assert indexer.digests("ci", value) != indexer.digests("di", value)


def test_rotating_the_index_key_keeps_old_digests_searchable() -> None:
    keys = Keyring.generate()
    rotated = keys.rotated(index=True)
    before = BlindIndexer(lambda: keys).digests("ci", "CI==")
    after = BlindIndexer(lambda: rotated).digests("ci", "CI==")
    assert set(after) == {1, 2}
    assert after[1] == before[1]
    assert after[2] != after[1]


# ---- the keyring -------------------------------------------------------------------------------
def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_generated_keyrings_are_private_and_round_trip(tmp_path: Path) -> None:
    source = KeyringSource(tmp_path / "k" / "keyring.json")
    keys = Keyring.generate()
    source.save(keys, create=True)
    assert (source.path.stat().st_mode & 0o777) == 0o600
    assert KeyringSource(source.path).load() == keys
    with pytest.raises(KeyringExists, match="already exists"):
        source.save(Keyring.generate(), create=True)
    assert KeyringSource(source.path).load() == keys


def test_a_keyring_from_the_environment(tmp_path: Path) -> None:
    keys = Keyring.generate()
    inline = base64.b64encode(keys.to_json().encode()).decode()
    assert KeyringSource(tmp_path / "absent.json", inline).load() == keys
    with pytest.raises(ConfigurationError, match="IDGATE_KEYRING is not base64"):
        KeyringSource(tmp_path / "absent.json", "%%%").load()


def _document(**changes: object) -> str:
    doc = json.loads(Keyring.generate().to_json())
    doc.update(changes)
    return json.dumps(doc)


@pytest.mark.parametrize(
    ("content", "mode", "message"),
    [
        (None, 0o600, "no keyring at .*idgate keys generate"),
        ("{not json", 0o600, "malformed: not JSON"),
        (_document(format=2), 0o600, "malformed"),
        (_document(encryption={}), 0o600, "at least one key"),
        (
            _document(encryption={"1": {"key": base64.b64encode(b"short").decode(), "status": "primary"}}),
            0o600,
            "32 bytes",
        ),
        (_document(encryption={"1": {"key": "!!", "status": "primary"}}), 0o600, "not base64"),
        (
            _document(index={"1": {"key": base64.b64encode(bytes(32)).decode(), "status": "active"}}),
            0o600,
            "exactly one key",
        ),
        (
            _document(encryption={"x": {"key": base64.b64encode(bytes(32)).decode(), "status": "primary"}}),
            0o600,
            "positive integers",
        ),
        (Keyring.generate().to_json(), 0o640, "readable by others.*chmod 600"),
        (Keyring.generate().to_json(), 0o604, "readable by others"),
    ],
)
def test_a_bad_keyring_refuses_to_start_and_says_what_to_do(
    tmp_path: Path, content: str | None, mode: int, message: str
) -> None:
    path = tmp_path / "keyring.json"
    if content is not None:
        write(path, content, mode)
    with pytest.raises(ConfigurationError, match=message) as caught:
        KeyringSource(path).load()
    for material in re.findall(r'"key": "([^"]+)"', content or ""):
        assert material not in str(caught.value)


def test_an_unreadable_keyring_is_refused(tmp_path: Path) -> None:
    (tmp_path / "keyring.json").mkdir(mode=0o700)
    with pytest.raises(ConfigurationError, match="cannot be read"):
        KeyringSource(tmp_path / "keyring.json").load()


def test_key_material_never_shows() -> None:
    keys = Keyring.generate()
    text = repr(keys) + repr(keys.encryption) + repr(keys.encryption.primary) + str(keys.index.readable)
    for key in [*keys.encryption.keys.values(), *keys.index.keys.values()]:
        assert base64.b64encode(key.material).decode() not in text
        assert key.material.hex() not in text


def test_the_primary_cannot_be_retired() -> None:
    with pytest.raises(KeyIsPrimary, match="rotate first"):
        Keyring.generate().encryption.retired(1)
    with pytest.raises(KeyNotFound):
        Keyring.generate().encryption.retired(2)


def test_a_keyring_broken_under_a_running_server_is_unavailable_not_misconfigured(tmp_path: Path) -> None:
    source = KeyringSource(tmp_path / "keyring.json")
    keys = Keyring.generate()
    source.save(keys, create=True)
    assert source.current() == keys
    write(source.path, "{broken", 0o600)
    os.utime(source.path, ns=(1, 1))  # a different mtime even on coarse clocks
    time.sleep(1.05)  # the file is looked at no more than once a second
    with pytest.raises(KeyringUnavailable, match="can no longer be read"):
        source.current()
    source.save(keys)  # repaired: served again at once
    assert source.current() == keys
