"""Whose `X-Forwarded-For` / `X-Forwarded-Proto` the HTTP server believes: the proxies `forwarded_allow_ips` names.

The desk bounds sign-ins per client address. uvicorn, left to its defaults, believes these headers from
127.0.0.1 (or whatever its own FORWARDED_ALLOW_IPS variable names), so any client on the machine could name
a fresh address per request and pass every per-address limit. bankgate believes them from none by default.
"""

import ipaddress
from typing import Any

ANY_PROXY = "*"
"""Believe every connecting address: only for a proxy that overwrites the headers and is the only way in."""


def check_proxies(proxies: list[str]) -> list[str]:
    """Each an IP address or network, or '*' alone: uvicorn takes anything else as a name no client ever has
    (so a typo would silently trust nobody), and '*' beside others as such a name too."""
    if ANY_PROXY in proxies and len(proxies) > 1:
        raise ValueError("'*' (any proxy) stands alone; name the proxies' addresses instead")
    for proxy in proxies:
        if proxy == ANY_PROXY:
            continue
        try:  # as uvicorn reads them: a '/' makes a network (host bits unset), else an address
            ipaddress.ip_network(proxy) if "/" in proxy else ipaddress.ip_address(proxy)
        except ValueError:
            raise ValueError(
                f"{proxy!r} is not an IP address or network: give the proxies' addresses, e.g. 10.0.0.5,10.1.0.0/16"
            ) from None
    return proxies


def proxy_options(proxies: list[str]) -> dict[str, Any]:
    """`uvicorn.Config` arguments believing the headers from `proxies` only; none named: uvicorn adds no proxy
    middleware, so its FORWARDED_ALLOW_IPS variable is never read."""
    if not proxies:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": proxies}
