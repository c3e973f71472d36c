"""Bearer tokens from configuration, each naming the principal that lands in the audit log, and/or
JWT access tokens from an OAuth issuer (`mcp_server.http.oauth`), advertised per RFC 9728."""

import hmac
import os
import stat
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast
from urllib.parse import urlparse

from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.routes import build_resource_metadata_url, create_protected_resource_routes
from pydantic import AnyHttpUrl
from starlette.routing import Route

from mcp_server.ledger.entitlements import (
    RESERVED_RULE,
    is_reserved_principal,
)
from mcp_server.ledger.free_text import PRINCIPAL_RULE, is_principal_name
from mcp_server.settings import LOOPBACK_HOSTS, Settings
from policy.facts import ROLES

if TYPE_CHECKING:  # it reads the file with `parse_tokens`, from here
    from mcp_server.http.token_file import StaticTokens

WELL_KNOWN = "/.well-known/oauth-protected-resource"
"""RFC 9728's metadata path; the MCP spec's clients also try it suffixed with the endpoint's path."""


class ConfigTokenVerifier:
    """Checks a presented token against every configured one in constant time."""

    def __init__(self, tokens: Callable[[], Mapping[str, str]], scopes: Sequence[str] = ()) -> None:
        """`tokens()` maps principal name to token, as configured now (`StaticTokens.current`: the token file
        re-read when it changes); each carries `scopes` (an operator's token has every scope the server requires
        of OAuth tokens)."""
        self._tokens = tokens
        self._scopes = list(scopes)

    async def verify_token(self, token: str) -> AccessToken | None:
        presented = token.encode()
        found: str | None = None
        for principal, expected in self._tokens().items():  # no early exit: timing says nothing about which
            if hmac.compare_digest(presented, expected.encode()):
                found = principal
        if found is None:
            return None
        return AccessToken(token=token, client_id=found, scopes=self._scopes, subject=found)


def parse_tokens(inline: str | None, file: Path | None) -> dict[str, str]:
    """Tokens from 'principal=token;...' and/or a file of 'principal token' lines (a space or tab between; '#'
    comments)."""
    entries: list[tuple[str, str, str]] = []
    if inline:
        for i, item in enumerate(filter(None, (p.strip() for p in inline.split(";"))), 1):
            principal, sep, token = item.partition("=")
            entries.append((principal.strip(), token.strip() if sep else "", f"BANKGATE_TOKENS entry {i}"))
    if file is not None:
        lines = _private_text(file).splitlines()
        for number, line in enumerate(lines, 1):
            if line.strip() and not line.lstrip().startswith("#"):
                principal, *rest = line.split(maxsplit=1)  # a space or a tab between them
                entries.append((principal, "".join(rest).strip(), f"{file}:{number}"))
    tokens: dict[str, str] = {}
    holders: dict[str, str] = {}
    folded: dict[str, str] = {}
    for principal, token, where in entries:
        if not principal or len(token) < 16:
            raise ValueError(f"{where}: expected a principal name and a token of at least 16 characters")
        if not is_principal_name(principal):  # printed in every question its calls ask ("Requested by: ...")
            raise ValueError(f"{where}: a principal name {PRINCIPAL_RULE}")
        if is_reserved_principal(principal):
            raise ValueError(f"{where}: a principal name {RESERVED_RULE}")
        if principal in tokens:
            raise ValueError(f"{where}: principal '{principal}' has more than one token")
        if (twin := folded.setdefault(principal.casefold(), principal)) != principal:  # "Requested by: Alice"
            raise ValueError(f"{where}: principal '{principal}' differs from '{twin}' only in letter case")
        if token in holders:  # it would authenticate as one of them only: the other's calls run as theirs
            raise ValueError(f"{where}: principal '{principal}' has the same token as '{holders[token]}'")
        tokens[principal], holders[token] = token, principal
    return tokens


