"""deploy/ansible/: the role passes ansible-lint (production profile), and the sample playbook runs
against this machine in check mode (``--connection local --check --diff``), showing the changes
it would make without making any.

The playbook run points every path of the role into a temporary directory and names a service user
that does not exist, so the expected changes are the same on any machine (a fresh host); the test
then checks that neither that directory, nor the user, nor the role's default paths were touched.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE = ROOT / "deploy" / "ansible"
BIN = Path(sys.executable).parent
DEFAULT_PATHS = [Path(p) for p in ("/etc/waku-bridge", "/var/lib/waku-bridge", "/opt/waku-bridge", "/etc/consul",
                                   "/etc/systemd/system/waku-bridge@.service")]


def _env(tmp: Path) -> dict[str, str]:
    # ansible's own state (temp files, caches) goes to the test's directory, not to ~/.ansible
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "ANSIBLE_HOME": str(tmp / "home"),
            "ANSIBLE_LOCAL_TEMP": str(tmp / "home" / "tmp"), "ANSIBLE_REMOTE_TEMP": str(tmp / "home" / "rtmp"),
            "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", "NO_COLOR": "1", "XDG_CACHE_HOME": str(tmp / "cache")}


def _sections(out: str) -> dict[str, str]:
    """Task name -> its output (the default callback's text)."""
    parts = re.split(r"\n(?=TASK \[|RUNNING HANDLER \[|PLAY RECAP)", out)
    named = {}
    for p in parts:
        m = re.match(r"(?:TASK|RUNNING HANDLER) \[(?:waku-bridge : )?(.+?)\] \*", p)
        if m:
            named[m.group(1)] = p
        elif p.startswith("PLAY RECAP"):
            named["PLAY RECAP"] = p
    return named


def _added(section: str) -> list[str]:
    """The texts a diff adds as new files (one per loop item)."""
    return ["".join(line[1:] + "\n" for line in block.splitlines())
            for block in re.findall(r"\+\+\+ after[^\n]*\n@@[^\n]*\n((?:\+[^\n]*\n)+)", section)]


def test_ansible_lint(tmp_path: Path) -> None:
    done = subprocess.run([str(BIN / "ansible-lint"), "--offline", "--nocolor"], cwd=ANSIBLE, capture_output=True,
                          text=True, env=_env(tmp_path), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Profile 'production' was required, and it passed" in done.stdout + done.stderr


def test_playbook_check_mode_on_localhost(tmp_path: Path) -> None:
    assert Path("/usr/bin/python3").exists()  # the interpreter the sample inventory names
    root = tmp_path / "host"
    root.mkdir()
    user = f"wbtest{secrets.token_hex(4)}"
    extra = {
        "waku_bridge_user": user, "waku_bridge_group": user,
        "waku_bridge_install_dir": f"{root}/opt/waku-bridge",
        "waku_bridge_config_dir": f"{root}/etc/waku-bridge",
        "waku_bridge_data_dir": f"{root}/var/lib/waku-bridge",
        "waku_bridge_unit_dir": f"{root}/etc/systemd/system",
        "waku_bridge_consul_dir": f"{root}/etc/consul",
    }
    (tmp_path / "extra.json").write_text(json.dumps(extra))
    before = [p.exists() for p in DEFAULT_PATHS]

    done = subprocess.run(
        [str(BIN / "ansible-playbook"), "playbook.yml", "-i", "inventory/localhost.ini", "--connection", "local",
         "--check", "--diff", "-e", f"@{tmp_path / 'extra.json'}"],
        cwd=ANSIBLE, capture_output=True, text=True, env=_env(tmp_path), timeout=600)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    tasks = _sections(out)
    recap = tasks["PLAY RECAP"]
    assert re.search(r"localhost\s+: ok=\d+\s+changed=\d+\s+unreachable=0\s+failed=0", recap), recap

    # nothing changed: not the temporary tree, not the user, not the default paths
    assert list(root.iterdir()) == []
    try:
        pwd.getpwnam(user)
        raise AssertionError(f"check mode created the user {user}")
    except KeyError:
        pass
    assert [p.exists() for p in DEFAULT_PATHS] == before

    def changed(task: str, items: list[str] | None = None) -> str:
        body = tasks[task]
        if items is None:
            assert "changed: [localhost]" in body, body
        for item in items or []:
            assert f"changed: [localhost] => (item={item})" in body, body
        return body

    changed("Create the service group")
    changed("Create the service user")
    changed("Install waku-bridge")
    assert f'"path": "{root}/var/lib/waku-bridge"' in changed("Create the data dir")
    changed("Create each instance's state dir", ["A", "B"])
    changed("Generate missing node keys", ["A v1", "A v2", "B v1", "B v2"])
    assert "skipping" in tasks["Node keys belong to the service user, mode 0600"]  # nothing generated yet
    conf = changed("Write the bridge configuration")
    assert f'+data_dir: "{root}/var/lib/waku-bridge"' in conf and "+  staticnodes: [\"enode://" in conf
    env = changed("Write each instance's environment", ["A", "B"])
    for line in ("METRICS_PORT=8008", "WAKU_BRIDGE_V1_PORT=30303", "WAKU_BRIDGE_V2_TCP_PORT=60000",
                 "METRICS_PORT=8009", "WAKU_BRIDGE_V1_PORT=30304", "WAKU_BRIDGE_V2_TCP_PORT=60001"):
        assert f"\n+{line}\n" in env
    # What would be written is a valid configuration, and the env files' names are real settings:
    # instance B's effective config (as the unit starts it) has B's ports.
    (conf_text,) = _added(conf)
    (tmp_path / "bridge.yaml").write_text(conf_text)
    b_env = dict(line.split("=", 1) for line in _added(env)[1].splitlines() if line and not line.startswith("#"))
    shown = subprocess.run([sys.executable, "-m", "bridge.app.cli", "check-config", str(tmp_path / "bridge.yaml"),
                            "--show"], capture_output=True, text=True, cwd=ROOT, timeout=60,
                           env={**os.environ, "PYTHONPATH": str(ROOT), **b_env})
    assert shown.returncode == 0, shown.stdout + shown.stderr
    cfg = json.loads(shown.stdout.split("\n", 1)[1])
    assert (cfg["v1"]["port"], cfg["v2"]["tcp_port"], cfg["v2"]["websocket_port"]) == (30304, 60001, 8001)
    assert cfg["data_dir"] == f"{root}/var/lib/waku-bridge" and cfg["v2"]["cluster_id"] == 16
    unit = changed("Install the systemd unit (deploy/systemd/waku-bridge@.service)")
    assert (ROOT / "deploy/systemd/waku-bridge@.service").read_text().splitlines()[0] in unit
    assert "+StateDirectoryMode=0700" in unit
    assert "+ExecStart=/opt/waku-bridge/.venv/bin/waku-bridge --peer-id %i" in unit

    # Consul: per instance a p2p service with TCP checks on both p2p ports, and an HTTP /health check
    docs = [json.loads(d) for d in _added(changed("Write each instance's Consul service definition", ["A", "B"]))]
    assert len(docs) == 2
    for doc, (peer, metrics, v1, v2) in zip(docs, (("A", 8008, 30303, 60000), ("B", 8009, 30304, 60001)),
                                            strict=True):
        p2p, mon = doc["services"]
        assert (p2p["id"], p2p["name"], p2p["port"]) == (f"waku-bridge-{peer}", "waku-bridge", v2)
        assert "env:status" in p2p["tags"] and "stage:test" in p2p["tags"]
        assert sorted(c["tcp"] for c in p2p["checks"]) == sorted([f"localhost:{v1}", f"localhost:{v2}"])
        assert (mon["name"], mon["port"]) == ("waku-bridge-metrics", metrics)
        assert [(c["http"], c["method"]) for c in mon["checks"]] == [(f"http://localhost:{metrics}/health", "GET")]
        assert all(c["interval"] == "30s" and c["timeout"] == "2s" for s in (p2p, mon) for c in s["checks"])
