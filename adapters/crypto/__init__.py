"""Keyrings, authenticated field encryption and blind indexes (on `cryptography`)."""

from .envelope import BlindIndexer, DecryptionError, FieldCipher, normalize, same
from .keyring import Key, Keyring, KeyringSource, Ring

__all__ = [
    "BlindIndexer",
    "DecryptionError",
    "FieldCipher",
    "Key",
    "Keyring",
    "KeyringSource",
    "Ring",
    "normalize",
    "same",
]
