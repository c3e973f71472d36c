"""Bad command lines and settings of `bankgate-mcp`: each is one line naming what is wrong, exit 2, and
nothing written: no ledger created, no key made, no row of an existing ledger changed."""

import sqlite3
from pathlib import Path

import pytest

from mcp_server.cli.main import _parser
from tests.server.cli_process import McpCli
from tests.server.test_cli_defaults import refused
from tests.support import free_port, unexplained_options

NEW = ("--db", "sqlite:///new.db", "--create", "--seed-demo", "--audit-key-file", "new.key", "--no-desk")
"""A serve that would create a ledger, a key and demo money: a bad input must refuse before any of them."""


@pytest.mark.parametrize(
    ("extra", "env", "says"),
    [
        (("--policy", "missing.toml"), {}, "missing.toml"),
        (("--policy", "."), {}, "Is a directory"),
        (("--policy", "latin1.toml"), {}, "latin1.toml: (file): not UTF-8 text"),
        (("--policy", "open.toml"), {}, "open.toml: (file): others may write it (mode 0o646)"),
        ((), {"BANKGATE_APPROVAL_TIMEOUT": "inf"}, "approval_timeout: Input should be a finite number"),
        ((), {"BANKGATE_APPROVAL_TIMEOUT": "1e308"}, "approval_timeout: Input should be less than or equal to"),
        ((), {"BANKGATE_HEALTH_INTERVAL": "inf"}, "health_interval: Input should be a finite number"),
        (("--drain-timeout", "0"), {}, "drain_timeout: Input should be greater than 0"),
        ((), {"BANKGATE_DRAIN_TIMEOUT": "nan"}, "drain_timeout: Input should be a finite number"),
        (("--forwarded-allow-ips", "10.0.0.5,proxy.lan"), {}, "forwarded_allow_ips: Value error, 'proxy.lan' is not"),
        ((), {"BANKGATE_FORWARDED_ALLOW_IPS": "10.0.0.1/8"}, "forwarded_allow_ips: Value error, '10.0.0.1/8' is not"),
        ((), {"BANKGATE_FORWARDED_ALLOW_IPS": "*,10.0.0.5"}, "forwarded_allow_ips: Value error, '*' (any proxy)"),
        ((), {"BANKGATE_MAX_AMOUNT_MINOR": str(2**63)}, "max_amount_minor: Input should be less than or equal to"),
        ((), {"BANKGATE_PUBLIC_URL": "ftp://bank.example/mcp"}, "public_url: Value error, must be an http(s) URL"),
        ((), {"BANKGATE_OAUTH_ISSUER": "login.example"}, "oauth_issuer: Value error, must be an http(s) URL"),
    ],
    ids=["missing policy", "policy a directory", "policy not UTF-8", "policy others may write", "timeout inf",
         "timeout huge", "health inf", "drain zero", "drain nan", "proxy a name", "proxy network host bits",
         "any proxy among others", "max amount past 64 bits", "public url", "issuer"],
)  # fmt: skip
def test_a_bad_serve_setting_is_named_before_anything_is_created(
    tmp_path: Path, cli: McpCli, extra: tuple[str, ...], env: dict[str, str], says: str
) -> None:
    (tmp_path / "latin1.toml").write_bytes(b"[policy]\nversion = 1\n# r\xe9sum\xe9\n")
    (tmp_path / "open.toml").write_text((Path(__file__).parent / "test_policy.toml").read_text())
    (tmp_path / "open.toml").chmod(0o646)
    refused(cli("serve", *NEW, *extra, **env), says)
    assert not (tmp_path / "new.db").exists()
    assert not (tmp_path / "new.key").exists()


@pytest.mark.parametrize("name", ["admin", "admin:root", "approver:eve", "Admin", "ADMIN:root", "Approver:eve"])
def test_a_name_the_audit_gives_non_callers_is_no_callers_name(
    tmp_path: Path, cli: McpCli, ledger: tuple[str, ...], name: str
) -> None:
    """Ledger administration (`admin`, `admin:<login>`) and desk approvers (`approver:<name>`) are named so in the
    audit log: a stdio caller, a static token or a grant carrying such a name would pass for them."""
    refused(cli("serve", *NEW, "--principal", name), "principal may not be")
    tokens = {"BANKGATE_TOKENS": f"{name}=tok-0123456789abcdef"}
    refused(cli("serve", *NEW, "--transport", "http", "--port", "1", **tokens), "may not be")
    assert not (tmp_path / "new.db").exists()
    before = dump(tmp_path / "bank.db")
    refused(cli("admin", "grant", name, "owner", "ACC-001", *ledger), "principal may not be")
    refused(cli("admin", "roles", "grant", name, "operator", *ledger), "principal may not be")
    assert dump(tmp_path / "bank.db") == before


