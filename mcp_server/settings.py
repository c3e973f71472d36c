"""Server configuration: CLI flags over `BANKGATE_*` environment variables over `.env` over defaults."""

import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from mcp.server.request_state import AESGCMRequestStateCodec
from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from mcp_server.http.proxies import check_proxies
from mcp_server.ledger.entitlements import RESERVED_RULE, is_reserved_principal
from mcp_server.ledger.free_text import PRINCIPAL_RULE, is_principal_name
from mcp_server.ledger.money import DEFAULT_MAX_AMOUNT_MINOR, MAX_AMOUNT_MINOR_CEILING
from mcp_server.storage.database import default_database_url

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
MAX_APPROVAL_TIMEOUT = 30 * 24 * 3600
"""The longest approval timeout, in seconds: every deadline is stated as a date (far ones cannot be), and
'inf' would reach the SDK's request-state lifetime unnamed."""
CommaList = Annotated[list[str], NoDecode]
"""A list set as 'a,b' in the environment (split by `_split`), not as JSON."""
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOST = rf"(?:{_LABEL}(?:\.{_LABEL})*\.?|\[[0-9A-Fa-f:.]+\])(?::(?:[0-9]{{1,5}}|\*))?"
HOST_VALUE = re.compile(_HOST)
"""A Host header the SDK's check can match (exactly, or any port with ':*'): a name or [IPv6], then a port."""
ORIGIN_VALUE = re.compile(rf"https?://{_HOST}")
"""An Origin header: scheme, host and port only, as browsers send it (no path, no trailing slash)."""
_HEADER_VALUES = {
    "allowed_hosts": (
        HOST_VALUE,
        "a Host value: give a name with an optional port (bank.example, bank.example:443, bank.example:*), "
        "without a scheme or path",
    ),
    "allowed_origins": (
        ORIGIN_VALUE,
        "an Origin: give a scheme, a name and an optional port (https://app.example, http://app.example:8080), "
        "without a path or trailing slash",
    ),
}


class Settings(BaseSettings):
    # A refused value is named, never shown: a bad key ring's keys (its good ones too) would be in the error.
    model_config = SettingsConfigDict(
        env_prefix="BANKGATE_", env_file=".env", extra="ignore", hide_input_in_errors=True
    )

    db_url: str = Field(default_factory=default_database_url, description="sqlite:///path or postgresql://...")
    create: bool = Field(False, description="Create the ledger at db_url if there is none (serve --create).")
    seed_demo: bool | None = Field(
        None, description="Create ACC-001..ACC-003 on an empty ledger; unset: only on the embedded default ledger."
    )
    policy: Path | None = Field(None, description="Policy TOML file; the shipped default when unset.")
    transport: Literal["stdio", "http"] = "stdio"
    host: str = Field("127.0.0.1", min_length=1, description="HTTP bind address ('' would be every interface).")
    port: int = Field(8765, ge=1, le=65535)
    stateless: bool = Field(False, description="Stateless HTTP (2026-07-28 clients only can approve).")
    tokens: SecretStr | None = Field(None, description="Bearer tokens as 'principal=token;principal2=token2'.")
    token_file: Path | None = Field(None, description="File of 'principal token' lines.")
    no_auth: bool = Field(False, description="Serve HTTP without authentication (loopback only).")
    allowed_hosts: CommaList = Field(default_factory=list, description="Extra Host values to accept.")
    allowed_origins: CommaList = Field(default_factory=list, description="Extra Origin values to accept.")
    max_body_bytes: int = Field(65_536, ge=1_024, description="Largest HTTP request body accepted.")
    max_sessions_per_principal: int = Field(
        100, ge=1, description="Open Streamable HTTP sessions (2025-11-25 clients) one principal may hold."
    )
    request_state_keys: SecretStr | None = Field(
        None, description="Comma-separated request-state keys (>= 32 bytes each); the first seals."
    )
    approval_timeout: float = Field(
        300.0,
        gt=0,
        le=MAX_APPROVAL_TIMEOUT,
        description="Seconds a human has to answer an approval (at most 30 days: a deadline must be a date).",
        allow_inf_nan=False,
    )
    max_pending_approvals: int = Field(
        20, ge=1, description="Approvals one principal may have waiting at once (pending, unexpired)."
    )
    principal: str = Field("local", min_length=1, description="Principal for stdio and unauthenticated HTTP.")
    max_amount_minor: int = Field(
        DEFAULT_MAX_AMOUNT_MINOR,
        gt=0,
        le=MAX_AMOUNT_MINOR_CEILING,
        description="Largest single amount, in minor units.",
    )
    audit_key_file: Path | None = Field(
        None, description="Audit signing key file, outside the database (default: audit.key in the user data dir)."
    )
    drain_timeout: float = Field(
        20.0,
        gt=0,
        le=3600,
        allow_inf_nan=False,
        description="Seconds an HTTP server told to stop (SIGTERM) lets running calls finish before it exits.",
    )
    forwarded_allow_ips: CommaList = Field(
        default_factory=list,
        description="Proxies (IP addresses or networks, comma-separated) whose X-Forwarded-For and -Proto are "
        "believed; '*': any, only for a proxy that overwrites them. Default none: the connecting address counts.",
    )
    header_timeout: float = Field(
        10.0,
        gt=0,
        le=300,
        allow_inf_nan=False,
        description="Seconds an HTTP connection has to send a request's headers (after opening, after each response).",
    )
    health_interval: float = Field(
        1.0,
        gt=0,
        le=3600,  # an older answer tells a load balancer nothing; 'inf' kept the first one for good
        allow_inf_nan=False,
        description="Seconds one database probe answers /healthz and /readyz (at most one probe each).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = Field("text", description="'json': one JSON object per log line.")
    public_url: str | None = Field(
        None, description="The MCP endpoint as clients reach it (https://bank.example/mcp); the OAuth resource."
    )
    desk: bool = Field(True, description="Serve the approval desk (/desk on HTTP; a loopback port beside stdio).")
    desk_port: int = Field(8766, ge=0, le=65535, description="Loopback port of the desk beside stdio (0: any).")
    desk_url: str | None = Field(
        None, description="The desk as approvers reach it (https://bank.example/desk): WebAuthn RP id and origin."
    )
    oauth_issuer: str | None = Field(None, description="Issuer (`iss`) of the JWT access tokens to accept.")
    oauth_audience: str | None = Field(None, description="Required `aud` of access tokens; default: public_url.")
    oauth_jwks_url: str | None = Field(None, description="Where the issuer publishes its signing keys (JWKS).")
    oauth_jwks_file: Path | None = Field(None, description="A JWKS file instead of oauth_jwks_url.")
    oauth_scopes: CommaList = Field(default_factory=list, description="Scopes every access token must carry.")
    oauth_principal_claim: str = Field("sub", min_length=1, description="The token claim naming the principal.")
    oauth_role_scopes: str | None = Field(
        None, description="'role=scope,...': a token with the scope acts with the role (operator=bankgate.operator)."
    )

    @field_validator("allowed_hosts", "allowed_origins", "oauth_scopes", "forwarded_allow_ips", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value

    @field_validator("allowed_hosts", "allowed_origins")
    @classmethod
    def _headers(cls, value: list[str], info: ValidationInfo) -> list[str]:
        """Each a value of the header it allows: a URL as a Host, or an Origin without its scheme or with a path,
        would match no request, and every request from there would be refused 421 with nothing to say why."""
        pattern, what = _HEADER_VALUES[info.field_name or ""]
        for item in value:
            if not pattern.fullmatch(item):
                raise ValueError(f"{item!r} is not {what}")
        return value

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _proxies(cls, value: list[str]) -> list[str]:
        return check_proxies(value)

    @field_validator("oauth_principal_claim")
    @classmethod
    def _claim(cls, value: str) -> str:
        """A JWT claim name: one with blanks around it is a typo no issuer's token carries."""
        if not value.strip() or value != value.strip():
            raise ValueError("must name a token claim (e.g. sub), without spaces around it")
        return value

    @field_validator("public_url", "desk_url", "oauth_issuer", "oauth_jwks_url")
    @classmethod
    def _web_address(cls, value: str | None) -> str | None:
        """An address people or clients are sent to: http(s) with a host, whatever else its own check asks."""
        if value is not None:
            url = urlsplit(value)
            if url.scheme not in ("http", "https") or not url.hostname:
                raise ValueError("must be an http(s) URL with a host, e.g. https://bank.example/...")
        return value

    @field_validator("request_state_keys")
    @classmethod
    def _ring(cls, value: SecretStr | None) -> SecretStr | None:
        """The ring as the SDK will take it (each key long enough, none twice), checked before the ledger
        is opened or created, with the setting named; its message never holds a key."""
        if value is not None:
            AESGCMRequestStateCodec(_ring_keys(value))
        return value

    @field_validator("principal")
    @classmethod
    def _principal(cls, value: str) -> str:
        if not is_principal_name(value):
            raise ValueError(f"principal {PRINCIPAL_RULE}")
        if is_reserved_principal(value):  # its calls' audit records would pass for an administrator's or approver's
            raise ValueError(f"principal {RESERVED_RULE}")
        return value

    @property
    def embedded_default(self) -> bool:
        """No ledger was named (neither --db nor BANKGATE_DB_URL): the zero-configuration SQLite file."""
        return "db_url" not in self.model_fields_set

    @property
    def creates_ledger(self) -> bool:
        """Whether `serve` may create a missing ledger: only when told to, or for the embedded default."""
        return self.create or self.embedded_default

    @property
    def seeds_demo(self) -> bool:
        """Whether `serve` fills an empty ledger with demo money: only when told to, or for the embedded default."""
        return self.seed_demo if self.seed_demo is not None else self.embedded_default

    @property
    def is_loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS

    @property
    def resource_url(self) -> str:
        """This server's MCP endpoint as its OAuth resource identifier."""
        return self.public_url or f"http://{self.host}:{self.port}/mcp"

    def state_keys(self) -> list[str]:
        return [] if self.request_state_keys is None else _ring_keys(self.request_state_keys)


def _ring_keys(ring: SecretStr) -> list[str]:
    """The comma-separated request-state keys, blanks dropped."""
    return [k.strip() for k in ring.get_secret_value().split(",") if k.strip()]
