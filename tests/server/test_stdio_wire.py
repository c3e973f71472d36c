"""`serve` over stdio as raw bytes, not through the SDK's client: what a careless or broken client
writes (malformed lines, odd ids, answers to nothing, a cancellation racing its approval, a signal
while a question is open) is answered or ignored as JSON-RPC says, the server keeps serving,
stdout carries nothing but JSON-RPC, and a gated call runs only on a clean approval, once."""

import array
import fcntl
import json
import os
import select
import signal
import sqlite3
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from mcp_types import INVALID_PARAMS, INVALID_REQUEST, PARSE_ERROR

from mcp_server.audit.keys import KEY_FILE_ENV
from mcp_server.storage.gate_store import NETWORK_DEADLINE
from tests.channels.support import desk_policy
from tests.server.harness import Harness, postgres_harness
from tests.support import WAITS_FOR_THE_LEDGER, keyed, logged, serve_args

INIT: dict[str, Any] = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {"elicitation": {"form": {}}},
        "clientInfo": {"name": "raw", "version": "1"},
    },
}
APPROVE = {"action": "accept", "content": {"approve": True}}


class Wire:
    """One `serve` subprocess on pipes: bytes in, JSON-RPC lines out (each must parse), stderr to a file."""

    def __init__(
        self, harness: Harness, log: Path, log_level: str = "INFO", desk: tuple[str, ...] = ("--no-desk",)
    ) -> None:
        env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
        env |= {name: value for name, value in os.environ.items() if name == KEY_FILE_ENV}
        # The approval timeout well past the test's waits; the desk off unless `desk` says (its port is shared).
        args = serve_args(harness.db_url, "--approval-timeout", "60", "--log-level", log_level, *desk)
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log.open("wb"),
            env=env,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as a shell starts it
        )
        self.pending = b""

    def send(self, *messages: dict[str, Any] | bytes) -> None:
        """Write `messages` in one write: a dict as one JSON line, bytes as they are."""
        data = b"".join(m if isinstance(m, bytes) else json.dumps(m).encode() + b"\n" for m in messages)
        assert self.process.stdin is not None
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def taken(self, within: float = 15) -> None:
        """Wait until the server has read everything written to its stdin (the pipe holds nothing)."""
        assert self.process.stdin is not None
        unread = array.array("i", [0])
        deadline = time.monotonic() + within
        while fcntl.ioctl(self.process.stdin.fileno(), termios.FIONREAD, unread) == 0 and unread[0]:
            assert time.monotonic() < deadline, f"{unread[0]} bytes still unread after {within} s"
            time.sleep(0.01)

    def read(self, until: Any = None, timeout: float = 15) -> list[dict[str, Any]]:
        """Messages on stdout until one satisfies `until` (or, without it, until `timeout`; then all so far)."""
        assert self.process.stdout is not None
        fd, got = self.process.stdout.fileno(), []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = self.pending.split(b"\n")
            self.pending = lines.pop()
            got += [json.loads(line) for line in lines]  # anything but JSON fails here
            if until is not None and any(until(m) for m in got):
                return got
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    break
                self.pending += chunk
        assert until is None, f"no message matched before the deadline; got {got}"
        return got

    def initialize(self) -> list[dict[str, Any]]:
        """Initialize (2025-11-25); the messages read until its answer."""
        self.send(INIT)
        messages = self.read(lambda m: m.get("id") == 0)
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return messages

    def ask(self, request_id: int, args: dict[str, str]) -> int:
        """Call `transfer_funds` with `args`; the id of the approval question the server sends back."""
        params = {"name": "transfer_funds", "arguments": args}
        self.send({"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params})
        messages = self.read(lambda m: m.get("method") == "elicitation/create")
        (question,) = [m for m in messages if m.get("method") == "elicitation/create"]
        return int(question["id"])

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def ledger(tmp_path: Path) -> Harness:
    """The SQLite ledger the server serves, as the test reads it (the wire is the same on every backend)."""
    return Harness("stdio", f"sqlite:///{tmp_path / 'ledger.db'}")


@pytest.fixture
def wire(ledger: Harness, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Wire]:
    """The server on a wire; its log level `request.param` if the test gives one (by `indirect`), else INFO."""
    process = Wire(ledger, tmp_path / "stderr.log", getattr(request, "param", "INFO"))
    try:
        yield process
    finally:
        if process.process.poll() is None:
            process.process.kill()
        process.process.wait()
        assert "Traceback" not in process.stderr(), process.stderr()


def cancel(request_id: int) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": request_id}}


def test_malformed_lines_and_odd_ids_are_answered_or_ignored_and_serving_goes_on(wire: Wire) -> None:
    """Pins what held: nothing here kills the server or reaches stdout as anything but JSON-RPC."""
    wire.send(
        b"not json\n",
        b"\xff\xfe\x00 invalid utf-8\n",
        b"\n",
        b"42\n",
        b"{}\n",
        b'[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"ping"}]\n',
        {"jsonrpc": "2.0", "id": None, "method": "ping"},
        {"jsonrpc": "2.0", "id": 1.5, "method": "ping"},
        {"jsonrpc": "2.0", "id": {"an": "object"}, "method": "ping"},
        {"jsonrpc": "2.0", "id": 99, "result": {}},  # an answer to nothing sent
        {"jsonrpc": "2.0", "method": "notifications/no_such_thing"},
        {"jsonrpc": "2.0", "id": 3, "method": "no/such_method"},
        {"jsonrpc": "2.0", "id": 10**30, "method": "ping"},
    )
    messages = wire.initialize()
    wire.send(INIT | {"id": 4})  # a second initialize
    memo = "m" * 8_000_000  # a line of 8 MB
    wire.send({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "transfer_funds", "arguments": {
        "from_account": "ACC-001", "to_account": "ACC-002", "amount": "1", "memo": memo}}})  # fmt: skip
    wire.send({"jsonrpc": "2.0", "id": 6, "method": "tools/list"})
    messages += wire.read(lambda m: m.get("id") == 6)
    by_id = {m["id"]: m for m in messages if "id" in m}
    assert by_id[3]["error"]["code"] == -32601
    assert by_id[10**30] == {"jsonrpc": "2.0", "id": 10**30, "result": {}}
    assert "result" in by_id[4] and len(by_id[6]["result"]["tools"]) == 3
    assert by_id[5]["result"]["structuredContent"]["error"]["code"] == "invalid_memo"
    wire.process.stdin.close()  # type: ignore[union-attr]
    assert wire.process.wait(timeout=15) == 0


BAD_LINES = [
    (b"not json\n", PARSE_ERROR),
    (b'{"jsonrpc":"2.0","id":1,"method":"ping"}{"jsonrpc":"2.0","id":2,"method":"ping"}\n', PARSE_ERROR),  # two
    (b'{"jsonrpc":"2.0","id":3,"method":"pi\x00ng"}\n', PARSE_ERROR),  # a NUL
    (b'{"jsonrpc":"2.0","id":4,"method":"ping","params":{"_meta":{"x":"\xff"}}}\n', PARSE_ERROR),  # not UTF-8
    (b"x" * 12_000_000 + b"\n", PARSE_ERROR),  # 12 MB
    (b"\xc2\xa0\n", PARSE_ERROR),  # a no-break space alone: no JSON whitespace, so no blank line
    (b"42\n", INVALID_REQUEST),
    (b"{}\n", INVALID_REQUEST),
    (b'[{"jsonrpc":"2.0","id":5,"method":"ping"}]\n', INVALID_REQUEST),  # a batch
]


@pytest.mark.parametrize("when", ["before initialize", "after"])
def test_every_malformed_line_is_answered_with_an_error_of_id_null_and_the_next_line_is_served(
    wire: Wire, when: str
) -> None:
    """The SDK's reader dropped each of these lines at debug level: the client waited for an answer
    that never came. JSON-RPC 2.0 answers each with one error (-32700 not JSON, -32600 not a request)."""
    if when == "after":
        wire.initialize()
    for n, (line, code) in enumerate(BAD_LINES):
        wire.send(line, {"jsonrpc": "2.0", "id": 100 + n, "method": "ping"})
        messages = wire.read(lambda m, n=n: m.get("id") == 100 + n)
        assert len(messages) == 2, (line[:80], messages)
        error = messages[0]
        assert error["id"] is None and error["error"]["code"] == code, (line[:80], error)
        assert messages[1] == {"jsonrpc": "2.0", "id": 100 + n, "result": {}}


def test_a_line_split_across_slow_writes_or_holding_a_lone_cr_is_one_message(wire: Wire) -> None:
    """A lone CR is JSON whitespace, and only LF ends a line: the SDK's universal newlines cut such a
    message in two and dropped both halves without a word."""
    wire.initialize()
    wire.send(b'{"jsonrpc":"2.0",\r"id":7,\r"method":"ping"}\r\n')
    assert wire.read(lambda m: m.get("id") == 7) == [{"jsonrpc": "2.0", "id": 7, "result": {}}]
    wire.send(b'{"jsonrpc":"2.0","id":8,')
    wire.taken()  # the server read the first half alone
    wire.send(b'"method":"ping"}\n')
    assert wire.read(lambda m: m.get("id") == 8) == [{"jsonrpc": "2.0", "id": 8, "result": {}}]


def test_a_transfer_whose_line_is_not_utf8_is_refused_as_a_parse_error_and_moves_nothing(
    wire: Wire, ledger: Harness
) -> None:
    """The SDK decoded stdin with errors="replace": a memo sent as Latin-1 ran, recorded as 'caf\ufffd'
    (text the client never sent). Over HTTP the same bytes are a parse error; now over stdio too."""
    source, target = ledger.open_account("50"), ledger.open_account("0")
    wire.initialize()
    arguments = f'{{"from_account":"{source}","to_account":"{target}","amount":"0.50","memo":"caf'.encode()
    params = b'{"name":"transfer_funds","arguments":' + arguments + b'\xe9"}}'
    wire.send(b'{"jsonrpc":"2.0","id":9,"method":"tools/call","params":' + params + b"}\n")
    wire.send({"jsonrpc": "2.0", "id": 10, "method": "ping"})
    messages = wire.read(lambda m: m.get("id") == 10)
    assert [m.get("id") for m in messages] == [None, 10], messages
    assert messages[0]["error"]["code"] == PARSE_ERROR and "UTF-8" in messages[0]["error"]["message"]
    assert ledger.balance(source) == 5000 and ledger.audit(tool="transfer_funds") == []


def test_a_cancelled_question_runs_nothing_even_approved_after_and_an_answer_counts_once(
    wire: Wire, ledger: Harness
) -> None:
    """Pins what held: the cancelled call gets no response and moves nothing, whatever answer comes
    after; an answer sent twice runs its call once."""
    source, target = ledger.open_account("50"), ledger.open_account("0")
    args = {"from_account": source, "to_account": target, "amount": "20"}
    wire.initialize()
    question = wire.ask(7, args)
    wire.send(cancel(7), {"jsonrpc": "2.0", "id": question, "result": APPROVE})
    late = wire.ask(8, args | {"amount": "5"})
    wire.send({"jsonrpc": "2.0", "id": late, "result": APPROVE}, {"jsonrpc": "2.0", "id": late, "result": APPROVE})
    messages = wire.read(lambda m: m.get("id") == 8)
    assert not [m for m in messages if m.get("id") == 7]
    (done,) = [m for m in messages if m.get("id") == 8]
    assert done["result"]["structuredContent"]["status"] == "executed"
    assert not [m for m in wire.read(timeout=1) if "id" in m and "result" in m]  # no second outcome
    assert ledger.balance(source) == 4500 and ledger.balance(target) == 500


def leave(wire: Wire, how: str) -> None:
    """End the server's client `how`: stdin closed, a signal with stdin open, or the client process gone."""
    process = wire.process
    assert process.stdin is not None and process.stdout is not None
    if how in ("SIGINT", "SIGTERM"):
        process.send_signal(getattr(signal, how))
        return
    if how == "client exits":
        process.stdout.close()
    process.stdin.close()


@pytest.mark.parametrize(
    ("how", "code"), [("end of stdin", 0), ("SIGINT", 130), ("SIGTERM", -signal.SIGTERM), ("client exits", 0)]
)
def test_a_server_left_with_a_question_open_stops_at_once_runs_nothing_and_keeps_it_pending(
    wire: Wire, ledger: Harness, how: str, code: int
) -> None:
    """SIGINT: the SDK reads stdin on a thread a signal cannot interrupt, so the server stayed until the
    client closed stdin. Client exits (both pipes closed): the server's last words (the call's error, the
    question's cancellation) met a broken pipe, which ended it with `unexpected ExceptionGroup`, exit 1.
    The end of stdin and SIGTERM held (pinned here)."""
    source, target = ledger.open_account("50"), ledger.open_account("0")
    wire.initialize()
    wire.ask(7, {"from_account": source, "to_account": target, "amount": "20"})
    leave(wire, how)
    try:
        assert wire.process.wait(timeout=10) == code
    except subprocess.TimeoutExpired:
        pytest.fail(f"the server did not stop on {how}")
    assert "unexpected" not in wire.stderr(), wire.stderr()
    assert ledger.balance(source) == 5000
    assert [r["event"] for r in ledger.audit(tool="transfer_funds")] == ["requested"]  # pending, for a retry


@pytest.mark.parametrize("how", ["end of stdin", "client exits"])
def test_a_client_gone_while_its_desk_link_is_out_stops_the_server_quietly_and_keeps_the_question_pending(
    ledger: Harness, tmp_path: Path, how: str
) -> None:
    """A URL-mode client (2025-11-25) quits while the desk link is out: the server stopped at once and moved
    nothing, but logged the closed connection as a warning with its traceback ("could not send the desk link;
    answering with the link", to nobody) in the desktop app's log, where a form question's is not."""
    source, target = ledger.open_account("50"), ledger.open_account("0")
    desk = ("--desk-port", "0", "--policy", str(desk_policy(tmp_path)))
    wire = Wire(ledger, tmp_path / "stderr.log", desk=desk)
    try:
        wire.send(INIT | {"params": INIT["params"] | {"capabilities": {"elicitation": {"url": {}}}}})
        wire.read(lambda m: m.get("id") == 0)
        params = {"name": "transfer_funds", "arguments": {"from_account": source, "to_account": target, "amount": "20"}}
        wire.send({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params})
        asked = wire.read(lambda m: m.get("method") == "elicitation/create")
        assert [m["params"]["mode"] for m in asked if m.get("method") == "elicitation/create"] == ["url"]
        leave(wire, how)
        assert wire.process.wait(timeout=10) == 0
    finally:
        if wire.process.poll() is None:
            wire.process.kill()
        wire.process.wait()
    assert ledger.balance(source) == 5000
    assert [r["event"] for r in ledger.audit(tool="transfer_funds")] == ["requested"]  # pending, for a retry
    assert "Traceback" not in wire.stderr() and "WARNING" not in wire.stderr(), wire.stderr()


@pytest.mark.parametrize("wire", ["DEBUG"], indirect=True)
def test_sigint_while_an_approved_transfer_waits_for_the_ledger_moves_nothing_and_its_keyed_retry_runs_once(
    wire: Wire, ledger: Harness, tmp_path: Path
) -> None:
    """Pins what held: SIGINT ends the process at once with the settlement's transaction open (waiting for the
    write lock another process holds); it is all or nothing, the approval stays pending, and the caller's retry
    under its key is asked the same question again and moves the money once."""
    source, target = ledger.open_account("50"), ledger.open_account("0")
    params = {"name": "transfer_funds", "arguments": {"from_account": source, "to_account": target, "amount": "20"}}
    request = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params | {"_meta": dict(keyed("sig-1"))}}
    wire.initialize()
    wire.send(request)
    (question,) = [m for m in wire.read(lambda m: "method" in m) if m.get("method") == "elicitation/create"]
    holder = sqlite3.connect(ledger.db_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        since = wire.log.stat().st_size
        wire.send({"jsonrpc": "2.0", "id": question["id"], "result": APPROVE})
        logged(wire.log, WAITS_FOR_THE_LEDGER, since)  # the settlement has begun and waits for the lock
        wire.process.send_signal(signal.SIGINT)
        assert wire.process.wait(timeout=10) == 130
    finally:
        holder.close()
    assert ledger.balance(source) == 5000
    assert [r["event"] for r in ledger.audit(tool="transfer_funds")] == ["requested"]
    again = Wire(ledger, tmp_path / "again.log")
    try:
        again.initialize()
        again.send(request)
        (asked,) = [m for m in again.read(lambda m: "method" in m) if m.get("method") == "elicitation/create"]
        assert asked["params"]["message"] == question["params"]["message"]
        again.send({"jsonrpc": "2.0", "id": asked["id"], "result": APPROVE})
        (done,) = [m for m in again.read(lambda m: m.get("id") == 7) if m.get("id") == 7]
    finally:
        again.process.kill()
        again.process.wait()
    assert done["result"]["structuredContent"]["status"] == "executed"
    assert ledger.balance(source) == 3000 and ledger.balance(target) == 2000


@pytest.fixture
def postgres_ledger() -> Iterator[Harness]:
    yield from postgres_harness()


@pytest.mark.postgres
@pytest.mark.parametrize("how", ["end of stdin", "client exits"])
def test_a_client_gone_after_a_call_given_up_on_still_waiting_for_a_lock_stops_the_server(
    postgres_ledger: Harness, tmp_path: Path, how: str
) -> None:
    """PostgreSQL: a call whose store does not answer within its deadline is answered `database_unavailable`, its
    worker thread left waiting for the rows' locks (without end). Its client gone, the server stayed, connections
    open, until the lock was freed: each restart of a desktop assistant could leave one more process behind."""
    ledger = postgres_ledger
    source, target = ledger.open_account("50"), ledger.open_account("0")
    wire = Wire(ledger, tmp_path / "stderr.log")
    holder = psycopg.connect(ledger.db_url, autocommit=True)
    try:
        wire.initialize()
        holder.execute("BEGIN")
        holder.execute("SELECT id FROM accounts WHERE id IN (%s, %s) FOR UPDATE", (source, target))
        params = {"name": "transfer_funds", "arguments": {"from_account": source, "to_account": target, "amount": "1"}}
        wire.send({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": params})
        (done,) = [m for m in wire.read(lambda m: m.get("id") == 5, NETWORK_DEADLINE + 15) if m.get("id") == 5]
        assert done["result"]["structuredContent"]["error"]["code"] == "database_unavailable", done
        leave(wire, how)
        try:
            assert wire.process.wait(timeout=10) == 0
        except subprocess.TimeoutExpired:
            pytest.fail(f"the server outlived its client ({how}) while a worker thread waited for a lock")
        holder.execute("ROLLBACK")
    finally:
        holder.close()
        if wire.process.poll() is None:
            wire.process.kill()
        wire.process.wait()
    assert ledger.balance(source) == 5000 and ledger.balance(target) == 0
    assert "Traceback" not in wire.stderr(), wire.stderr()


def test_a_line_opening_with_a_byte_order_mark_is_refused_naming_it(wire: Wire) -> None:
    """A UTF-8 BOM (as some Windows tools write before the first line) was refused as "expected value at
    line 1 column 1": the line looked like JSON, and the error named nothing in it."""
    wire.send(b'\xef\xbb\xbf{"jsonrpc":"2.0","id":1,"method":"ping"}\n', {"jsonrpc": "2.0", "id": 2, "method": "ping"})
    error, pong = wire.read(lambda m: m.get("id") == 2)
    assert error["id"] is None and error["error"]["code"] == PARSE_ERROR, error
    assert "byte order mark" in error["error"]["message"], error
    assert pong == {"jsonrpc": "2.0", "id": 2, "result": {}}


OWN_IDS = [  # (line, the id the error must carry, its code)
    (b'{"jsonrpc":"2.0","id":6,"method":"tools/call","params":"no"}\n', 6, INVALID_PARAMS),
    (b'{"jsonrpc":"2.0","id":"s7","method":"ping","params":[1]}\n', "s7", INVALID_PARAMS),
    (b'{"jsonrpc":"2.0","id":8,"method":"no/such_method","params":5}\n', 8, INVALID_REQUEST),
    (b'{"jsonrpc":"1.0","id":9,"method":"ping"}\n', 9, INVALID_REQUEST),
    (b'{"jsonrpc":"2.0","id":10,"method":7}\n', 10, INVALID_REQUEST),
    (b'{"jsonrpc":"2.0","id":11,"result":5}\n', None, INVALID_REQUEST),  # a response's id is not the client's
]


def test_a_request_refused_for_a_field_is_answered_with_its_own_id(wire: Wire) -> None:
    """Every one of these was answered with id null although its id was plain to read: a client matching
    answers by id waited out its timeout. The code and wording for params follow the SDK's own answer."""
    wire.initialize()
    wire.send({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": 5}})
    (sdk,) = wire.read(lambda m: m.get("id") == 5)
    assert sdk["error"]["code"] == INVALID_PARAMS
    for n, (line, request_id, code) in enumerate(OWN_IDS):
        wire.send(line, {"jsonrpc": "2.0", "id": 100 + n, "method": "ping"})
        error, served = wire.read(lambda m, n=n: m.get("id") == 100 + n)
        assert error["id"] == request_id and error["error"]["code"] == code, (line, error)
        if code == INVALID_PARAMS:
            assert error["error"]["message"].startswith(sdk["error"]["message"]), error
        assert served == {"jsonrpc": "2.0", "id": 100 + n, "result": {}}


def test_errors_sent_in_one_burst_keep_their_own_ids_to_the_last_line_without_a_newline(wire: Wire) -> None:
    """Pins what held: blank, non-UTF-8, long and misread-id lines read ahead in one write shift no error onto
    another request's id, and a last line cut off by EOF (no LF) is still answered as its own."""
    wire.initialize()
    wire.send(
        b"\n",  # blank: no answer
        b'{"jsonrpc":"2.0","id":1,"method":"\xff"}\n',  # not UTF-8: id null
        b'{"jsonrpc":"2.0","id":21,"method":"ping","params":[1]}\n',
        b"y" * 3_000_000 + b"\n",  # long, not JSON: id null
        b'{"jsonrpc":"2.0","id":true,"method":"ping"}\n',  # misread by the SDK as a notification: id null
        {"jsonrpc": "2.0", "id": 22, "method": "ping"},
        b'{"jsonrpc":"2.0","id":23,"method":"ping","params":5}',  # EOF, no LF
    )
    wire.process.stdin.close()  # type: ignore[union-attr]
    messages = wire.read(lambda m: m.get("id") == 23)
    assert [(m["id"], "error" in m) for m in messages] == [
        (None, True),
        (21, True),
        (None, True),
        (None, True),
        (22, False),
        (23, True),
    ], messages


BAD_IDS = [("true", "boolean"), ("1.5", "fraction"), ('{"an":"object"}', "object"), ("[1]", "array"), ("null", "null")]


def test_a_request_whose_id_is_no_string_or_integer_is_answered_and_not_acted_on(wire: Wire, ledger: Harness) -> None:
    """Such a request was read as a notification: never answered, and a cancellation sent with `"id": true`
    cancelled a transfer waiting for its approval. Each is now refused (-32600, id null, naming the id's type)."""
    source, target = ledger.open_account("50"), ledger.open_account("0")
    wire.initialize()
    question = wire.ask(7, {"from_account": source, "to_account": target, "amount": "20"})
    for n, (bad, kind) in enumerate(BAD_IDS):
        line = f'{{"jsonrpc":"2.0","id":{bad},"method":"notifications/cancelled","params":{{"requestId":7}}}}\n'
        wire.send(line.encode(), {"jsonrpc": "2.0", "id": 100 + n, "method": "ping"})
        messages = wire.read(lambda m, n=n: m.get("id") == 100 + n)
        error = messages[0]
        assert len(messages) == 2 and "id" in error and error["id"] is None, (bad, messages)
        assert error["error"]["code"] == INVALID_REQUEST and kind in error["error"]["message"], (bad, error)
    wire.send({"jsonrpc": "2.0", "id": question, "result": APPROVE})
    (done,) = [m for m in wire.read(lambda m: m.get("id") == 7) if m.get("id") == 7]
    assert done["result"]["structuredContent"]["status"] == "executed"
    assert ledger.balance(source) == 3000 and ledger.balance(target) == 2000
