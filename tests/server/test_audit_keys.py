"""The audit signing key: created once, private, reused, and one key however many processes start at once."""

import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mcp_server.audit.keys import AuditKeyError, load_keyring, load_public_keyring, load_signer, public_key_text
from mcp_server.audit.sequencer import Sequencer
from mcp_server.audit.writer import AuditWriter
from mcp_server.cli.main import main
from mcp_server.ledger.books import Ledger
from mcp_server.ledger.entitlements import EntitlementAdmin
from mcp_server.storage.database import Database


def test_the_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "data" / "audit.key"
    first = load_signer(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    content = path.read_text()
    assert load_signer(path).key_id == first.key_id and path.read_text() == content
    assert [p.name for p in path.parent.iterdir()] == ["audit.key"]  # no draft left behind


_RACER = """
import sys, time
from pathlib import Path
from mcp_server.audit.keys import load_signer
go = Path(sys.argv[2])
print("ready", flush=True)
while not go.exists():
    time.sleep(0.001)
print(load_signer(Path(sys.argv[1])).key_id)
"""


def test_processes_creating_the_key_at_once_agree_on_one(tmp_path: Path) -> None:
    path, go = tmp_path / "audit.key", tmp_path / "go"
    racers = [
        subprocess.Popen([sys.executable, "-c", _RACER, str(path), str(go)], stdout=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    # Every racer at the line (imported) before it opens: a fixed sleep left slow imports behind on a loaded machine.
    assert [racer.stdout.readline() for racer in racers if racer.stdout] == ["ready\n"] * len(racers)
    go.touch()
    ids = {racer.communicate(timeout=60)[0].strip() for racer in racers}
    assert all(racer.returncode == 0 for racer in racers)
    assert ids == {load_signer(path).key_id}


def test_a_missing_or_malformed_key_file_is_named_never_created_by_verify(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere.key"
    db = f"sqlite:///{tmp_path / 'ledger.db'}"
    assert main(["admin", "init", "--db", db]) == 0  # a ledger to verify: only the key is missing
    capsys.readouterr()
    assert main(["audit", "verify", "--db", db, "--audit-key-file", str(missing)]) == 2
    assert f"audit key file {missing} does not exist" in capsys.readouterr().err
    assert not missing.exists()
    bad = tmp_path / "bad.key"
    bad.write_text("# comment\nnot-hex-secret\n")
    bad.chmod(0o600)
    with pytest.raises(AuditKeyError, match=r"bad.key, line 2: not a 64-digit hex key") as caught:
        load_keyring(bad)
    assert "not-hex-secret" not in str(caught.value)


def test_the_public_key_file_holds_no_secret(tmp_path: Path) -> None:
    path = tmp_path / "audit.key"
    signer = load_signer(path)
    public = public_key_text(path)
    secret = next(line for line in path.read_text().splitlines() if not line.startswith("#"))
    assert secret not in public and signer.public_key.hex() in public


@pytest.mark.parametrize(("mode", "who"), [(0o620, "its group"), (0o602, "others"), (0o604, "others")])
def test_a_key_file_others_may_write_or_read_is_refused(tmp_path: Path, mode: int, who: str) -> None:
    """Whoever may write the key file can add a key of their own (records they sign would verify), and whoever
    may read it can sign: such a file is refused for signing and verifying alike, naming its mode."""
    path = tmp_path / "audit.key"
    load_signer(path)
    path.chmod(mode)
    for load in (load_signer, load_keyring, public_key_text):
        with pytest.raises(AuditKeyError, match=rf"audit key file {path} is open to {who} \(mode 0o{mode:o}\)"):
            load(path)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_key_file_another_user_owns_is_refused(tmp_path: Path) -> None:
    """Its owner can rewrite it whatever its mode (and add a key): a private key file must be this user's or root's
    (as PostgreSQL holds its server key), so one planted by another user in a shared directory is refused."""
    path = tmp_path / "audit.key"
    load_signer(path)
    os.chown(path, 0, -1)
    load_signer(path)  # root's: fine
    os.chown(path, 65534, -1)
    with pytest.raises(AuditKeyError, match=rf"audit key file {path} belongs to another user \(uid 65534\)"):
        load_signer(path)


def test_a_public_key_file_others_may_write_is_refused(tmp_path: Path) -> None:
    """An auditor's public keys are what a forged chain would have to match: one added by anyone who may
    write the file would make that chain verify. Readable by all is fine (they are public)."""
    private, public = tmp_path / "audit.key", tmp_path / "audit.pub"
    load_signer(private)
    public.write_text(public_key_text(private))
    public.chmod(0o644)
    load_public_keyring(public)
    public.chmod(0o646)
    with pytest.raises(AuditKeyError, match=r"audit key file .*audit.pub is open to others \(mode 0o646\)"):
        load_public_keyring(public)


def test_a_public_key_file_is_never_taken_for_the_signing_key_nor_the_other_way(tmp_path: Path) -> None:
    """Both files are lines of 64 hex digits. A public-key file named as the signing key (kept private, 0600) signed
    with its public keys taken for secret seeds: anyone handed the auditors' file could sign for the ledger. The
    signing key named as the public keys verified nothing, naming every head. Each is refused, naming what it is."""
    private, public = tmp_path / "audit.key", tmp_path / "audit.pub"
    load_signer(private)
    public.write_text(public_key_text(private))
    public.chmod(0o600)
    for load in (load_signer, load_keyring, public_key_text):
        with pytest.raises(AuditKeyError, match=rf"audit key file {public} holds public keys .*, which cannot sign"):
            load(public)
    with pytest.raises(AuditKeyError, match=rf"{private} holds private signing keys, not public ones"):
        load_public_keyring(private)


def test_a_server_whose_key_file_is_rotated_under_it_keeps_chaining(tmp_path: Path) -> None:
    """Rotation (README, Key management) puts a new key first and keeps the old one below. A command run with the
    rotated file signs the chain's head with the new key; a server started before, whose key ring was read once,
    then refused every head as not verifying and left its own records unchained until restarted."""
    key = tmp_path / "audit.key"
    load_signer(key, create=True)
    db = Database.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    running = Sequencer(db, AuditWriter(key))
    Ledger(db, audit=running.writer).seed_demo()
    assert running.chain()
    key.write_text(secrets.token_hex(32) + "\n" + key.read_text(encoding="utf-8"), encoding="utf-8")
    rotated = Sequencer(db, AuditWriter(key))
    EntitlementAdmin(db, "ops", rotated.writer).grant("dave", "viewer", "ACC-001")
    assert rotated.chain()  # the head is now the new key's
    EntitlementAdmin(db, "ops", running.writer).grant("erin", "viewer", "ACC-001")
    [batch] = running.chain()
    assert len(batch.positions) == 1 and not running.pending()
