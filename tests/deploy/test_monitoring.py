"""Alert rules (promtool check + unit tests) and the Grafana dashboard, against a live bridge.

Every metric name the dashboard or the alert rules query must exist in the ``/metrics`` of a real
``waku-bridge --peer-id A`` process (as a sample, or as a declared family whose labelled children
have not been created yet, e.g. drop reasons that did not happen).
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.helpers.bridgeproc import ROOT, BridgeProc

PROM = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "waku-bridge.json"
# Not ours: exported by Prometheus itself for every scrape target.
SCRAPE_SERIES = {"up"}
_SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created")


def _promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool missing: `make setup` installs Debian's prometheus package"
    return path


def test_promtool_check_rules() -> None:
    r = subprocess.run([_promtool(), "check", "rules", str(PROM / "alerts.yml")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_promtool_unit_tests_no_active_and_two_active() -> None:
    r = subprocess.run([_promtool(), "test", "rules", "alerts.test.yml"], capture_output=True, text=True, cwd=PROM)
    assert r.returncode == 0, r.stdout + r.stderr
    tested = {t["alertname"] for g in yaml.safe_load((PROM / "alerts.test.yml").read_text())["tests"]
              for t in g["alert_rule_test"]}
    assert {"WakuBridgeNoActive", "WakuBridgeTwoActive", "WakuBridgeStandbyMissing", "WakuBridgeAuditMissing",
            "WakuBridgeDiskErrors"} <= tested


def test_every_alert_has_a_runbook_section() -> None:
    doc = (ROOT / "docs" / "operations.md").read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).strip().replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", doc, re.M)}
    anchors |= set(re.findall(r'<a id="([^"]+)"', doc))
    for g in yaml.safe_load((PROM / "alerts.yml").read_text())["groups"]:
        for rule in g["rules"]:
            runbook = rule["annotations"]["runbook"]
            assert runbook.startswith("docs/operations.md#"), rule["alert"]
            assert runbook.split("#", 1)[1] in anchors, (rule["alert"], runbook)


def _exprs() -> list[str]:
    out = [r["expr"] for g in yaml.safe_load((PROM / "alerts.yml").read_text())["groups"] for r in g["rules"]]
    dash = json.loads(DASHBOARD.read_text())
    for p in dash["panels"]:
        out += [t["expr"] for t in p.get("targets") or []]
    out += [a["expr"] for a in dash["annotations"]["list"] if "expr" in a]
    return out


def _metric_names(expr: str) -> set[str]:
    expr = re.sub(r'"[^"]*"', '""', expr)  # label values
    expr = re.sub(r"\{[^}]*\}", "", expr)  # matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    words = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b(?!\s*\()", expr))  # not function calls
    keywords = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
                "offset", "le", "inf", "nan"}
    return {w for w in words if w.lower() not in keywords}


def test_dashboard_is_valid_grafana_json() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "waku-bridge" and dash["panels"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for needed in ("direction", "skew", "v2", "topic", "peers", "drops", "role", "token", "takeover", "pending"):
        assert needed in titles, needed


@pytest.mark.slow
def test_every_queried_metric_exists_on_a_live_bridge(tmp_path: Path) -> None:
    b = BridgeProc("A", tmp_path, [], [], failover=f"sqlite:{tmp_path / 'failover.sqlite3'}")
    b.start()
    try:
        b.wait_status(lambda s: s["role"] == "active")
        text = b.metrics()
    finally:
        b.kill(signal.SIGTERM)
    samples = {m.group(1) for m in re.finditer(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", text, re.M)}
    families = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    names = set().union(*(_metric_names(e) for e in _exprs())) - SCRAPE_SERIES
    assert len(names) > 10, names
    missing = []
    for n in sorted(names):
        base = next((n[: -len(s)] for s in _SUFFIXES if n.endswith(s)), n)
        if n not in samples and n not in families and base not in families:
            missing.append(n)
    assert not missing, f"queried but not exported by the bridge: {missing}"
