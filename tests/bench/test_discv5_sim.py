"""bench/discv5_sim.py on a few hundred nodes: invariants of the model, determinism, and that the
speed switches change no outcome (docs/performance.md "discv5 at scale")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import discv5_sim
from bench.discv5_sim import SimConfig, Simulation, run_scenario
from v2.discv5 import core, packet
from v2.enr.enr import Enr

_TIMING = ("wall_s", "cpu_s", "max_rss_mib")


def _outcome(r: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in r.items() if k not in _TIMING}


@pytest.mark.slow
def test_nodes_reach_their_peers_and_nat_nodes_are_never_live() -> None:
    sim = Simulation(SimConfig(nodes=200, hours=1 / 6, ramp=60.0, churn_per_hour=0.5, unreachable=0.3, seed=7))
    r = sim.run()
    assert r["left"] > 0 and r["nodes_alive"] == 200  # churn replaced nodes one for one
    assert r["share_final"] >= 0.9
    assert r["bootstrap_by"]["initial"]["reached"] >= 0.9
    assert r["bootstrap_by"]["unreachable"]["n"] > 0  # NAT'd nodes dial out to their peers
    assert r["lookup_hops"]["n"] > 0 and r["lookup_hops"]["p50"] >= 1
    # NAT: nobody can reach a NAT'd node's advertised endpoint, so no table ever holds one as live ...
    assert sim.live_unreachable_entries() == 0
    # ... and no NODES answer relays one (only live entries are relayed).
    for n in sim.nodes:
        for peer in n.good:
            m = sim.nodes[peer]
            assert m.alive and m.reachable and n.alive
    unreachable = [n for n in sim.nodes if not n.reachable]
    assert unreachable and all(not n.inbound for n in unreachable)


def test_a_seed_fixes_the_outcome() -> None:
    cfg = SimConfig(nodes=40, hours=0.05, ramp=20.0, churn_per_hour=1.0, unreachable=0.3, seed=3)
    a, b = Simulation(cfg).run(), Simulation(cfg).run()
    assert _outcome(a) == _outcome(b)
    c = Simulation(SimConfig(**{**_fields(cfg), "seed": 4})).run()
    assert _outcome(c) != _outcome(a)


def _fields(cfg: SimConfig) -> dict[str, Any]:
    return {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}


def test_null_crypto_changes_no_outcome() -> None:
    # The nulled AES-GCM / ECDH / id-signatures keep every decision of the state machine: the same
    # packets, handshakes, drops and lookups as with the real primitives.
    cfg = SimConfig(nodes=15, hours=0.02, ramp=10.0, unreachable=0.3, seed=5)
    fast = Simulation(cfg).run()
    real = Simulation(SimConfig(**{**_fields(cfg), "real_crypto": True})).run()
    assert {**_outcome(fast), "config": None} == {**_outcome(real), "config": None}
    assert fast["packets"] > 500


def test_the_patches_are_undone() -> None:
    patched = [(Enr, "from_rlp"), (Enr, "node_id"), (packet, "AES"), (packet, "aes_gcm_encrypt"),
               (core, "derive_keys"), (core, "id_verify"), (core, "PrivateKey"), (core, "udp_endpoint")]
    before = [getattr(obj, name) for obj, name in patched]
    Simulation(SimConfig(nodes=5, hours=0.005, ramp=5.0)).run()
    assert [getattr(obj, name) for obj, name in patched] == before


def test_cli_writes_json_and_a_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        discv5_sim.cli(["--help"])
    assert exc.value.code == 0 and "--churn-per-hour" in capsys.readouterr().out
    discv5_sim.cli(["--nodes", "12", "--hours", "0.01", "--ramp", "5", "--scenario", "baseline",
                    "--scenario", "both", "--out-dir", str(tmp_path)])
    both = json.loads((tmp_path / "discv5_sim_both.json").read_text())
    assert both["config"]["unreachable"] == 0.3 and both["config"]["churn_per_hour"] == 0.1
    png = tmp_path / "discv5_sim.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    png.unlink()
    discv5_sim.cli(["--plot-only", "--out-dir", str(tmp_path)])
    assert png.exists() and png.stat().st_size < 200_000


def test_scenarios_set_churn_and_nat() -> None:
    base = SimConfig(nodes=10, hours=0.005, ramp=5.0, churn_per_hour=0.2, unreachable=0.4)
    r = run_scenario("unreachable", base)
    assert r["config"]["churn_per_hour"] == 0.0 and r["config"]["unreachable"] == 0.4
