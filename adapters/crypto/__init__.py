"""Keyrings, authenticated field encryption and blind indexes (on `cryptography`)."""

from .envelope import BlindIndexer, DecryptionError, FieldCipher, check_value, normalize, same
from .keyring import Key, Keyring, KeyringSource, Ring

__all__ = [
    "BlindIndexer",
    "DecryptionError",
    "FieldCipher",
    "Key",
    "Keyring",
    "KeyringSource",
    "Ring",
    "check_value",
    "normalize",
    "same",
]
