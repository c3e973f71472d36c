"""OAuth 2.1 resource server (the MCP authorization spec): JWT access tokens from a configured issuer.

bankgate never issues tokens: an authorization server (Entra ID, Auth0, Keycloak, ...) does, and
clients find it through the protected-resource metadata (RFC 9728) that `mcp_server.http.app` serves. Each
token is checked here with PyJWT against the issuer's published keys (a JWKS URL, read again when five minutes
old or on an unknown key id: `mcp_server.http.issuer_keys`; or a JWKS file): signature, `iss`, `aud`,
`exp`/`nbf`, then mapped to the principal the audit log records (the `sub` claim, or another) and its scopes. A
token that fails any check is simply not authenticated (401); a valid one without the required scopes gets 403.
"""

import logging
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import jwt
from mcp.server.auth.provider import AccessToken, TokenVerifier

from mcp_server.http.issuer_keys import IssuerKeys
from mcp_server.ledger.entitlements import is_reserved_principal
from mcp_server.ledger.free_text import PRINCIPAL_RULE, is_principal_name
from policy.writers import other_writers

KEY_ALGORITHMS = {
    "RSA": ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"),
    "EC": ("ES256", "ES384", "ES512"),
    "OKP": ("EdDSA",),
}
"""Asymmetric algorithms only, by the key type that signs with them: a shared-secret (HS*) token could be forged
by anyone holding the key, and a token's `alg` must suit the key its `kid` names (PyJWT given an EC key for an
RS256 token raises TypeError, which would surface as a 500 instead of a 401)."""
LEEWAY_SECONDS = 30
"""Clock skew tolerated on `exp` and `nbf` between the issuer and this server."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OAuthConfig:
    issuer: str
    audience: str
    jwks_url: str | None = None
    jwks_file: Path | None = None
    principal_claim: str = "sub"
    role_scopes: Mapping[str, str] = field(default_factory=dict)
    """role -> the scope that carries it (`parse_role_scopes`)."""
    reserved: Callable[[], Collection[str]] = frozenset
    """The principal names other credentials hold now (static tokens, the token file's as last re-read; the local
    principal). Entitlements and daily totals
    belong to a name, so a token naming one of these is refused: an issuer's user (whose `preferred_username`,
    say, they may choose) never acts with another caller's grants. In any letter case: "Alice" has none of alice's
    grants, but "Requested by: Alice" reads as alice to an approver. The names the audit log gives non-callers are
    refused too (`is_reserved_principal`)."""


class RoleToken(AccessToken):
    """A verified JWT with the roles its scopes carry. Only the issuer's tokens are this type, so a
    static token never carries a role, whatever scopes it is configured with."""

    roles: tuple[str, ...] = ()


def parse_role_scopes(text: str | None, known: Sequence[str]) -> dict[str, str]:
    """'role=scope,...' (BANKGATE_OAUTH_ROLE_SCOPES) as role -> scope; only roles in `known`."""
    mapping: dict[str, str] = {}
    for i, item in enumerate(filter(None, (p.strip() for p in (text or "").split(","))), 1):
        role, _, scope = (part.strip() for part in item.partition("="))
        if not role or not scope or " " in scope:
            raise ValueError(f"BANKGATE_OAUTH_ROLE_SCOPES entry {i}: expected role=scope")
        if role not in known:
            raise ValueError(f"BANKGATE_OAUTH_ROLE_SCOPES entry {i}: unknown role; the roles are {', '.join(known)}")
        if role in mapping:
            raise ValueError(f"BANKGATE_OAUTH_ROLE_SCOPES entry {i}: role '{role}' is mapped twice")
        mapping[role] = scope
    return mapping


VERIFYING_THREADS = 4
"""Threads that verify tokens at once (a signature check is ~0.1 ms; more only wait on the issuer's lock)."""


def read_jwks(path: Path) -> jwt.PyJWKSet:
    """The issuer's signing keys from `path` (BANKGATE_OAUTH_JWKS_FILE), or ValueError naming the file."""
    try:
        with path.open(encoding="utf-8") as file:
            writers = other_writers(os.fstat(file.fileno()).st_mode)  # the open file's: no swap in between
            text = file.read()
    except OSError as exc:
        raise ValueError(f"BANKGATE_OAUTH_JWKS_FILE {path}: cannot read it ({exc.strerror})") from None
    except UnicodeDecodeError:
        text = ""  # refused below, as any other file that is not a JWKS
    if writers is not None:  # whoever may write it adds a key, and signs tokens for any principal
        raise ValueError(
            f"BANKGATE_OAUTH_JWKS_FILE {path}: {writers}, and so add a key whose tokens are believed; let only its "
            f"owner write it: chmod 644 {path}"
        )
    try:
        return jwt.PyJWKSet.from_json(text)
    except (ValueError, jwt.PyJWTError) as exc:  # JSON errors are ValueErrors
        raise ValueError(f"BANKGATE_OAUTH_JWKS_FILE {path}: not a JWKS of usable keys ({type(exc).__name__})") from None


class JwtTokenVerifier:
    """The SDK's `TokenVerifier` for JWT access tokens (RFC 9068) signed by one issuer."""

    def __init__(self, config: OAuthConfig) -> None:
        self._config = config
        self._threads = anyio.CapacityLimiter(VERIFYING_THREADS)
        if config.jwks_file is not None:
            self._keys: jwt.PyJWKSet | None = read_jwks(config.jwks_file)
            self._client: jwt.PyJWKClient | None = None
        else:
            assert config.jwks_url is not None, "OAuthConfig needs jwks_url or jwks_file"
            self._keys, self._client = None, IssuerKeys(config.jwks_url)

    async def verify_token(self, token: str) -> AccessToken | None:
        # Fetching the JWKS is blocking network I/O (cached after the first token): off the event loop, on threads
        # of its own. Anyone can send a token naming a key id the issuer lacks, and each makes PyJWT fetch the keys
        # again (one at a time, under its lock); while the issuer does not answer, those waits would otherwise
        # take every thread of the shared pool, which the gate's database work and the desk need.
        return await anyio.to_thread.run_sync(self._verify, token, limiter=self._threads)

    def _verify(self, token: str) -> AccessToken | None:
        try:
            key = self._signing_key(token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=_algorithms(key),
                audience=self._config.audience,
                issuer=self._config.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud", self._config.principal_claim]},
            )
        except (jwt.PyJWTError, ValueError, OSError) as exc:  # OSError: the issuer's keys could not be fetched
            log.info("bearer token refused: %s", type(exc).__name__)  # never the token itself
            return None
        principal = claims.get(self._config.principal_claim)
        if not is_principal_name(principal):  # it is printed in every question the caller asks
            log.info("bearer token refused: claim %r %s", self._config.principal_claim, PRINCIPAL_RULE)
            return None
        held = {name.casefold() for name in self._config.reserved()}  # a few names: the file's may change any second
        if principal.casefold() in held or is_reserved_principal(principal):  # as the audit log names others
            log.warning("bearer token refused: its principal %r is another credential's", principal)
            return None
        scopes = _scopes(claims)
        return RoleToken(
            token=token,
            client_id=principal,
            scopes=scopes,
            roles=tuple(sorted(role for role, scope in self._config.role_scopes.items() if scope in scopes)),
            expires_at=int(claims["exp"]) + LEEWAY_SECONDS,  # the SDK refuses past it, with no skew of its own
            subject=str(claims.get("sub", principal)),
            claims={"iss": claims["iss"]},
        )

    def _signing_key(self, token: str) -> jwt.PyJWK:
        if self._client is not None:
            return self._client.get_signing_key_from_jwt(token)
        assert self._keys is not None
        kid = jwt.get_unverified_header(token).get("kid")
        for key in self._keys.keys:
            if kid is None or key.key_id == kid:
                return key
        raise jwt.InvalidKeyError("no key in the JWKS file matches the token's key id")


def _algorithms(key: jwt.PyJWK) -> list[str]:
    """The algorithms a token verified with `key` may name: the asymmetric ones of its key type (none for `oct`)."""
    return list(KEY_ALGORITHMS.get(key.key_type or "", ()))


def _scopes(claims: dict[str, Any]) -> list[str]:
    """RFC 9068 `scope` (space-separated), or Entra ID's `scp` string / `roles` list."""
    found: list[str] = []
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            found += value.split()
        elif isinstance(value, list):
            found += [str(v) for v in value]
    roles = claims.get("roles")
    if isinstance(roles, list):
        found += [str(r) for r in roles]
    return list(dict.fromkeys(found))


class EitherVerifier:
    """Static tokens first (constant time), then JWTs: simple setups and an issuer side by side. The static
    verifier re-reads a changed token file, so the JWT verifier's reserved names are the file's as it now reads."""

    def __init__(self, verifiers: Sequence[TokenVerifier]) -> None:
        self._verifiers = list(verifiers)

    async def verify_token(self, token: str) -> AccessToken | None:
        for verifier in self._verifiers:
            found = await verifier.verify_token(token)
            if found is not None:
                return found
        return None
