"""A software passkey for HTTP tests: what a platform authenticator returns, made with `cryptography`.

Only the test side builds these structures; the desk verifies them with py_webauthn, as it
does a browser's. The browser tests use Chromium's virtual authenticator instead.
"""

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from mcp_server.desk.tokens import b64url, from_b64url

_UP, _UV, _AT = 0x01, 0x04, 0x40


@dataclass
class SoftPasskey:
    origin: str
    rp_id: str = "localhost"
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    credential_id: bytes = field(default_factory=lambda: secrets.token_bytes(16))
    count: int = 0
    user_handle: bytes = b""

    def _client_data(self, kind: str, challenge: str) -> bytes:
        return json.dumps({"type": kind, "challenge": challenge, "origin": self.origin, "crossOrigin": False}).encode()

    def _auth_data(self, flags: int, extra: bytes = b"") -> bytes:
        self.count += 1
        return hashlib.sha256(self.rp_id.encode()).digest() + bytes([flags]) + self.count.to_bytes(4, "big") + extra

    def cose_key(self) -> dict[int, Any]:
        """The public key as the authenticator reports it at registration (COSE: EC2, ES256, P-256)."""
        numbers = self.key.public_key().public_numbers()
        return {1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")}

    def register(self, options: dict[str, Any]) -> dict[str, Any]:
        cose = cbor2.dumps(self.cose_key())
        attested = bytes(16) + len(self.credential_id).to_bytes(2, "big") + self.credential_id + cose
        auth_data = self._auth_data(_UP | _UV | _AT, attested)
        self.user_handle = from_b64url(options["user"]["id"])
        client_data = self._client_data("webauthn.create", options["challenge"])
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return self._credential(clientDataJSON=client_data, attestationObject=attestation)

    def sign(self, options: dict[str, Any]) -> dict[str, Any]:
        client_data = self._client_data("webauthn.get", options["challenge"])
        auth_data = self._auth_data(_UP | _UV)
        signature = self.key.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        return self._credential(
            clientDataJSON=client_data, authenticatorData=auth_data, signature=signature, userHandle=self.user_handle
        )

    def _credential(self, **response: bytes) -> dict[str, Any]:
        """The credential as browsers serialize it (`PublicKeyCredential.toJSON()`): binary fields in base64url."""
        return {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "type": "public-key",
            "response": {name: b64url(value) for name, value in response.items()},
            "clientExtensionResults": {},
        }