def _private_text(file: Path) -> str:
    """The token file's text; refused, like the audit key file, when its group may write it or others may
    use it at all: each line is a principal's credential."""
    try:
        # The mode checked is the open file's: no swap in between. utf-8-sig: without a leading byte-order mark.
        with file.open(encoding="utf-8-sig") as opened:
            mode = os.fstat(opened.fileno()).st_mode
            if mode & (stat.S_IWGRP | stat.S_IRWXO):
                raise ValueError(
                    f"token file {file} is open to others (mode {oct(stat.S_IMODE(mode))}); "
                    f"make it private: chmod 600 {file}"
                )
            return opened.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"token file {file} cannot be read ({type(exc).__name__})") from None


def check_oauth_settings(settings: Settings) -> None:
    """Refuse an OAuth setup that could not verify a single token, or would trust keys fetched insecurely."""
    from mcp_server.http.oauth import parse_role_scopes, read_jwks

    if settings.oauth_issuer is None:
        if settings.oauth_jwks_url or settings.oauth_jwks_file or settings.oauth_role_scopes:
            raise ValueError("OAuth keys or role scopes are configured but no issuer: set BANKGATE_OAUTH_ISSUER too")
        return
    parse_role_scopes(settings.oauth_role_scopes, ROLES)
    if (settings.oauth_jwks_url is None) == (settings.oauth_jwks_file is None):
        raise ValueError(
            "BANKGATE_OAUTH_ISSUER needs the issuer's signing keys: set exactly one of BANKGATE_OAUTH_JWKS_URL "
            "(e.g. https://login.example/.well-known/jwks.json) or BANKGATE_OAUTH_JWKS_FILE"
        )
    if settings.oauth_jwks_file is not None:
        read_jwks(settings.oauth_jwks_file)  # now, not once the ledger is open
    if settings.oauth_jwks_url is not None:
        url = urlparse(settings.oauth_jwks_url)
        if url.scheme != "https" and not (url.scheme == "http" and url.hostname in LOOPBACK_HOSTS):
            raise ValueError("BANKGATE_OAUTH_JWKS_URL must use https (plain http only on a loopback address)")
    if settings.public_url is None and not settings.is_loopback:
        raise ValueError(
            "OAuth off loopback needs the URL clients use: set BANKGATE_PUBLIC_URL (e.g. https://bank.example/mcp); "
            "it is the resource clients are sent to sign in for, and the token audience by default"
        )


def token_verifier(settings: Settings, tokens: "StaticTokens") -> tuple[TokenVerifier, AnyHttpUrl | None, list[Route]]:
    """The verifier for HTTP requests, the metadata URL a 401 points to, and the discovery routes.

    With an issuer configured, the protected-resource metadata (RFC 9728) is served both at the
    path-suffixed well-known URL the MCP spec derives from the endpoint and at the bare one.
    """
    from mcp_server.http.oauth import EitherVerifier, JwtTokenVerifier, OAuthConfig, parse_role_scopes

    static = ConfigTokenVerifier(tokens.current, settings.oauth_scopes)
    if settings.oauth_issuer is None:
        return static, None, []
    resource = AnyHttpUrl(settings.resource_url)
    jwt_verifier = JwtTokenVerifier(
        OAuthConfig(
            issuer=settings.oauth_issuer,
            audience=settings.oauth_audience or settings.resource_url,
            jwks_url=settings.oauth_jwks_url,
            jwks_file=settings.oauth_jwks_file,
            principal_claim=settings.oauth_principal_claim,
            role_scopes=parse_role_scopes(settings.oauth_role_scopes, ROLES),
            reserved=lambda: {*tokens.names, settings.principal},  # read after `static`: see EitherVerifier
        )
    )
    # The issuer as a string: the metadata model validates it keeping its exact spelling (RFC 8414
    # compares issuers as strings; `AnyHttpUrl(...)` here would append a "/").
    issuer = cast(AnyHttpUrl, settings.oauth_issuer)
    routes = create_protected_resource_routes(
        resource,
        [issuer],
        scopes_supported=settings.oauth_scopes or None,
        resource_name="bankgate",
    )
    bare = [Route(WELL_KNOWN, r.endpoint, methods=r.methods) for r in routes if r.path != WELL_KNOWN]
    return EitherVerifier([static, jwt_verifier]), build_resource_metadata_url(resource), routes + bare
