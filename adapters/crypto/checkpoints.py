"""Signed checkpoints of the decision log: Ed25519 over (log name, tree size, root hash, time).

A checkpoint is a C2SP signed note (https://c2sp.org/signed-note) whose text is a C2SP checkpoint
(https://c2sp.org/tlog-checkpoint), with the signing time as an extension line:

    <log name>\\n
    <tree size, decimal>\\n
    <root hash, base64>\\n
    time <UTC, YYYY-MM-DDTHH:MM:SSZ>\\n
    \\n
    — <log name> <base64 of: key id (4 bytes) || Ed25519 signature (64 bytes)>\\n

The signature covers the text up to and including its last newline before the blank line. The key id
is the first 4 bytes of SHA-256(log name || 0x0A || 0x01 || public key), as signed notes define it for
Ed25519. The signing key is a file of its own, apart from the keyring that encrypts identities: an
auditor holds its public key, and whoever could rewrite the database cannot forge a checkpoint.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from idgate.domain import ConfigurationError, KeyringExists
from idgate.domain.audit import Checkpoint

_ED25519 = b"\x01"
_DASH = "\u2014"  # the em dash that starts a signed note's signature line


def key_id(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + _ED25519 + public).digest()[:4]


def checkpoint_text(name: str, size: int, root: bytes, at: datetime) -> str:
    when = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{name}\n{size}\n{base64.b64encode(root).decode()}\ntime {when}\n"


class CheckpointSigner:
    """Signs checkpoints with the log's Ed25519 key; `verify` checks a note against the public key."""

    def __init__(self, name: str, private: Ed25519PrivateKey) -> None:
        if not name or "\n" in name or " " in name or "+" in name:
            raise ConfigurationError(
                "[audit] log_name must be one word without spaces or '+' (e.g. idgate.example.com/decisions)."
            )
        self.name = name
        self._private = private
        self.public = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def sign(self, size: int, root: bytes, at: datetime) -> Checkpoint:
        text = checkpoint_text(self.name, size, root, at)
        signature = self._private.sign(text.encode())
        line = (
            f"{_DASH} {self.name} {base64.b64encode(key_id(self.name, self.public) + signature).decode()}\n"
        )
        return Checkpoint(size, root, at.replace(microsecond=0), f"{text}\n{line}")

    def public_key_pem(self) -> str:
        return (
            self._private.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )

    def verifies(self, note: str) -> bool:
        return verify_note(note, self.name, self.public)


def verify_note(note: str, name: str, public: bytes) -> bool:
    """Is one of the note's signatures a valid one by (name, public key)?"""
    text, separator, signatures = note.partition("\n\n")
    if not separator:
        return False
    wanted = key_id(name, public)
    for line in signatures.splitlines():
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != _DASH or parts[1] != name:
            continue
        try:
            blob = base64.b64decode(parts[2], validate=True)
        except ValueError:
            continue
        if blob[:4] != wanted:
            continue
        try:
            Ed25519PublicKey.from_public_bytes(public).verify(blob[4:], (text + "\n").encode())
        except InvalidSignature:
            return False
        return True
    return False


class PublicKeyChecker:
    """Checks checkpoints with the log's public key alone: what an auditor without the signing key has."""

    def __init__(self, name: str, pem: bytes) -> None:
        try:
            key = serialization.load_pem_public_key(pem)
        except ValueError:
            raise ConfigurationError(
                "that file is not a PEM public key (see `idgate decisions public-key`)."
            ) from None
        if not isinstance(key, Ed25519PublicKey):
            raise ConfigurationError("the decision log's public key is an Ed25519 key; that one is not.")
        self.name = name
        self.public = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def verifies(self, note: str) -> bool:
        return verify_note(note, self.name, self.public)


class SigningKeyFile:
    """The log's signing key: an unencrypted PKCS #8 PEM file, readable by its owner only."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self, name: str) -> CheckpointSigner:
        try:
            info = self.path.stat()
        except FileNotFoundError:
            raise ConfigurationError(
                f"the decision log's signing key {self.path} does not exist; run `idgate keys generate` "
                "(or `idgate init`) to create it, and give auditors `idgate decisions public-key`."
            ) from None
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigurationError(
                f"the decision log's signing key {self.path} is readable by others "
                f"(mode {stat.S_IMODE(info.st_mode):o}); run `chmod 600 {self.path}`."
            )
        try:
            private = serialization.load_pem_private_key(self.path.read_bytes(), password=None)
        except (ValueError, TypeError, OSError) as exc:
            raise ConfigurationError(
                f"the decision log's signing key {self.path} is not an Ed25519 private key in PEM."
            ) from exc
        if not isinstance(private, Ed25519PrivateKey):
            raise ConfigurationError(f"the decision log's signing key {self.path} is not an Ed25519 key.")
        return CheckpointSigner(name, private)

    def create(self) -> None:
        """A new key, written with mode 0600; never replaces one."""
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise KeyringExists(
                f"a signing key already exists at {self.path}; it stays (checkpoints signed with it "
                "would no longer verify under a new one)."
            ) from None
        with os.fdopen(descriptor, "wb") as file:
            file.write(pem)
