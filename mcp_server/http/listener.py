"""Listening sockets handed to uvicorn (`Server.run(sockets=...)`), bound before the server starts."""

import socket


def tcp_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket on `host`:`port` whose accepted connections get TCP_NODELAY.

    `socket.create_server` labels its socket protocol 0, accepted sockets inherit the label, and
    asyncio turns Nagle off only on sockets labelled IPPROTO_TCP. With Nagle on, a response the
    server writes in more than one send waits for the client's delayed ACK: ~40 ms per request
    on a kept-alive connection. The same descriptor, relabelled, keeps create_server's options.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    bound = socket.create_server((host, port), family=family)
    return socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, bound.detach())
