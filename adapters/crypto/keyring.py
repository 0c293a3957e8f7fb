"""Keyrings: the encryption keys (by id, with a status) and the separate blind-index keys.

The keyring document is JSON:

    {"format": 1,
     "encryption": {"1": {"key": "<base64 32 bytes>", "status": "active"},
                    "2": {"key": "...", "status": "primary"}},
     "index":      {"1": {"key": "...", "status": "primary"}}}

Exactly one key per ring is `primary` (used for new writes and new index entries); `active` keys are
still read (and their index entries still searched); `retired` keys are kept but never used. Key
material never appears in a repr, a message or a log line.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from idgate.domain import ConfigurationError, KeyIsPrimary, KeyNotFound, KeyringExists, KeyringUnavailable

Status = Literal["primary", "active", "retired"]
_STATUSES = ("primary", "active", "retired")
KEY_BYTES = 32


@dataclass(frozen=True, slots=True)
class Key:
    id: int
    material: bytes = field(repr=False)
    status: Status

    def __repr__(self) -> str:
        return f"Key(id={self.id}, status={self.status})"


@dataclass(frozen=True, slots=True)
class Ring:
    """One set of keys (encryption or index)."""

    keys: Mapping[int, Key]

    @property
    def primary(self) -> Key:
        return next(k for k in self.keys.values() if k.status == "primary")

    @property
    def readable(self) -> list[Key]:
        """Primary first, then active keys: what reads and index lookups use."""
        return sorted(
            (k for k in self.keys.values() if k.status != "retired"), key=lambda k: k.status != "primary"
        )

    def get(self, key_id: int) -> Key | None:
        key = self.keys.get(key_id)
        return key if key is not None and key.status != "retired" else None

    def rotated(self) -> Ring:
        """A new primary key; the old primary stays readable as `active`."""
        new_id = max(self.keys) + 1
        keys = {k.id: replace(k, status="active") if k.status == "primary" else k for k in self.keys.values()}
        keys[new_id] = Key(new_id, secrets.token_bytes(KEY_BYTES), "primary")
        return Ring(keys)

    def retired(self, key_id: int) -> Ring:
        key = self.keys.get(key_id)
        if key is None:
            raise KeyNotFound(f"there is no key {key_id}; see `idgate keys status`.")
        if key.status == "primary":
            raise KeyIsPrimary(
                f"key {key_id} is the primary key; rotate first, then re-encrypt, then retire it."
            )
        return Ring({**self.keys, key_id: replace(key, status="retired")})


@dataclass(frozen=True, slots=True)
class Keyring:
    encryption: Ring
    index: Ring

    def __repr__(self) -> str:
        return (
            f"Keyring(encryption primary={self.encryption.primary.id} of {len(self.encryption.keys)}, "
            f"index primary={self.index.primary.id} of {len(self.index.keys)})"
        )

    def ring(self, *, index: bool = False) -> Ring:
        return self.index if index else self.encryption

    def rotated(self, *, index: bool = False) -> Keyring:
        """A new primary encryption (or index) key; the other ring is unchanged."""
        return (
            replace(self, index=self.index.rotated())
            if index
            else replace(self, encryption=self.encryption.rotated())
        )

    def retired(self, key_id: int, *, index: bool = False) -> Keyring:
        """Key `key_id` of the encryption (or index) ring marked retired; refuses the primary."""
        if index:
            return replace(self, index=self.index.retired(key_id))
        return replace(self, encryption=self.encryption.retired(key_id))

    @classmethod
    def generate(cls) -> Keyring:
        def fresh() -> Ring:
            return Ring({1: Key(1, secrets.token_bytes(KEY_BYTES), "primary")})

        return cls(fresh(), fresh())

    # ---- (de)serialisation --------------------------------------------------------------------
    def to_json(self) -> str:
        def ring(r: Ring) -> dict[str, dict[str, str]]:
            return {
                str(k.id): {"key": base64.b64encode(k.material).decode(), "status": k.status}
                for k in sorted(r.keys.values(), key=lambda k: k.id)
            }

        return json.dumps(
            {"format": 1, "encryption": ring(self.encryption), "index": ring(self.index)}, indent=2
        )

    @classmethod
    def from_json(cls, text: str, source: str) -> Keyring:
        def bad(why: str) -> ConfigurationError:
            return ConfigurationError(
                f"the keyring from {source} is malformed: {why}. Restore it from your backup."
            )

        try:
            document = json.loads(text)
        except ValueError:
            raise bad("not JSON") from None
        if not isinstance(document, dict) or document.get("format") != 1:
            raise bad('expected an object with "format": 1')

        def ring(name: str) -> Ring:
            entries = document.get(name)
            if not isinstance(entries, dict) or not entries:
                raise bad(f'"{name}" must hold at least one key')
            keys: dict[int, Key] = {}
            for key_id, entry in entries.items():
                if not (isinstance(key_id, str) and key_id.isdigit() and 0 < int(key_id) < 2**32):
                    raise bad(f"key ids in {name} must be positive integers")
                if not isinstance(entry, dict) or entry.get("status") not in _STATUSES:
                    raise bad(f"key {name}/{key_id} needs a status of {', '.join(_STATUSES)}")
                try:
                    material = base64.b64decode(str(entry.get("key", "")), validate=True)
                except (binascii.Error, ValueError):
                    raise bad(f"key {name}/{key_id} is not base64") from None
                if len(material) != KEY_BYTES:
                    raise bad(f"key {name}/{key_id} must be {KEY_BYTES} bytes")
                keys[int(key_id)] = Key(int(key_id), material, entry["status"])
            if sum(k.status == "primary" for k in keys.values()) != 1:
                raise bad(f'exactly one key in "{name}" must be primary')
            return Ring(keys)

        return cls(ring("encryption"), ring("index"))


class KeyringSource:
    """Where the keyring lives: a file (re-read when it changes) or the IDGATE_KEYRING variable."""

    def __init__(self, path: Path, inline: str = "") -> None:
        """`inline` is the base64 of a keyring document (IDGATE_KEYRING); it takes precedence over `path`."""
        self.path = path
        self._inline = inline
        self._seen: tuple[int, ...] | None = None
        self._keyring: Keyring | None = None
        self._checked_at = 0.0

    @property
    def from_environment(self) -> bool:
        return bool(self._inline)

    def load(self) -> Keyring:
        if self._inline:
            if self._keyring is None:
                try:
                    text = base64.b64decode(self._inline, validate=True).decode("utf-8")
                except (binascii.Error, ValueError):
                    raise ConfigurationError(
                        "IDGATE_KEYRING is not base64; set it to the base64 of the keyring JSON file."
                    ) from None
                self._keyring = Keyring.from_json(text, "IDGATE_KEYRING")
            return self._keyring
        return self._load_file()

    def current(self) -> Keyring:
        """The keyring, re-read if the file changed since (rotation by another process).

        Called while serving: a keyring that became unreadable or malformed raises KeyringUnavailable
        (the request fails with 503 and consumes nothing), never the start-up ConfigurationError.
        """
        # A stat at most once a second: cheap enough for every field, quick enough for a rotation.
        if self._keyring is not None and not self._inline and time.monotonic() - self._checked_at < 1.0:
            return self._keyring
        self._checked_at = time.monotonic()
        try:
            if self._keyring is not None and not self._inline:
                info = self.path.stat()
                if _signature(info) != self._seen:
                    return self._load_file()
            return self._keyring or self.load()
        except (ConfigurationError, OSError) as exc:
            self._keyring = None  # nothing is served from a keyring file that is no longer there
            message = exc.message if isinstance(exc, ConfigurationError) else f"({exc.strerror})"
            raise KeyringUnavailable(f"the keyring can no longer be read: {message}") from None

    def _load_file(self) -> Keyring:
        try:
            info = self.path.stat()
        except FileNotFoundError:
            raise ConfigurationError(
                f"no keyring at {self.path}: create one with `idgate keys generate` (or `idgate init`), "
                "or set IDGATE_KEYRING. Keep a backup: without it the stored identities cannot be read."
            ) from None
        except OSError as exc:
            raise ConfigurationError(f"the keyring at {self.path} cannot be read ({exc.strerror}).") from None
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigurationError(
                f"the keyring at {self.path} is readable by others (mode {stat.S_IMODE(info.st_mode):o}); "
                f"run `chmod 600 {self.path}` and start again."
            )
        try:
            text = self.path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(
                f"the keyring at {self.path} cannot be read ({type(exc).__name__})."
            ) from None
        self._keyring = Keyring.from_json(text, str(self.path))
        self._seen = _signature(info)
        return self._keyring

    def save(self, keyring: Keyring, *, create: bool = False) -> None:
        """Write atomically with mode 0600; with `create`, refuse to replace an existing keyring."""
        if self._inline:
            raise ConfigurationError(
                "the keyring comes from IDGATE_KEYRING; change the keyring file it was made from and update the variable."
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if create and self.path.exists():
            raise KeyringExists(f"a keyring already exists at {self.path}; it was left as it is.")
        temporary = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(keyring.to_json())
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.path)
        self._load_file()


def _signature(info: os.stat_result) -> tuple[int, ...]:
    """What changes when the keyring file is rewritten, replaced or has its mode changed."""
    return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
