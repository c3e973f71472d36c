"""`python -m mcp_server` is `bankgate-mcp`."""

import sys

from mcp_server.cli.main import main

sys.exit(main())
