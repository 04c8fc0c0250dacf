"""``python -m node_agent``: the same as the ``labfleet-agent`` script."""

import sys

from node_agent.cli import main

sys.exit(main())
