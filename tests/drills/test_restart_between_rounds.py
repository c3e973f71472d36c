"""An approval round sealed (2026-07-28) before a restart and answered after it.

As documented: with the same key ring, or a rotated one that still holds the sealing key,
the round completes — once. With a key ring that no longer holds it, the answer is refused
(-32602) and nothing runs; the approval it answered expires cleanly, and asking again
starts a new round that completes once. An answer after the approval's lifetime is
`expired` whatever happened in between.
"""

from __future__ import annotations

import time
from pathlib import Path

import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError
from sqlalchemy import text

from tests.drills.support import KEY_RING, OTHER_KEY_RING, Books, ServerProcess, connect, record, running
from tests.support import answer, first_round, outcome

pytestmark = pytest.mark.anyio

ROTATED = f"{OTHER_KEY_RING},{KEY_RING}"  # the new key seals; the old one still opens


def restart(server: ServerProcess, keys: str) -> None:
    """SIGKILL (nothing graceful survives), then start on the same port and database with `keys`."""
    server.kill()
    server.keys = keys
    server.start()
    server.wait_ready()


async def test_a_round_completes_once_across_restarts_with_the_same_or_a_rotated_ring(
    tmp_path: Path,
) -> None:
    books = Books(f"sqlite:///{tmp_path / 'ledger.db'}")
    same = {"from_account": "", "to_account": "", "amount": "10.00", "memo": "restart-same"}
    rotated = {**same, "memo": "restart-rotated"}
    for args in (same, rotated):
        args["from_account"], args["to_account"] = books.open_accounts(2, "50.00")
    server = ServerProcess(books.db_url, tmp_path, "--stateless", keys=KEY_RING, approval_timeout=120)
    with running(server):
        async with connect(server.url) as client:
            sealed = {args["memo"]: await first_round(client, "transfer_funds", args) for args in (same, rotated)}
        results = {}
        for args, keys in ((same, KEY_RING), (rotated, ROTATED)):
            restart(server, keys)
            async with connect(server.url) as client:
                state = sealed[args["memo"]].request_state
                results[args["memo"]] = outcome(await answer(client, "transfer_funds", args, state))
                replayed = outcome(await answer(client, "transfer_funds", args, state))
                assert replayed == results[args["memo"]]
        assert server.starts == 3

    for args in (same, rotated):
        result = results[args["memo"]]
        assert result["status"] == "executed"
        assert books.balance(args["from_account"]) == 4000
        assert books.events(result["approval_ref"]) == ["requested", "approved", "executed"]
    assert books.memo_counts("restart-") == {"restart-same": 1, "restart-rotated": 1}
    books.assert_sound()
    books.close()
    record("restart-between-rounds", case="same and rotated key ring", outcome="completed once")


async def test_a_foreign_ring_refuses_the_answer_and_the_approval_expires_cleanly(tmp_path: Path) -> None:
    books = Books(f"sqlite:///{tmp_path / 'ledger.db'}")
    orphan = {"from_account": "", "to_account": "", "amount": "10.00", "memo": "orphaned"}
    late = {**orphan, "memo": "late"}
    for args in (orphan, late):
        args["from_account"], args["to_account"] = books.open_accounts(2, "50.00")
    lifetime = 3.0
    server = ServerProcess(books.db_url, tmp_path, "--stateless", keys=KEY_RING, approval_timeout=lifetime)
    with running(server):
        async with connect(server.url) as client:
            orphan_round = await first_round(client, "transfer_funds", orphan)
            late_round = await first_round(client, "transfer_funds", late)
        expires = time.time() + lifetime

        # 1. a ring without the sealing key: the answer is refused and nothing runs
        restart(server, OTHER_KEY_RING)
        async with connect(server.url) as client:
            with pytest.raises(MCPError) as refused:
                await answer(client, "transfer_funds", orphan, orphan_round.request_state)
        assert refused.value.error.code == types.INVALID_PARAMS
        assert "Invalid or expired requestState" in refused.value.error.message
        assert books.balance(orphan["from_account"]) == 5000

        # 2. back on the sealing ring, after the approvals' lifetime: a late answer is 'expired'
        time.sleep(max(0.0, expires - time.time()) + 0.2)  # let the approvals' own deadline pass
        restart(server, KEY_RING)
        async with connect(server.url) as client:
            expired = outcome(await answer(client, "transfer_funds", late, late_round.request_state))
            # 3. the orphaned approval is settled 'expired' when the call is made again; the new round runs once
            again = await first_round(client, "transfer_funds", orphan)
            done = outcome(await answer(client, "transfer_funds", orphan, again.request_state))
            # the refused state, replayed once more: at most a new question, never a second transfer
            replay_old = await answer(client, "transfer_funds", orphan, orphan_round.request_state)

    assert expired["status"] == "expired" and books.balance(late["from_account"]) == 5000
    assert books.events(expired["approval_ref"]) == ["requested", "expired"]
    assert done["status"] == "executed" and books.memo_counts("orphaned") == {"orphaned": 1}
    old_ref = refs(books, "orphaned")[0]
    assert books.approval_status(old_ref) == "expired"
    assert books.events(old_ref) == ["requested", "expired"]
    assert books.events(done["approval_ref"]) == ["requested", "approved", "executed"]
    assert isinstance(replay_old, types.InputRequiredResult) or outcome(replay_old)["status"] != "executed"
    assert books.memo_counts("orphaned") == {"orphaned": 1}
    assert books.balance(orphan["from_account"]) == 4000
    books.assert_sound()
    books.close()
    record("restart-between-rounds", case="foreign key ring, then late answer", outcome="refused; expired cleanly")


def refs(books: Books, memo: str) -> list[str]:
    sql = text("SELECT ref FROM approvals WHERE arguments_json LIKE :m ORDER BY created_at")
    return [str(r) for (r,) in books.db.read(lambda conn: conn.execute(sql, {"m": f'%"{memo}"%'}).all())]
