"""The audit signing key file: outside the database, created once, private to its owner.

Format: one hex Ed25519 private key (32 bytes) per line, `#` comments allowed. The first key
signs new records; the others only verify what they signed before a rotation. Replicas of one
ledger must read the same file. A public-key file (`audit public-key`) has the same shape with
public keys, for verifiers who must not be able to sign; only its first line tells the two apart, so
each is refused where the other is expected.
"""

import contextlib
import os
import secrets
import stat
from pathlib import Path

import platformdirs

from policy.audit import HeadSigner, Keyring

KEY_FILE_ENV = "BANKGATE_AUDIT_KEY_FILE"
_PRIVATE_TITLE = "# bankgate audit signing keys"
_PUBLIC_TITLE = "# bankgate audit public keys"
"""The first lines of the two files, which alone tell them apart (both are lines of 64 hex digits)."""
_HEADER = (
    f"{_PRIVATE_TITLE}. Keep private (mode 0600), outside the database, shared by all replicas.\n"
    "# The first key signs; older keys below it only verify (rotation: add a new key on top).\n"
)


class AuditKeyError(ValueError):
    """The key file is missing, unreadable or malformed (the message names the file, never its content)."""


def key_file(configured: Path | None = None) -> Path:
    """The key file: as configured, else `$BANKGATE_AUDIT_KEY_FILE`, else `audit.key` in the user data dir
    (beside the default SQLite ledger)."""
    if configured is not None:
        return configured
    from_env = os.environ.get(KEY_FILE_ENV)
    return Path(from_env) if from_env else Path(platformdirs.user_data_dir("bankgate")) / "audit.key"


def load_signer(path: Path, *, create: bool = True) -> HeadSigner:
    """The signing key, creating the file on first use. Creation is atomic (a complete file is linked
    into place; whoever links first wins), so processes starting together all sign with one key."""
    if create and not path.exists():
        _create(path)
    return HeadSigner(_read_keys(path)[0])


def check_key_file(path: Path) -> None:
    """Before a ledger is opened or created: an existing key file read (a bad one refused here, not after the ledger
    was made), a missing one's place checked; nothing written. The key is made later, once the start holds."""
    if os.path.lexists(path):
        _read_keys(path)
        return
    folder = next(parent for parent in path.absolute().parents if parent.exists())
    if not folder.is_dir():
        raise AuditKeyError(f"audit key file {path} cannot be made: {folder} is not a directory; name another path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise AuditKeyError(f"audit key file {path} cannot be made: this user may not write in {folder}")


def load_keyring(path: Path) -> Keyring:
    """The public halves of every key in a private key file (which must already exist)."""
    return Keyring(HeadSigner(seed).public_key for seed in _read_keys(path))


def load_public_keyring(path: Path) -> Keyring:
    """A keyring from a public-key file written by `public_key_text`."""
    return Keyring(_read_keys(path, private=False))


def public_key_text(path: Path) -> str:
    """The public keys of a private key file, in the file format (for `audit verify --public-keys`)."""
    lines = [HeadSigner(seed).public_key.hex() for seed in _read_keys(path)]
    return f"{_PUBLIC_TITLE} (verify only)\n" + "\n".join(lines) + "\n"


_OPEN_PRIVATE = ((stat.S_IWGRP, "its group"), (stat.S_IRWXO, "others"))
"""Access a private key file must not grant: writing it adds a key (what it signs verifies), reading it signs."""
_OPEN_PUBLIC = ((stat.S_IWGRP, "its group"), (stat.S_IWOTH, "others"))
"""Access a public-key file must not grant: writing it adds a key a forged chain would verify under."""


def _read_keys(path: Path, *, private: bool = True) -> list[bytes]:
    try:
        with path.open(encoding="ascii") as file:  # the mode checked is the open file's: no swap in between
            info = os.fstat(file.fileno())
            mode = info.st_mode
            if private and info.st_uid not in (os.getuid(), 0):  # its owner may rewrite it whatever its mode
                raise AuditKeyError(
                    f"audit key file {path} belongs to another user (uid {info.st_uid}); it must be this user's "
                    f"(uid {os.getuid()}) or root's: chown it, or run as its owner"
                )
            for bits, who in _OPEN_PRIVATE if private else _OPEN_PUBLIC:
                if mode & bits:
                    raise AuditKeyError(
                        f"audit key file {path} is open to {who} (mode {oct(stat.S_IMODE(mode))}); "
                        f"make it private: chmod {'600' if private else '644'} {path}"
                    )
            content = file.read()
    except FileNotFoundError:
        raise AuditKeyError(f"audit key file {path} does not exist (set {KEY_FILE_ENV} or --audit-key-file)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditKeyError(f"audit key file {path} cannot be read ({type(exc).__name__})") from None
    # Public keys taken for seeds would sign with keys anyone handed the auditors' file holds (or seeds for public
    # keys verify nothing): the one file named as the other is refused.
    if content.lstrip().startswith(_PUBLIC_TITLE if private else _PRIVATE_TITLE):
        raise AuditKeyError(
            f"audit key file {path} holds public keys (from `audit public-key`), which cannot sign: name the signing "
            f"key file ({KEY_FILE_ENV} or --audit-key-file)"
            if private
            else f"public-key file {path} holds private signing keys, not public ones: give verifiers the output "
            "of `bankgate-mcp audit public-key` instead"
        )
    keys: list[bytes] = []
    for number, line in enumerate(content.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            key = bytes.fromhex(line)
        except ValueError:
            key = b""
        if len(key) != 32:
            raise AuditKeyError(f"audit key file {path}, line {number}: not a 64-digit hex key")
        keys.append(key)
    if not keys:
        raise AuditKeyError(f"audit key file {path} holds no key")
    return keys


def _create(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(_HEADER + secrets.token_bytes(32).hex() + "\n")
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):  # another process got there first: its key is the key
            os.link(draft, path)
    finally:
        draft.unlink(missing_ok=True)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the new name survives a power cut with the records it signs
    finally:
        os.close(folder)
