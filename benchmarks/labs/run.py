"""All lab benchmarks in one go: ``python -m benchmarks.labs.run`` (``make bench-labs``), as root.

Runs each topic benchmark (fork-bomb containment and cgroup steps; namespace,
network and seccomp steps, each beside the shell-script check lab platforms
usually write) and then the catalog-wide check/solve/reset table, one after
the other so they do not disturb each other's timings.
"""

from __future__ import annotations

import subprocess
import sys

MODULES = ("cgroups_bench", "namespaces_bench", "network_bench", "seccomp_bench", "catalog_bench")


def main() -> int:
    failed = []
    for name in MODULES:
        print(f"\n===== benchmarks.labs.{name} =====", flush=True)
        done = subprocess.run([sys.executable, "-m", f"benchmarks.labs.{name}", *sys.argv[1:]])
        if done.returncode:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
