"""`python -m agent_host` runs the `bankgate-agent` command line."""

import sys

from agent_host.cli.main import main

sys.exit(main())