def test_a_dotenv_not_utf8_is_named_before_anything_is_created(tmp_path: Path, cli: McpCli) -> None:
    (tmp_path / ".env").write_bytes(b"BANKGATE_PRINCIPAL=r\xe9mi\n")  # Latin-1, as an old editor saves it
    refused(cli("serve", *NEW), ".env: not UTF-8 text")
    assert not (tmp_path / "new.db").exists()
    assert not (tmp_path / "new.key").exists()


OAUTH = {"BANKGATE_OAUTH_ISSUER": "https://login.example", "BANKGATE_PUBLIC_URL": "https://bank.example/mcp"}
TOKENS = {"BANKGATE_TOKENS": "alice=tok-0123456789abcdef"}


@pytest.mark.parametrize(
    ("extra", "env", "says"),
    [
        (
            (),
            OAUTH | {"BANKGATE_OAUTH_JWKS_FILE": "missing.json"},
            "BANKGATE_OAUTH_JWKS_FILE missing.json: cannot read",
        ),
        ((), OAUTH | {"BANKGATE_OAUTH_JWKS_FILE": "latin1.toml"}, "BANKGATE_OAUTH_JWKS_FILE latin1.toml: not a JWKS"),
        ((), OAUTH | {"BANKGATE_OAUTH_JWKS_FILE": "open.toml"}, "BANKGATE_OAUTH_JWKS_FILE open.toml: others may write"),
        (("--host", ""), TOKENS, "host: String should have at least 1 character"),
        (("--allowed-host", "https://bank.example"), TOKENS, "allowed_hosts: Value error, 'https://bank.example'"),
        (("--allowed-host", "bank.example/mcp"), TOKENS, "allowed_hosts: Value error, 'bank.example/mcp' is not"),
        (("--allowed-origin", "bank.example"), TOKENS, "allowed_origins: Value error, 'bank.example' is not"),
        (("--allowed-origin", "https://app.example/"), TOKENS, "allowed_origins: Value error, 'https://app.example/'"),
        ((), TOKENS | {"BANKGATE_ALLOWED_HOSTS": "ok.example,bad host"}, "allowed_hosts: Value error, 'bad host'"),
        ((), OAUTH | {"BANKGATE_OAUTH_PRINCIPAL_CLAIM": " "}, "oauth_principal_claim: Value error"),
    ],
    ids=["jwks file missing", "jwks file not json", "jwks file others may write", "empty host: every interface",
         "allowed host a URL", "allowed host with a path", "allowed origin without scheme",
         "allowed origin with a path", "allowed hosts from the environment", "principal claim blank"],
)  # fmt: skip
def test_a_bad_http_setting_is_named_before_anything_is_created(
    tmp_path: Path, cli: McpCli, extra: tuple[str, ...], env: dict[str, str], says: str
) -> None:
    (tmp_path / "latin1.toml").write_bytes(b"[policy]\nversion = 1\n# r\xe9sum\xe9\n")
    (tmp_path / "open.toml").write_text("{}")
    (tmp_path / "open.toml").chmod(0o646)
    refused(cli("serve", *NEW, "--transport", "http", "--port", str(free_port()), *extra, **env), says)
    assert not (tmp_path / "new.db").exists()
    assert not (tmp_path / "new.key").exists()


def test_a_bad_desk_url_is_refused_before_the_ledger_is_created(tmp_path: Path, cli: McpCli) -> None:
    beside = ("--desk-port", "0", "--desk-url", "http://bank.example/desk")  # beside stdio, any free port
    done = cli("serve", "--db", "sqlite:///new.db", "--create", "--audit-key-file", "new.key", *beside)
    refused(done, "passkeys need https")
    assert not (tmp_path / "new.db").exists()
    assert not (tmp_path / "new.key").exists()


def dump(db: Path) -> list[str]:
    """Every row and table of a SQLite ledger, as SQL."""
    with sqlite3.connect(db) as conn:
        return list(conn.iterdump())


@pytest.fixture
def ledger(tmp_path: Path, cli: McpCli) -> tuple[str, ...]:
    """A demo ledger with its key: the `--db`/`--audit-key-file` options naming them."""
    options = ("--db", f"sqlite:///{tmp_path / 'bank.db'}", "--audit-key-file", str(tmp_path / "audit.key"))
    assert cli("admin", "init", "--seed-demo", *options).returncode == 0
    assert cli("audit", "verify", *options).returncode == 0  # every record chained: nothing left to do later
    return options


