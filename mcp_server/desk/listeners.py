"""The desk's loopback sockets beside stdio, bound before the ledger opens (a taken port changes nothing)."""

import errno
import logging
import socket

from mcp_server.http.app import ConfigError
from mcp_server.http.listener import tcp_listener
from mcp_server.settings import Settings

log = logging.getLogger(__name__)


def desk_listeners(settings: Settings) -> list[socket.socket]:
    """The desk's loopback sockets on its port; on another free port (with a warning) when that one is taken, e.g.
    by a second client, unless a desk URL set by hand names the address (its links would not follow the port)."""
    port = settings.desk_port
    try:
        return _both_loopbacks(port)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE or port == 0:
            raise
        if settings.desk_url or settings.public_url:
            fixed = "BANKGATE_DESK_URL (--desk-url)" if settings.desk_url else "BANKGATE_PUBLIC_URL's origin + /desk"
            raise ConfigError(
                f"approval desk port {port} is in use, and the desk's links name the fixed address set by {fixed}: "
                "free the port, choose another with --desk-port and the URL to match, or turn the desk off with "
                "--no-desk"
            ) from exc
        log.warning("approval desk port %d is in use; serving the desk on another loopback port", port)
    for _ in range(_FREE_PORT_TRIES):  # a port free on 127.0.0.1 but taken on ::1 is a rare coincidence
        try:
            return _both_loopbacks(0)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
    raise OSError(errno.EADDRINUSE, f"no port free on both 127.0.0.1 and ::1 in {_FREE_PORT_TRIES} tries")


_FREE_PORT_TRIES = 20


def _both_loopbacks(port: int) -> list[socket.socket]:
    """127.0.0.1:`port` and [::1] on the same port: the links say `localhost`, which a browser may try as ::1
    first, so whatever held [::1] at that port would get the approver behind bankgate's own link. 127.0.0.1
    alone where the host has no IPv6 loopback (`localhost` cannot mean ::1 there)."""
    ipv4 = tcp_listener("127.0.0.1", port)
    try:
        return [ipv4, tcp_listener("::1", ipv4.getsockname()[1])]
    except OSError as exc:
        if exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
            return [ipv4]
        ipv4.close()
        raise
