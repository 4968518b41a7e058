"""Secrets at rest and bearer tokens: sealed with AES-GCM, stored as digests, compared in constant time."""

import base64
import hashlib
import hmac
import os
import secrets

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION = b"\x01"


class SecretBox:
    """AES-256-GCM under a key derived from KEPLER_SECRET_KEY per purpose, so one leak does not open all."""

    def __init__(self, secret_key: str, purpose: str) -> None:
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"kepler", info=purpose.encode())
        self._aead = AESGCM(hkdf.derive(secret_key.encode()))
        self._aad = purpose.encode()

    def seal(self, plaintext: bytes) -> bytes:
        nonce = os.urandom(12)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, self._aad)

    def open(self, sealed: bytes) -> bytes:
        if not sealed.startswith(_VERSION):
            raise ValueError("unknown sealed-secret version")
        return self._aead.decrypt(sealed[1:13], sealed[13:], self._aad)


def new_token(prefix: str) -> str:
    """256 random bits, URL-safe; the prefix makes leaked tokens recognisable by secret scanners."""
    return prefix + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def token_digest(token: str) -> str:
    """High-entropy tokens need no slow hash: SHA-256 is what we store and look up by."""
    return hashlib.sha256(token.encode()).hexdigest()


def same_secret(a: str | bytes, b: str | bytes) -> bool:
    left = a.encode() if isinstance(a, str) else a
    right = b.encode() if isinstance(b, str) else b
    return hmac.compare_digest(left, right)
