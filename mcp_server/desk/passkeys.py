"""Passkeys: registering one from an enrollment link, signing in with one, and checking an assertion.

All WebAuthn verification is py_webauthn's (`webauthn` 3.x); user verification is required in
every ceremony (a passkey unlocked by the person, not merely present). Any of its exceptions
(`WebAuthnException`: malformed data, contradictory flags, unsupported keys) is a refusal, never a 500.
"""

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, text
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    decode_credential_public_key,
    decoded_public_key_to_cryptography,
    parse_authentication_credential_json,
    parse_registration_credential_json,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from mcp_server.audit.writer import AuditWriter
from mcp_server.desk import challenges, sessions
from mcp_server.desk.approvers import ENROLLED, audit_entry
from mcp_server.desk.config import DeskConfig
from mcp_server.desk.refusals import DeskRefusal
from mcp_server.desk.tokens import b64url, from_b64url, new_token, storable, token_hash
from policy.store import APPROVER_PREFIX

RP_NAME = "bankgate approval desk"
_BAD_SIGNATURE = "The passkey's signature did not verify; nothing was recorded."


@dataclass(frozen=True)
class Credential:
    credential_id: str
    approver: str
    public_key: bytes
    sign_count: int
    active: bool


def enrollment(conn: Connection, token: object) -> tuple[str, str]:
    """(approver, user handle) of a valid enrollment link; refused (410) when used, expired or unknown."""
    row = None
    if isinstance(token, str) and token:
        row = conn.execute(
            text(
                "SELECT e.approver, e.expires_at, e.used_at, a.status, a.user_handle FROM desk_enrollments e"
                " JOIN desk_approvers a ON a.name = e.approver WHERE e.token_sha256 = :t"
            ),
            {"t": token_hash(token)},
        ).first()
    if row is not None and row.used_at is not None:
        raise DeskRefusal("enrollment_used", "This enrollment link was already used. Sign in with your passkey, "
                          "or ask an administrator for a new link.", 410)  # fmt: skip
    if row is not None and float(row.expires_at) <= time.time():
        raise DeskRefusal(
            "enrollment_expired", "This enrollment link has expired. Ask an administrator for a new one.", 410
        )
    if row is None or row.status != "invited":
        raise DeskRefusal(
            "enrollment_invalid", "This enrollment link is not valid (unknown, replaced, or the approver was revoked). "
            "Ask an administrator for a new one.", 410)  # fmt: skip
    return str(row.approver), str(row.user_handle)


def registration_options(conn: Connection, config: DeskConfig, token: object) -> dict[str, Any]:
    approver, handle = enrollment(conn, token)
    nonce = new_token()
    options = generate_registration_options(
        rp_id=config.rp_id,
        rp_name=RP_NAME,
        user_name=approver,
        user_id=from_b64url(handle),
        user_display_name=approver,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED, user_verification=UserVerificationRequirement.REQUIRED
        ),
    )
    expires = time.time() + challenges.CHALLENGE_TTL
    challenges.issue(conn, nonce, "enroll", options.challenge, expires, subject=token_hash(str(token)))
    return {"nonce": nonce, "options": json.loads(options_to_json(options))}


def register(
    conn: Connection, config: DeskConfig, audit: AuditWriter, body: Mapping[str, Any], issued: Row[Any]
) -> str:
    """Verify the registration answering the `issued` challenge (already used up), store the passkey,
    use up the link, activate the approver; return a session."""
    token = body.get("token")
    approver, _ = enrollment(conn, token)
    if issued.subject != token_hash(str(token)):
        raise DeskRefusal("unknown_challenge", "This registration answers another enrollment's challenge.", 403)
    try:
        verified = verify_registration_response(
            credential=parse_registration_credential_json(json.dumps(body.get("credential"))),
            expected_challenge=from_b64url(issued.challenge),
            expected_rp_id=config.rp_id,
            expected_origin=config.origin,
            require_user_verification=True,
        )
        # A "none" attestation signs nothing with the key: load it now, or a key no signature can ever be
        # checked against (unsupported curve, point off the curve) would use up the link for good.
        decoded_public_key_to_cryptography(decode_credential_public_key(verified.credential_public_key))
    except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
        raise DeskRefusal("registration_failed", f"The passkey could not be registered: {exc}", 400) from None
    now = time.time()
    _use_enrollment(conn, approver, str(token), now)
    credential_id, public_key = b64url(verified.credential_id), b64url(verified.credential_public_key)
    stored = conn.execute(
        text(
            "INSERT INTO desk_credentials (credential_id, approver, public_key, sign_count, rp_id, created_at)"
            " VALUES (:id, :a, :k, :c, :rp, :at) ON CONFLICT (credential_id) DO NOTHING"
        ),
        {"id": credential_id, "a": approver, "k": public_key, "c": verified.sign_count, "rp": config.rp_id, "at": now},
    ).rowcount
    if stored != 1:  # the enrollee's authenticator named a passkey already stored (its ids are the client's to claim)
        raise DeskRefusal("passkey_registered", "This passkey is already registered at this desk; register another "
                          "one. Nothing was recorded and the link still works.", 409)  # fmt: skip
    audit.append(
        conn,
        [
            audit_entry(  # the key too: `audit verify` holds the stored passkey to it (`roster`)
                ENROLLED,
                APPROVER_PREFIX + approver,
                {"approver": approver, "credential_id": credential_id, "public_key": public_key},
            )
        ],
    )
    return sessions.open_session(conn, approver)


