"""The fuzz registry and harnesses themselves: every target is registered once, its seeds are
accepted inputs (no finding on the committed vectors), and libFuzzer's report is read right."""

from __future__ import annotations

import importlib

import pytest

from tests.fuzz.run import Result, parse_log, table
from tests.fuzz.targets import GROUPS, NAMES, load, one_input


def test_groups_name_exactly_the_targets_of_each_module() -> None:
    assert len(set(NAMES)) == len(NAMES)
    for module, names in GROUPS.items():
        targets = importlib.import_module(module).TARGETS
        assert tuple(targets) == names
        assert all(t.name == n for n, t in targets.items())


@pytest.mark.parametrize("name", NAMES)
async def test_seeds_are_no_finding(name: str) -> None:
    # Async: rpc_framing steps its coroutine by hand inside a trio task, as in the fuzz worker.
    target = load(name)
    seeds = target.seeds()
    assert seeds
    for seed in seeds:
        assert len(seed) <= target.max_len
        one_input(target, seed)


def test_a_combined_target_runs_each_member_on_its_own_input() -> None:
    target = load("message+metadata")
    assert target.name == "message+metadata"
    for seed in target.seeds():
        one_input(target, seed)
    with pytest.raises(ValueError, match="alone"):
        load("rpc_framing+metadata")


def test_a_finding_propagates() -> None:
    target = load("metadata")
    with pytest.raises(ZeroDivisionError):
        one_input(type(target)("boom", lambda _: 1 // 0, target.error, target.seeds), b"")


LOG = """\
INFO: Seed: 1
#7\tINITED cov: 45 ft: 55 corp: 4/210b exec/s: 0 rss: 66Mb
#524288\tpulse  cov: 51 ft: 72 corp: 11/890b lim: 4096 exec/s: 9000 rss: 70Mb
#1000000\tDONE   cov: 52 ft: 74 corp: 12/901b lim: 4096 exec/s: 9100 rss: 71Mb
Done 1000000 runs in 110 second(s)
stat::number_of_executed_units: 1000000
stat::average_exec_per_sec:     9090
stat::new_units_added:          52
stat::slowest_unit_time_sec:    0
stat::peak_rss_mb:              71
"""


def test_parse_log_reads_the_final_status_and_stats() -> None:
    r = Result("p2p")
    parse_log(r, LOG)
    assert (r.executions, r.exec_per_s, r.cov, r.ft, r.corpus, r.peak_rss_mb) == (1_000_000, 9090, 52, 74, 12, 71)
    assert r.ok and "1,000,000" in table([r])


def test_parse_log_of_a_crash_keeps_the_last_status() -> None:
    r = Result("enr", exit_code=1, crashes=["crash-1"])
    parse_log(r, LOG.split("Done")[0])
    assert r.executions == 1_000_000 and not r.ok and r.findings == 1
