"""What the server's log holds: how requests went, never a credential that came with them."""

from pathlib import Path

import httpx2

from mcp_server.audit.writer import AuditWriter
from mcp_server.desk.approvers import ApproverAdmin
from mcp_server.storage.database import Database
from tests.server.harness import Harness, HttpServer


def test_the_access_log_never_holds_an_enrollment_token(tmp_path: Path) -> None:
    """The desk stores only a link's hash, so a database reader cannot enroll; the access log must not
    hold the token either, or whoever reads the logs could enroll as the approver invited. Links carry it in the
    fragment, which no request sends; one sent in the query (an older release's link) is kept out of the log too."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    Harness("setup", url)
    token, _ = ApproverAdmin(Database.open(url, create=False), AuditWriter(None)).add("erin")
    server = HttpServer(url)
    try:
        page = httpx2.get(f"http://127.0.0.1:{server.port}/desk/enroll?token={token}", timeout=10)
        assert page.status_code == 200 and "Register a passkey" in page.text
        httpx2.get(f"http://127.0.0.1:{server.port}/healthz", timeout=10)  # a line after it: the log is written
        server.log.seek(0)
        log = server.log.read().decode()
    finally:
        server.stop()
    assert "GET /desk/enroll" in log  # requests are still logged
    assert token not in log