@pytest.mark.parametrize(
    ("command", "says"),
    [
        (("audit", "tail", "-n", "-1"), "-n must be a whole number from 0 to"),
        (("audit", "tail", "-n", str(10**20)), "-n must be a whole number from 0 to"),
        (("policy", "explain", "get_account_balance", "--args", "{account_id: ACC-001}"), "--args is not valid JSON"),
        (("policy", "explain", "get_account_balance", "--args", "[" * 100_000 + "]" * 100_000), "--args is not valid"),
        (("audit", "checkpoint", "--out", "."), "--out .: Is a directory"),
        (("audit", "checkpoint", "--out", "nowhere/head.json"), "--out nowhere/head.json: No such file or directory"),
    ],
    ids=[
        "tail negative",
        "tail past 64 bits",
        "args not JSON",
        "args nested too deep",
        "checkpoint into a directory",
        "checkpoint into a missing directory",
    ],
)
def test_a_bad_option_against_a_ledger_is_named_and_changes_nothing(
    tmp_path: Path, cli: McpCli, ledger: tuple[str, ...], command: tuple[str, ...], says: str
) -> None:
    before = dump(tmp_path / "bank.db")
    refused(cli(*command, *ledger), says)
    assert dump(tmp_path / "bank.db") == before
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize(
    "command", [("admin", "deposit", "ACC-001", "5"), ("admin", "roles", "grant", "bob", "operator")]
)
def test_a_mistyped_key_file_is_refused_not_created(tmp_path: Path, cli: McpCli, command: tuple[str, ...]) -> None:
    """A ledger's key is made by `admin init` or `serve`; a command naming a key file that does not exist would
    sign with a key made up on the spot: records no server chains, and a directory left where the typo points.
    Here before any head is signed, where the chain's signers cannot tell the keys apart yet."""
    url = f"sqlite:///{tmp_path / 'bank.db'}"
    assert cli("admin", "init", "--seed-demo", "--db", url, "--audit-key-file", "audit.key").returncode == 0
    before = dump(tmp_path / "bank.db")
    refused(cli(*command, "--db", url, "--audit-key-file", "typo/audit.key"), "typo/audit.key does not exist")
    assert dump(tmp_path / "bank.db") == before
    assert not (tmp_path / "typo").exists()


STARTS = [("admin", "init"), ("serve", "--create", "--no-desk")]
"""The commands that make a ledger's key when there is none (and the ledger, when told to)."""


@pytest.mark.parametrize("command", STARTS, ids=["init", "serve"])
def test_a_missing_key_file_is_not_made_for_a_ledger_signed_with_another(
    tmp_path: Path, cli: McpCli, ledger: tuple[str, ...], command: tuple[str, ...]
) -> None:
    """A start refused because the ledger's chain was signed with another key (a replica started without the shared
    key file) leaves no key behind: the next start, named the right file, finds none to puzzle over."""
    before = dump(tmp_path / "bank.db")
    refused(cli(*command, "--db", ledger[1], "--audit-key-file", "new.key"), "new.key", "does not exist")
    assert dump(tmp_path / "bank.db") == before
    assert not (tmp_path / "new.key").exists()


@pytest.mark.parametrize("command", STARTS, ids=["init", "serve"])
@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("a-file/new.key", "a-file is not a directory"),
        ("a-directory", "a-directory cannot be read (IsADirectoryError)"),
        ("public.key", "public.key holds public keys (from `audit public-key`), which cannot sign"),
    ],
    ids=["under a file", "a directory", "the public keys"],
)
def test_a_key_file_that_cannot_be_made_or_read_is_named_before_the_ledger_is_created(
    tmp_path: Path, cli: McpCli, command: tuple[str, ...], key: str, says: str
) -> None:
    (tmp_path / "a-file").write_text("notes\n")
    (tmp_path / "a-directory").mkdir()
    (tmp_path / "public.key").write_text(f"# bankgate audit public keys (verify only)\n{'ab' * 32}\n")
    (tmp_path / "public.key").chmod(0o600)
    refused(cli(*command, "--db", "sqlite:///new.db", "--audit-key-file", key), says)
    assert not (tmp_path / "new.db").exists()
    assert (tmp_path / "a-file").read_text() == "notes\n"
    assert list((tmp_path / "a-directory").iterdir()) == []


@pytest.mark.parametrize("command", STARTS, ids=["init", "serve"])
def test_a_database_of_something_else_is_not_made_a_ledger(
    tmp_path: Path, cli: McpCli, command: tuple[str, ...]
) -> None:
    """A URL naming another application's database (a typo, the wrong file) gets no bankgate tables added to it."""
    other = tmp_path / "app.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE customers (name TEXT)")
    before = dump(other)
    done = cli(*command, "--db", f"sqlite:///{other}", "--audit-key-file", "new.key")
    refused(done, "holds 1 table of something else and no bankgate ledger")
    assert dump(other) == before
    assert not (tmp_path / "new.key").exists()


def test_every_help_lists_and_explains_every_option() -> None:
    """`--help` of each command lists each of its options and arguments with a line saying what it is."""
    assert unexplained_options(_parser(), "bankgate-mcp") == {}
