"""Keyrings, authenticated field encryption, blind indexes, and the decision log's signing key (on
`cryptography`)."""

from .checkpoints import CheckpointSigner, PublicKeyChecker, SigningKeyFile, verify_note
from .envelope import BlindIndexer, DecryptionError, FieldCipher, check_value, normalize, same
from .keyring import Key, Keyring, KeyringSource, Ring

__all__ = [
    "BlindIndexer",
    "CheckpointSigner",
    "DecryptionError",
    "FieldCipher",
    "Key",
    "Keyring",
    "KeyringSource",
    "PublicKeyChecker",
    "Ring",
    "SigningKeyFile",
    "check_value",
    "normalize",
    "same",
    "verify_note",
]
