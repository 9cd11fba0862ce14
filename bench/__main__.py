"""Run every benchmark module (or the ones named) and print their results as JSON lines."""

from __future__ import annotations

import importlib
import json
import platform
import sys

MODULES = ["v1_pow", "v1_node", "v2_store", "v2_relay", "failover_takeover", "bridge_e2e"]


def main() -> None:
    names = sys.argv[1:] or MODULES
    print(json.dumps({"machine": platform.platform(), "python": platform.python_version(),
                      "cpus": __import__("os").cpu_count()}))
    for name in names:
        mod = importlib.import_module(f"bench.{name}")
        for result in mod.main():
            print(json.dumps({"bench": name, **result}), flush=True)


if __name__ == "__main__":
    main()
