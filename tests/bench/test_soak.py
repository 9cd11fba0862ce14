"""The accounting of bench/soak.py: markers, doubles and echoes, the windows with no live peer that
make a loss "expected", and the RSS slope."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import trio

from bench import soak
from bench.soak import Ledger, SoakConfig, down_windows, slope_per_10min

PEERS = {"sg1": "v1", "sg2": "v1", "gw1": "v2", "gw2": "v2"}


def test_a_marker_counts_once_a_second_hash_or_arrival_doubles_and_other_bytes_back_home_echo() -> None:
    led = Ledger()
    for seq in range(3):
        led.sent["v1_to_v2"][seq] = float(seq)
        led.orig["v1_to_v2"][seq] = b"o%d" % seq
    led.arrive("v2", b"xx" + led.payload("v1_to_v2", 0), b"h0", 0.1)
    led.arrive("v2", led.payload("v1_to_v2", 1), b"h1", 1.1)
    led.arrive("v2", led.payload("v1_to_v2", 1), b"h1b", 1.2)  # the same marker as other bytes
    led.arrive("v2", led.payload("v1_to_v2", 2), b"h2", 2.1)
    led.arrive("v2", led.payload("v1_to_v2", 2), b"h2", 2.2)  # the same message delivered again
    led.arrive("v1", led.payload("v1_to_v2", 0), b"o0", 0.5)  # the original re-offered: not an echo
    led.arrive("v1", led.payload("v1_to_v2", 0), b"other", 0.5)
    led.arrive("v1", b"unrelated", b"u", 0.5)
    rep = led.report({"v1": [], "v2": []}, {"v1_to_v2": 10.0, "v2_to_v1": 10.0})
    assert rep["delivered"]["v1_to_v2"] == 3 and rep["exactly_once"]["v1_to_v2"] == 1
    assert rep["doubled"]["v1_to_v2"] == 2
    assert rep["doubled_distinct"]["v1_to_v2"] == 1 and rep["doubled_repeat"]["v1_to_v2"] == 1
    assert rep["echoes"]["v1_to_v2"] == 1 and rep["returned"]["v1_to_v2"] == 1
    assert rep["lost"]["v1_to_v2"] == 0


def test_a_loss_is_expected_only_inside_a_window_with_no_live_peer_of_a_side() -> None:
    events = [{"t": 10.0, "kind": "peer_kill", "peer": "sg1"}, {"t": 12.0, "kind": "peer_up", "peer": "sg1"},
              {"t": 20.0, "kind": "peer_kill", "peer": "gw1"}, {"t": 21.0, "kind": "peer_kill", "peer": "gw2"},
              {"t": 24.0, "kind": "peer_up", "peer": "gw1"}, {"t": 50.0, "kind": "peer_kill", "peer": "sg2"},
              {"t": 51.0, "kind": "peer_kill", "peer": "sg1"}]
    w = down_windows(events, PEERS, 60.0)
    assert w == {"v1": [(51.0, 60.0)], "v2": [(21.0, 24.0)]}  # one peer of a side down is no window
    led = Ledger()
    for seq, t in enumerate((5.0, 12.0, 30.0, 45.0)):
        led.sent["v2_to_v1"][seq] = t
    rep = led.report(w, {"v1_to_v2": 10.0, "v2_to_v1": 10.0})
    # sent at 12 (alive until 22, overlapping 21-24) and 45 (until 55, overlapping 51-60): expected
    assert rep["lost_expected"]["v2_to_v1"] == 2 and rep["lost_unexpected"]["v2_to_v1"] == 2
    assert rep["lost_unexpected_examples"]["v2_to_v1"] == [0, 2]


def test_the_rss_slope_is_least_squares_over_the_last_three_quarters_per_ten_minutes() -> None:
    warmup = [(float(t), 50.0 + t) for t in range(0, 100, 10)]  # a steep start, left out
    flat = [(float(t), 200.0) for t in range(100, 400, 10)]
    assert slope_per_10min(warmup + flat) == 0.0
    rising = [(float(t), 100.0 + t / 60) for t in range(0, 600, 10)]  # 1 MiB a minute
    assert slope_per_10min(rising) == 10.0
    assert slope_per_10min([(0.0, 1.0)]) is None


def test_the_command_line_names_every_parameter_with_the_hour_as_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        soak.cli(["--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0
    assert all(f in out for f in ("--rate", "--minutes", "--churn-min", "--churn-max", "--failover-every", "--seed",
                                  "--workdir", "--progress"))
    cfg, runs = soak.config_from([])
    assert (cfg.rate, cfg.minutes, cfg.churn_min, cfg.churn_max, cfg.failover_every) == (250, 60, 120, 300, 600)
    assert runs == 1
    cfg, _ = soak.config_from(["--rate", "20", "--minutes", "2", "--churn-min", "20", "--churn-max", "40",
                               "--failover-every", "60", "--seed", "7", "--workdir", "/tmp/x"])
    assert cfg == SoakConfig(rate=20, minutes=2, churn_min=20, churn_max=40, failover_every=60, seed=7,
                             workdir=Path("/tmp/x"))


async def test_the_go_harness_reader_drops_per_message_events_and_keeps_replies_and_the_rest() -> None:
    lines = [b'{"data":"aa","event":"envelope","hash":"01"}', b'{"event":"ready","enode":"enode://x"}',
             b'{"content_topic":"/c","event":"message","hash":"02"}', b'{"id":1,"ok":true,"peers":[]}',
             b'{"batch":"03","count":5,"event":"messages","peer":"p"}', b"not json"]
    script = "import sys; sys.stdout.buffer.write(sys.stdin.buffer.read())"
    async with trio.open_nursery() as nursery:
        peer = await soak.QuietGoPeer.spawn(nursery, [sys.executable, "-c", script], Path.cwd(), "echo")
        assert peer._proc.stdin is not None
        await peer._proc.stdin.send_all(b"\n".join(lines) + b"\n")
        await peer._proc.stdin.aclose()
        await peer._proc.wait()
        with trio.fail_after(10):
            while not peer._closed:
                await trio.sleep(0.01)
    assert [e["event"] for e in peer.events] == ["ready"]
    assert peer._replies == {1: {"id": 1, "ok": True, "peers": []}}
