"""Where this ledger's desks beside stdio are served now, so an enrollment link names a desk, never a port that
something else holds.

A desk beside stdio takes another loopback port when its own is taken (`listeners.desk_listeners`). `approvers add`
runs in its own process and knew only the configured port: its link sent the one-time token to whatever held
that port, which could enroll a passkey of its own as the approver. Each desk records its port in the ledger
(table `stdio_desks`, migration 0020) and renews it every `BEAT` seconds on a thread; a port not renewed within
`FRESH` seconds (its server killed) counts as gone. A port is recorded with its machine's name (`HOST`): a
`localhost` link names the machine it is opened on, and stdio servers on several machines may share one PostgreSQL
ledger. Only the ledger's writers can write the table, and whoever can already enrols approvers directly.
"""

import logging
import socket
import threading
import time

from sqlalchemy import Connection, text

from mcp_server.storage.database import Database

log = logging.getLogger(__name__)

HOST = socket.gethostname()
BEAT = 15.0
FRESH = 60.0
"""Seconds a port stays live after its desk last renewed it: four beats, so one slow write loses nothing."""


def live_ports(conn: Connection, now: float) -> list[int]:
    """Ports of this machine's desks renewed within `FRESH` seconds, the most recently renewed first."""
    rows = conn.execute(
        text("SELECT port FROM stdio_desks WHERE host = :h AND seen_at > :since ORDER BY seen_at DESC, port"),
        {"h": HOST, "since": now - FRESH},
    ).all()
    return [int(row[0]) for row in rows]


class Presence:
    """Keeps `port` recorded as a live desk of `db`'s ledger from `start` until `stop` (which withdraws it)."""

    def __init__(self, db: Database, port: int) -> None:
        self.db = db
        self.port = port
        self._stopped = threading.Event()
        self._recorded = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="desk-presence", daemon=True)

    def start(self) -> None:
        """Record the port, then renew it on a thread (a database that fails meanwhile is retried there)."""
        self._thread.start()
        self._recorded.wait(5)

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(5)
        try:
            self.db.run(
                lambda conn: conn.execute(
                    text("DELETE FROM stdio_desks WHERE host = :h AND port = :p"), {"h": HOST, "p": self.port}
                )
            )
        except Exception:  # the ledger gone with its server: the row goes stale within FRESH seconds
            log.warning("the desk's port %d stays recorded until it goes stale", self.port, exc_info=True)

    def _renew(self) -> None:
        """Record the port now and every `BEAT` seconds until stopped."""
        while True:
            try:
                self._announce()
            except Exception:  # a database outage: renewed at the next beat, stale only after FRESH seconds
                log.warning("could not record the desk's port %d in the ledger", self.port, exc_info=True)
            self._recorded.set()
            if self._stopped.wait(BEAT):
                return

    def _announce(self) -> None:
        self.db.run(
            lambda conn: conn.execute(
                text(
                    "INSERT INTO stdio_desks (host, port, seen_at) VALUES (:h, :p, :t) "
                    "ON CONFLICT (host, port) DO UPDATE SET seen_at = excluded.seen_at"
                ),
                {"h": HOST, "p": self.port, "t": time.time()},
            ),
            durable=False,
        )
