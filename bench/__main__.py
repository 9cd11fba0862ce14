"""Run every benchmark module (or the ones named) and print their results as JSON lines.

``python -m bench [NAME ...]`` runs whole modules; ``python -m bench NAME --option ...`` hands the
options to the module's own command line (``sustained``: ``--rate R --seconds S``; ``discv5_sim``:
``--nodes N --hours H --scenario S``; ``soak``: ``--rate R --minutes M --churn-min S --churn-max S
--failover-every S --seed N``; ``sidebyside``: ``--part relay|bridge|both``; any module: ``--help``).
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys

from bench import help_or_continue

MODULES = ["v1_pow", "v1_node", "v2_store", "store_backends", "v2_relay", "failover_takeover", "bridge_e2e",
           "dedup_memory", "sustained", "discv5_sim", "soak", "sidebyside"]


def main() -> None:
    args = sys.argv[1:]
    if args and any(a.startswith("-") for a in args[1:]) and args[0] in MODULES:
        mod = importlib.import_module(f"bench.{args[0]}")
        if hasattr(mod, "cli"):
            mod.cli(args[1:])
            return
        help_or_continue(f"bench {args[0]}", mod.__doc__, args[1:])
        print(f"bench {args[0]} takes no options", file=sys.stderr)
        sys.exit(2)
    help_or_continue("bench", __doc__ + "\nModules: " + ", ".join(MODULES), args, "[NAME ...]")
    names = args or MODULES
    print(json.dumps({"machine": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()}))
    for name in names:
        mod = importlib.import_module(f"bench.{name}")
        for result in mod.main():
            print(json.dumps({"bench": name, **result}), flush=True)


if __name__ == "__main__":
    main()
