"""``python -m agent_host`` runs the ``bankgate-agent`` command line."""

import sys

from .cli import main

sys.exit(main())
