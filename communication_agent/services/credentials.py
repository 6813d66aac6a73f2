"""Encrypting mailbox credentials at rest (Fernet, keyed from the secret key).

The Fernet key is derived from COMMAGENT_SECRET_KEY with HKDF-SHA256 and a purpose label, so the
same secret can key other things (session signing) without the keys ever being equal. Changing
the secret key makes stored credentials unreadable: the mailbox then asks to be reconnected.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_PURPOSE = b"commagent mailbox credentials v1"


class CredentialsUnreadableError(Exception):
    """Stored credentials cannot be decrypted (the secret key changed, or the data is damaged)."""


def _fernet(secret_key: str) -> Fernet:
    key = HKDF(algorithm=SHA256(), length=32, salt=None, info=_PURPOSE).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt_credentials(secret_key: str, credentials: dict[str, Any]) -> bytes:
    return _fernet(secret_key).encrypt(json.dumps(credentials).encode())


def decrypt_credentials(secret_key: str, blob: bytes) -> dict[str, Any]:
    try:
        data = json.loads(_fernet(secret_key).decrypt(blob))
    except (InvalidToken, ValueError) as exc:
        raise CredentialsUnreadableError(
            "the stored credentials cannot be decrypted (was COMMAGENT_SECRET_KEY changed?)"
        ) from exc
    if not isinstance(data, dict):
        raise CredentialsUnreadableError("the stored credentials are damaged")
    return data
