"""Where the desk is reached: its public URL gives the WebAuthn RP id and origin, the cookie's
Secure flag, and the links the CLI prints and the gate will hand to clients."""

from dataclasses import dataclass
from urllib.parse import urlsplit

from mcp.server.transport_security import TransportSecuritySettings

DESK_PATH = "/desk"
DEFAULT_STDIO_PORT = 8766
"""The loopback port the desk takes beside stdio unless told otherwise (0: any free port)."""


class DeskConfigError(ValueError):
    """A desk URL passkeys cannot work with; the message says what to set."""


@dataclass(frozen=True)
class DeskConfig:
    url: str
    """The desk's public base URL, e.g. https://bank.example/desk (no trailing slash)."""
    security: TransportSecuritySettings
    """The Host/Origin allowlist, the same as `/mcp`'s plus the desk URL's own host and origin."""

    @property
    def origin(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def rp_id(self) -> str:
        """The WebAuthn relying party id: the URL's host name (passkeys are bound to it, not to the port)."""
        return urlsplit(self.url).hostname or ""

    @property
    def secure(self) -> bool:
        return self.url.startswith("https://")

    @property
    def path(self) -> str:
        return urlsplit(self.url).path or DESK_PATH

    def approval_url(self, ref: str) -> str:
        """The page where approval `ref` is decided: what URL-mode elicitation and `pending_approval` link to."""
        return f"{self.url}/approvals/{ref}"

    def enrollment_url(self, token: str) -> str:
        """The token in the fragment, which no request carries: a query string is in every proxy's access log."""
        return f"{self.url}/enroll#token={token}"


def desk_config(url: str, security: TransportSecuritySettings) -> DeskConfig:
    """Check `url` (http(s), a host name WebAuthn accepts, path ending in /desk) and allow its host and origin."""
    url = url.rstrip("/")
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host or parts.query or parts.fragment:
        raise DeskConfigError(f"desk URL {url!r} must be http(s)://host[:port]/desk, e.g. https://bank.example/desk")
    if parts.scheme == "http" and host != "localhost":
        raise DeskConfigError(
            f"desk URL {url!r}: passkeys need https, or http://localhost for local use (not an IP address)"
        )
    if host.replace(".", "").isdigit() or ":" in host:
        raise DeskConfigError(f"desk URL {url!r}: WebAuthn needs a host name, not an IP address (use localhost)")
    if parts.path != DESK_PATH:  # the pages link under /desk: a proxy cannot serve them under another path
        raise DeskConfigError(
            f"desk URL {url!r}: its path must be {DESK_PATH} exactly, where the desk is served "
            f"(https://bank.example{DESK_PATH}; another path, even one ending in {DESK_PATH}, is not supported)"
        )
    origin = f"{parts.scheme}://{parts.netloc}"
    return DeskConfig(
        url,
        TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=[*security.allowed_hosts, parts.netloc],
            allowed_origins=[*security.allowed_origins, origin],
        ),
    )


def default_desk_url(port: int) -> str:
    return f"http://localhost:{port}{DESK_PATH}"
