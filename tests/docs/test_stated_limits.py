"""The limits and timings the README and DEPLOYMENT.md state in prose are the code's: each row names the constant
and the words a reader relies on, so a changed constant fails here until the sentence is changed with it."""

import inspect

import pytest

from mcp_server.desk.approvers import ENROLLMENT_TTL
from mcp_server.desk.challenges import CHALLENGE_TTL, MAX_OPEN_SIGN_INS
from mcp_server.desk.decisions import NOTE_LIMIT
from mcp_server.desk.presence import BEAT
from mcp_server.desk.ratelimit import MAX_FAILURES, WINDOW
from mcp_server.desk.sessions import SESSION_TTL
from mcp_server.expiry import EXPIRY_GRACE, EXPIRY_INTERVAL
from mcp_server.http.health import PROBE_SECONDS
from mcp_server.storage.database import Database
from mcp_server.storage.loop_connection import FAR_REST_S, ROUND_TRIP_LIMIT_S, WAIT_S
from tests.docs.markdown import text_of

POOL = inspect.signature(Database.open).parameters["pool_size"].default
"""Each replica's pool: this many connections, and as many again as overflow."""

STATED = [
    ("README.md", ROUND_TRIP_LIMIT_S == 0.00025, "a round trip within 0.25 ms"),
    ("README.md", FAR_REST_S == 60, "measured when the loop's connection opens and again every 60 s"),
    ("README.md", WAIT_S == 1, "No\nwait on PostgreSQL from the loop lasts more than a second"),
    ("docs/DEPLOYMENT.md", ROUND_TRIP_LIMIT_S == 0.00025 and FAR_REST_S == 60, "0.25 ms round trip"),
    ("docs/DEPLOYMENT.md", POOL == 16, "up to 32 connections (16 + 16 overflow) and opens one more for its event loop"),
    ("docs/DEPLOYMENT.md", PROBE_SECONDS == 3, "The database check gives up after 3 s"),
    ("README.md", EXPIRY_INTERVAL == 15 and EXPIRY_GRACE == 60, "every 15 s, and an approval still pending 60 s past"),
    ("README.md", CHALLENGE_TTL == 120 and MAX_OPEN_SIGN_INS == 10, "10 sign-ins started"),
    ("README.md", CHALLENGE_TTL == 120, "(each a challenge valid two minutes)"),
    ("README.md", MAX_FAILURES == 5 and WINDOW == 60, "5 failed ones a minute"),
    ("README.md", ENROLLMENT_TTL == 15 * 60, "The link works once and for 15 minutes"),
    ("README.md", NOTE_LIMIT == 500, "The optional note (500 characters"),
    ("README.md", SESSION_TTL == 30 * 60, "a desk sign-in's 30 minutes"),
    ("README.md", BEAT == 15, "renews it in the ledger every 15 s"),
]


@pytest.mark.parametrize(("document", "holds", "words"), STATED, ids=[words[:40] for _, _, words in STATED])
def test_the_prose_states_the_codes_limit(document: str, holds: bool, words: str) -> None:
    assert " ".join(words.split()) in " ".join(text_of(document).split()), f"{document} no longer says {words!r}"
    assert holds, f"{document} says {words!r}, which the code no longer does"
