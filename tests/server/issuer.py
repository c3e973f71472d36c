"""A local OAuth issuer for tests: real RS256/ES256 keys, a JWKS on a loopback port, signed tokens.

Only the parts a resource server relies on: the keys it publishes and the tokens it signs. The
tokens are real JWTs (PyJWT over `cryptography`), so the server under test verifies them exactly
as it would verify Entra ID's or Auth0's.
"""

import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ISSUER = "https://issuer.test"


@dataclass
class Issuer:
    jwks_url: str
    rsa_key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    ec_key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    rsa_kid: str = "rsa-1"
    outage: bool = False
    """While set, the JWKS URL answers 503 with an HTML page, as a proxy in front of a failing issuer does."""
    cut_off: bool = False
    """While set, the JWKS answer is cut off after its first bytes by a reset connection, as when the issuer's
    process dies (or a balancer drops it) mid-answer."""
    fetches: int = 0
    """Requests for the JWKS answered so far, however."""

    def jwks(self) -> dict[str, Any]:
        rsa_jwk = json.loads(RSAAlgorithm.to_jwk(self.rsa_key.public_key()))
        ec_jwk = json.loads(ECAlgorithm.to_jwk(self.ec_key.public_key()))
        return {"keys": [{**rsa_jwk, "kid": self.rsa_kid, "use": "sig"}, {**ec_jwk, "kid": "ec-1", "use": "sig"}]}

    def rotate(self) -> rsa.RSAPrivateKey:
        """Publish a new RSA key under a new key id in place of the current one; returns the withdrawn key."""
        withdrawn, self.rsa_key = self.rsa_key, rsa.generate_private_key(65537, 2048)
        self.rsa_kid = f"rsa-{int(self.rsa_kid.removeprefix('rsa-')) + 1}"
        return withdrawn

    def token(self, audience: str, algorithm: str = "RS256", **claims: Any) -> str:
        """A token for `audience`; `claims` override the defaults (a None value removes a claim)."""
        now = int(time.time())
        body = {"iss": ISSUER, "aud": audience, "sub": "oidc-user", "iat": now, "exp": now + 300, "scope": "bankgate"}
        body = {k: v for k, v in {**body, **claims}.items() if v is not None}
        key: Any = self.rsa_key if algorithm.startswith("RS") else self.ec_key
        kid = self.rsa_kid if algorithm.startswith("RS") else "ec-1"
        return jwt.encode(body, key, algorithm=algorithm, headers={"kid": kid})


@contextmanager
def running_issuer(port: int) -> Iterator[Issuer]:
    """The issuer's JWKS, as it stands at each request, served at http://127.0.0.1:`port`/jwks.json until the block
    ends."""
    issuer = Issuer(f"http://127.0.0.1:{port}/jwks.json")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            issuer.fetches += 1
            if issuer.cut_off:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "4096")
                self.end_headers()
                self.wfile.write(b'{"keys": [')
                # Closed with no linger: a reset (not an orderly end) once the handler lets go of the socket.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                return
            if issuer.outage:
                self.send_response(503)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(b"<html><body>Service Unavailable</body></html>")
                return
            self.send_response(200 if self.path == "/jwks.json" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps(issuer.jwks()).encode() if self.path == "/jwks.json" else b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield issuer
    finally:
        http.shutdown()
        http.server_close()
