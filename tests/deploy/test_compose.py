"""deploy/compose.yaml: valid YAML whose bridge command lines are real, valid ``waku-bridge`` flags.

No docker engine here: each bridge service's ``command`` is parsed by the real CLI parser and
merged with the mounted config file by the real config loader (what ``waku-bridge`` does at start),
so a renamed flag or an invalid value fails this test.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from bridge.app.cli import build_parser
from bridge.app.config import load_config
from failover.lease import LeaseTiming

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


# What an operator puts in deploy/.env; substituted as compose's interpolation would.
ENV = {"WAKU_V1_STATICNODE": "enode://" + "ab" * 64 + "@v1-node.example:30303",
       "WAKU_V2_STATICNODE": "/dns4/v2-node.example/tcp/60000/p2p/"
                             "16Uiu2HAmAr8n1ibpLoMDKebcs1nwrvQN1ScwGP7ruJDjv5U3ZHLg",
       "WAKU_BRIDGE_ADMIN_TOKEN": ""}


def _interpolate(text: str) -> str:
    def sub(m: re.Match[str]) -> str:
        name, op = m.group(1), m.group(2) or ""
        if name in ENV:
            return ENV[name]
        assert op.startswith(":-"), f"${{{name}}} has no default and is not in deploy/.env"
        return op[2:]

    return re.sub(r"\$\{([A-Z0-9_]+)((?::[-?])[^}]*)?\}", sub, text)


def _compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(_interpolate((DEPLOY / "compose.yaml").read_text()))
    return doc


def _bridges(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in doc["services"].items() if n.startswith("bridge-")}


def _config(svc: dict[str, Any]) -> Any:
    args = build_parser().parse_args(["run", *svc["command"]])
    mounts = dict(v.split(":")[1::-1] for v in svc["volumes"] if v.startswith("./"))  # container -> host
    host_file = DEPLOY / mounts[args.config]
    flags = {k: v for k, v in vars(args).items() if k not in ("command", "config", "func")}
    return load_config(host_file, flags, env={})


def test_two_bridges_and_etcd() -> None:
    doc = _compose()
    bridges = _bridges(doc)
    assert len(bridges) == 2 and "etcd" in doc["services"]
    for svc in bridges.values():
        assert svc["depends_on"]["etcd"]["condition"] == "service_healthy"
        assert svc["build"]["dockerfile"] == "deploy/Dockerfile"
    assert "ENTRYPOINT [\"/opt/waku-bridge/.venv/bin/waku-bridge\"]" in (DEPLOY / "Dockerfile").read_text()


def test_bridge_command_lines_are_valid_cli_flags_and_config() -> None:
    doc = _compose()
    cfgs = {n: _config(s) for n, s in _bridges(doc).items()}
    ids = {c.peer_id for c in cfgs.values()}
    assert ids == {"A", "B"}
    backends = {c.failover.backend for c in cfgs.values()}
    assert len(backends) == 1 and next(iter(backends)).startswith("etcd://etcd:")  # one election for both
    etcd_cmd = " ".join(doc["services"]["etcd"]["command"])
    assert "--advertise-client-urls=http://etcd:2379" in etcd_cmd and next(iter(backends)) == "etcd://etcd:2379"
    for name, c in cfgs.items():
        LeaseTiming.for_ttl(c.failover.ttl).check()
        published = {p.split(":")[-1] for p in _bridges(doc)[name]["ports"]}
        assert {str(c.v1.port), str(c.v2.tcp_port), str(c.v2.websocket_port), str(c.metrics.port)} <= published
        assert c.metrics.address == "0.0.0.0"  # Prometheus scrapes across the compose network
    ports = [(c.v1.port, c.v2.tcp_port, c.v2.websocket_port) for c in cfgs.values()]
    assert len(set(ports)) == 2  # the host publishes both: no clash
    for c in cfgs.values():
        assert c.v1.staticnodes == (ENV["WAKU_V1_STATICNODE"],)  # the flag replaces the file's placeholder
        assert c.v2.staticnodes == (ENV["WAKU_V2_STATICNODE"],)
    data = [v for s in _bridges(doc).values() for v in s["volumes"] if v.endswith(":/var/lib/waku-bridge")]
    assert len(set(data)) == 2  # per-instance state volumes


def test_prometheus_scrapes_both_bridges_and_loads_the_rules(tmp_path: Path) -> None:
    doc = _compose()
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "waku-bridge")
    targets = set(job["static_configs"][0]["targets"])
    assert targets == {f"{n}:{_config(s).metrics.port}" for n, s in _bridges(doc).items()}
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: `make setup` installs Debian's prometheus package"
    shutil.copy(DEPLOY / "prometheus" / "alerts.yml", tmp_path / "alerts.yml")
    prom["rule_files"] = ["alerts.yml"]  # the container path, relative here
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(prom))
    r = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr
