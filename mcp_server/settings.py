"""Server configuration: CLI flags over `BANKGATE_*` environment variables over `.env` over defaults."""

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mcp_server.database import default_database_url

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BANKGATE_", env_file=".env", extra="ignore")

    db_url: str = Field(default_factory=default_database_url, description="sqlite:///path or postgresql://...")
    seed_demo: bool = Field(True, description="Create ACC-001..ACC-003 on a new, empty ledger.")
    policy: Path | None = Field(None, description="Policy TOML file; the shipped default when unset.")
    transport: Literal["stdio", "http"] = "stdio"
    host: str = "127.0.0.1"
    port: int = Field(8765, ge=1, le=65535)
    stateless: bool = Field(False, description="Stateless HTTP (2026-07-28 clients only can approve).")
    tokens: SecretStr | None = Field(None, description="Bearer tokens as 'principal=token;principal2=token2'.")
    token_file: Path | None = Field(None, description="File of 'principal token' lines.")
    no_auth: bool = Field(False, description="Serve HTTP without authentication (loopback only).")
    allowed_hosts: list[str] = Field(default_factory=list, description="Extra Host values to accept.")
    allowed_origins: list[str] = Field(default_factory=list, description="Extra Origin values to accept.")
    max_body_bytes: int = Field(65_536, ge=1_024, description="Largest HTTP request body accepted.")
    request_state_keys: SecretStr | None = Field(
        None, description="Comma-separated request-state keys (>= 32 bytes each); the first seals."
    )
    approval_timeout: float = Field(300.0, gt=0, description="Seconds a human has to answer an approval.")
    principal: str = Field("local", min_length=1, description="Principal for stdio and unauthenticated HTTP.")
    max_amount_minor: int = Field(100_000_000, gt=0, description="Largest single amount, in minor units.")
    audit_key_file: Path | None = Field(
        None, description="Audit signing key file, outside the database (default: audit.key in the user data dir)."
    )
    health_interval: float = Field(
        1.0, gt=0, description="Seconds one database probe answers /healthz and /readyz (at most one probe each)."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("allowed_hosts", "allowed_origins", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value

    @property
    def is_loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS

    def state_keys(self) -> list[str]:
        if self.request_state_keys is None:
            return []
        return [k.strip() for k in self.request_state_keys.get_secret_value().split(",") if k.strip()]
