"""Remote help's benchmarks (issue 12), one after the other: SSH rescue, then stuck detection.

- **rescue** (``benchmarks/rescue.py``, as root, fleet hosts): ``labfleet rescue --silent`` of
  ``--hosts`` silent local fleet hosts against a sequential loop of the same Fabric steps; wall times,
  CPU per host, ratio (goal >= 5x).
- **stuck** (``benchmarks/stuck.py``): one pass of the stuck rules over ``--nodes`` attendees against a
  plain read of the same rows (goal <= 3x).

    python -m benchmarks.help [--only rescue|stuck] [--hosts 20] [--parallel 20] [--nodes 500]
                              [--passes 20] [--database sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import sys

from benchmarks import rescue, stuck
from benchmarks.common import add_database_option


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.help", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("rescue", "stuck"), help="run one of the two (default both)")
    parser.add_argument("--hosts", type=int, default=20, help="rescue: silent fleet hosts (default 20)")
    parser.add_argument("--parallel", type=int, default=20, help="rescue: LABFLEET_RESCUE_PARALLEL (default 20)")
    parser.add_argument("--nodes", type=int, default=500, help="stuck: attendees in the room (default 500)")
    parser.add_argument("--passes", type=int, default=20, help="stuck: timed passes (default 20)")
    add_database_option(parser)
    args = parser.parse_args(argv)
    code = 0
    if args.only in (None, "rescue"):
        code |= rescue.main(["--hosts", str(args.hosts), "--parallel", str(args.parallel)])
    if args.only in (None, "stuck"):
        code |= stuck.main(["--nodes", str(args.nodes), "--passes", str(args.passes),
                            "--database", args.database])
    return code


if __name__ == "__main__":
    sys.exit(main())
