"""Local passwords: argon2id hashes, checked off the event loop, with a policy that follows NIST 800-63B."""

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()  # argon2id, RFC 9106 low-memory profile defaults
# Verified against when the account does not exist, so both cases take the same time.
_DUMMY_HASH = _HASHER.hash("kepler-timing-equaliser")
_COMMON = frozenset(
    {
        "password1234",
        "123456789012",
        "qwertyuiop12",
        "administrator",
        "letmein12345",
        "kepler123456",
        "changeme1234",
    }
)
MIN_LENGTH, MAX_LENGTH = 12, 128


def policy_problems(password: str, email: str) -> list[str]:
    problems = []
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        problems.append(f"must be {MIN_LENGTH} to {MAX_LENGTH} characters long")
    if len(set(password)) < 4:
        problems.append("must not repeat a few characters")
    lowered, local = password.lower(), email.split("@")[0].lower()
    if lowered in _COMMON or (len(local) >= 3 and local in lowered) or email.lower() in lowered:
        problems.append("is too easy to guess")
    return problems


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_HASHER.hash, password)


def _verify(stored: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(stored or _DUMMY_HASH, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(stored: str | None, password: str) -> bool:
    return await asyncio.to_thread(_verify, stored, password)
