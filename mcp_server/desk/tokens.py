"""Random secrets and how they are stored: only their SHA-256, so a database reader cannot use them."""

import base64
import hashlib
import secrets
from typing import TypeGuard


def new_token() -> str:
    """32 random bytes, URL-safe (enrollment links, session cookies, nonces)."""
    return secrets.token_urlsafe(32)


def storable(value: object) -> TypeGuard[str]:
    """Whether a client's `value` (an approval reference, a nonce, a passkey id) could be a stored key at all:
    a non-empty str without NUL, which PostgreSQL's text cannot hold (a query given one raises, a 500)."""
    return isinstance(value, str) and value != "" and "\x00" not in value


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def from_b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
