"""Streamable HTTP: the ASGI app (`app`), bearer tokens (`auth`, `oauth`) and the health probes."""
