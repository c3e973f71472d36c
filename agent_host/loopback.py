"""Which URLs point at this machine: only there may a bearer token travel over plain http."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def is_loopback_url(url: str) -> bool:
    """Whether `url` points at this machine (`localhost`, `127.0.0.0/8` or `::1`)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