def _use_enrollment(conn: Connection, approver: str, token: str, now: float) -> None:
    """Activate `approver` and use up its link, only if both are still as `enrollment` read them.

    Conditional writes, in `ApproverAdmin.revoke`'s lock order (approver, then link): on PostgreSQL two
    uses of one link, or a revocation, may have committed since that read (READ COMMITTED); the loser
    is refused with `enrollment`'s own reason and registers nothing.
    """
    activated = conn.execute(
        text("UPDATE desk_approvers SET status = 'active' WHERE name = :a AND status = 'invited'"), {"a": approver}
    ).rowcount
    used = 0
    if activated == 1:
        used = conn.execute(
            text("UPDATE desk_enrollments SET used_at = :at WHERE token_sha256 = :t AND used_at IS NULL"),
            {"at": now, "t": token_hash(token)},
        ).rowcount
    if used != 1:
        enrollment(conn, token)  # raises why, as read now
        raise DeskRefusal("enrollment_used", "This enrollment link was already used.", 410)


def authentication_options(config: DeskConfig, challenge: bytes, allowed: list[str] | None = None) -> dict[str, Any]:
    """Request options for `challenge` (any passkey of this RP when `allowed` is None)."""
    options = generate_authentication_options(
        rp_id=config.rp_id,
        challenge=challenge,
        allow_credentials=[PublicKeyCredentialDescriptor(id=from_b64url(c)) for c in allowed or []],
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    parsed: dict[str, Any] = json.loads(options_to_json(options))
    return parsed


def sign_in_options(conn: Connection, config: DeskConfig, client: str) -> dict[str, Any]:
    """A sign-in challenge for `client` (its address), which may hold only so many open."""
    nonce = new_token()
    challenge = from_b64url(nonce)
    expires = time.time() + challenges.CHALLENGE_TTL
    challenges.issue_bounded(conn, nonce, "sign_in", challenge, expires, client, challenges.MAX_OPEN_SIGN_INS)
    return {"nonce": nonce, "options": authentication_options(config, challenge)}


def credential(conn: Connection, assertion: object) -> Credential:
    """The stored passkey an assertion names; refused when the assertion names none."""
    credential_id = assertion.get("id") if isinstance(assertion, dict) else None
    row = None
    if storable(credential_id):
        row = conn.execute(
            text(
                "SELECT c.credential_id, c.approver, c.public_key, c.sign_count, a.status FROM desk_credentials c"
                " JOIN desk_approvers a ON a.name = c.approver WHERE c.credential_id = :id"
            ),
            {"id": credential_id},
        ).first()
    if row is None:
        raise DeskRefusal("unknown_passkey", "This passkey is not registered at this desk.", 401)
    return Credential(row[0], row[1], from_b64url(row[2]), int(row[3]), row[4] == "active")


def check_assertion(
    assertion: object,
    key: Credential,
    challenge: bytes,
    *,
    rp_id: str,
    origin: str,
    counted: bool = True,
) -> int:
    """Verify `assertion` by `key` over `challenge`; the new sign count. `counted=False` skips the
    signature counter check (offline re-verification of assertions older than the stored count)."""
    try:
        verified = verify_authentication_response(
            credential=parse_authentication_credential_json(json.dumps(assertion)),
            expected_challenge=challenge,
            expected_rp_id=rp_id,
            expected_origin=origin,
            credential_public_key=key.public_key,
            credential_current_sign_count=key.sign_count if counted else 0,
            require_user_verification=True,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
        raise DeskRefusal("bad_signature", f"{_BAD_SIGNATURE} ({exc})", 403) from None
    return int(verified.new_sign_count)


def update_sign_count(conn: Connection, key: Credential, count: int) -> None:
    """Store the assertion's `count`, only over the count it was checked against (`key.sign_count`): two uses of
    one passkey at once (a clone's, or two tabs') both passed against the same stored count, and the slower one
    writing its lower count over the faster's would hide the clone. Refused then; nothing is recorded."""
    moved = conn.execute(
        text("UPDATE desk_credentials SET sign_count = :c WHERE credential_id = :id AND sign_count = :was"),
        {"c": count, "id": key.credential_id, "was": key.sign_count},
    ).rowcount
    if moved != 1:
        raise DeskRefusal("bad_signature", "This passkey was used elsewhere at the same moment; nothing was recorded. "
                          "Try again; if you did not, tell the bank: the passkey may be copied.", 403)  # fmt: skip


def sign_in(conn: Connection, config: DeskConfig, body: Mapping[str, Any], issued: Row[Any]) -> str:
    """Verify a sign-in assertion answering the `issued` challenge (already used up); a new session."""
    key = credential(conn, body.get("credential"))
    if not key.active:
        raise DeskRefusal("approver_revoked", "This approver's access was revoked.", 403)
    count = check_assertion(
        body.get("credential"), key, from_b64url(issued.challenge), rp_id=config.rp_id, origin=config.origin
    )
    update_sign_count(conn, key, count)
    return sessions.open_session(conn, key.approver)
