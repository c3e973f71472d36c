"""Bearer tokens from configuration, each naming the principal that lands in the audit log."""

import hmac
from collections.abc import Mapping
from pathlib import Path

from mcp.server.auth.provider import AccessToken


class ConfigTokenVerifier:
    """Checks a presented token against every configured one in constant time."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        """`tokens` maps principal name to token."""
        self._tokens = [(principal, token.encode()) for principal, token in tokens.items()]

    async def verify_token(self, token: str) -> AccessToken | None:
        presented = token.encode()
        found: str | None = None
        for principal, expected in self._tokens:  # no early exit: timing says nothing about which
            if hmac.compare_digest(presented, expected):
                found = principal
        if found is None:
            return None
        return AccessToken(token=token, client_id=found, scopes=[], subject=found)


def parse_tokens(inline: str | None, file: Path | None) -> dict[str, str]:
    """Tokens from 'principal=token;...' and/or a file of 'principal token' lines ('#' comments)."""
    entries: list[tuple[str, str, str]] = []
    if inline:
        for i, item in enumerate(filter(None, (p.strip() for p in inline.split(";"))), 1):
            principal, sep, token = item.partition("=")
            entries.append((principal.strip(), token.strip() if sep else "", f"BANKGATE_TOKENS entry {i}"))
    if file is not None:
        lines = file.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, 1):
            if line.strip() and not line.lstrip().startswith("#"):
                principal, _, token = line.strip().partition(" ")
                entries.append((principal, token.strip(), f"{file}:{number}"))
    tokens: dict[str, str] = {}
    for principal, token, where in entries:
        if not principal or len(token) < 16:
            raise ValueError(f"{where}: expected a principal name and a token of at least 16 characters")
        if principal in tokens:
            raise ValueError(f"{where}: principal '{principal}' has more than one token")
        tokens[principal] = token
    return tokens
