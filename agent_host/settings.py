"""The host's configuration, named as the lab names it: environment variables over `.env` over defaults.

The lab's names (`PROJECT_ENDPOINT`, `CHAT_MODEL`, `AGENT_NAME`, `EMULATOR_TOKEN`) and the
server's (`BANKGATE_DB_URL`) are read as they are; every other field is `BANKGATE_AGENT_<FIELD>`.
Command-line options override all of them (each CLI passes its options as keyword arguments).
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from agent_host.foundry.dev_token import DEV_TOKEN

DEFAULT_AGENT_NAME = "bankgate-teller"
DEFAULT_MAX_ROUNDS = 8
DEFAULT_EMULATOR_MODEL = "gpt-4.1-mini"
"""Any name works against the emulator; this one reads like a real deployment."""

Transport = Literal["sdk", "rest"]
McpProtocol = Literal["auto", "legacy"]


class HostSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="BANKGATE_AGENT_", env_file=".env", extra="ignore", populate_by_name=True
    )

    project_endpoint: str | None = Field(
        default=None,
        validation_alias="PROJECT_ENDPOINT",
        description="https://<account>.services.ai.azure.com/api/projects/<project>, or the emulator's endpoint.",
    )
    chat_model: str | None = Field(
        default=None, validation_alias="CHAT_MODEL", description="Model deployment for new agent versions."
    )
    agent_name: str = Field(default=DEFAULT_AGENT_NAME, validation_alias="AGENT_NAME")
    emulator_token: SecretStr = Field(
        default=SecretStr(DEV_TOKEN),
        validation_alias="EMULATOR_TOKEN",
        description="Bearer token for a loopback emulator endpoint (the one `bankgate-agent emulator` prints).",
    )
    transport: Transport = "sdk"
    stream: bool = False
    agent_version: str | None = Field(default=None, description="Pin this existing version instead of creating one.")
    existing_agent: bool = Field(default=False, description="Use the agent's latest version as it is.")
    strict_tools: bool = Field(default=True, description="Send strict-mode tool schemas when the MCP schemas allow it.")
    max_rounds: int = Field(default=DEFAULT_MAX_ROUNDS, ge=0, description="Tool-call rounds allowed per request.")
    max_retries: int = Field(
        default=2, ge=0, description="Retries of throttled, failed (5xx) and timed-out requests (openai's default)."
    )
    response_timeout: float = Field(
        default=600.0, gt=0, description="Seconds to wait for an answer from the Responses API (openai's default)."
    )
    mcp_url: str | None = Field(
        default=None, validation_alias="BANKGATE_MCP_URL", description="Streamable HTTP endpoint."
    )
    mcp_token: SecretStr | None = Field(default=None, validation_alias="BANKGATE_MCP_TOKEN")
    mcp_protocol: McpProtocol = "auto"
    db_url: str | None = Field(
        default=None,
        validation_alias="BANKGATE_DB_URL",
        description="Ledger for the MCP server the host launches.",
        repr=False,  # a PostgreSQL URL may carry its password
    )
    approval_timeout: float = Field(
        default=300.0,
        gt=0,
        le=30 * 24 * 3600,  # the server's bound (its deadlines are dated): the launched server reads the same variable
        allow_inf_nan=False,
        validation_alias="BANKGATE_APPROVAL_TIMEOUT",
        description="The MCP server's approval timeout (the launched server reads the same variable); the "
        "console shows each question's deadline from it.",
    )
    tool_timeout: float = Field(
        default=330.0,
        gt=0,
        allow_inf_nan=False,
        description="Seconds one MCP round may take (the server gives a human 300 s by default).",
    )

    @model_validator(mode="after")
    def _human_has_the_whole_window(self) -> HostSettings:
        """A 2025-11-25 call waits for its answer within one MCP round, and a desk wait polls for as many
        rounds as the tool timeout allows: a shorter tool timeout would give up before the deadline shown."""
        if self.tool_timeout <= self.approval_timeout:
            raise ValueError(
                f"BANKGATE_AGENT_TOOL_TIMEOUT ({self.tool_timeout:g} s) must be longer than "
                f"BANKGATE_APPROVAL_TIMEOUT ({self.approval_timeout:g} s), or the host gives up on a question "
                "before its deadline"
            )
        return self

    @field_validator("mcp_url")
    @classmethod
    def _mcp_url(cls, value: str | None) -> str | None:
        """A Streamable HTTP endpoint: anything else is a configuration error, not a failed connection."""
        if value is not None:
            url = urlsplit(value)
            if url.scheme not in ("http", "https") or not url.hostname:
                raise ValueError("must be an http(s) URL with a host, e.g. http://127.0.0.1:8765/mcp")
        return value

    @classmethod
    def variable_of(cls, name: str) -> str:
        """The environment variable setting field `name` (a variable's own name is returned as it is)."""
        field = cls.model_fields.get(name)
        if field is None:
            return name
        alias = field.validation_alias
        return alias if isinstance(alias, str) else f"{cls.model_config.get('env_prefix', '')}{name}".upper()

    @classmethod
    def for_emulator(cls, endpoint: str, token: str, **overrides: Any) -> HostSettings:
        """Settings for a loopback emulator that ignore the environment and `.env` (demo, tests, bench)."""
        defaults = {name: field.get_default(call_default_factory=True) for name, field in cls.model_fields.items()}
        emulator = {
            "project_endpoint": endpoint,
            "emulator_token": SecretStr(token),
            "chat_model": DEFAULT_EMULATOR_MODEL,
        }
        return cls(**(defaults | emulator | overrides), _env_file=None)  # type: ignore[call-arg]
