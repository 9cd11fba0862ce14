"""The pure part of the etcd elector: endpoints, request bodies, response parsing, predecessor."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from failover.errors import FailoverSetupError
from failover.etcd.wire import (
    EtcdError,
    KeyValue,
    WatchEvent,
    campaign_txn,
    fenced_txn,
    parse_endpoints,
    parse_keepalive,
    parse_kvs,
    parse_watch_line,
    predecessor,
    prefix_end,
)
from failover.lease import LeaseTiming


def b(s: bytes) -> str:
    return base64.b64encode(s).decode()


def test_parse_endpoints() -> None:
    assert parse_endpoints("etcd://127.0.0.1:2379") == (["127.0.0.1:2379"], "bridge")
    assert parse_endpoints("etcd://a:1,b:2, c:3/status-bridge") == (["a:1", "b:2", "c:3"], "status-bridge")
    for bad in ("etcd://", "etcd://host", "etcd://host:port", "etcd://h:70000", "etcd://:1"):
        with pytest.raises(FailoverSetupError, match=r"^url: "):
            parse_endpoints(bad)


def test_etcd_ttl_must_be_whole_seconds() -> None:
    LeaseTiming.for_etcd(3).check_etcd()
    LeaseTiming.for_etcd(10).check_etcd()
    with pytest.raises(FailoverSetupError, match="whole seconds"):
        LeaseTiming(ttl=2.5, renew_interval=0.5, rpc_timeout=0.3, safety=0.3).check_etcd()
    with pytest.raises(FailoverSetupError, match="whole seconds"):
        LeaseTiming(ttl=1, renew_interval=0.2, rpc_timeout=0.1, safety=0.1).check_etcd()
    with pytest.raises(FailoverSetupError, match="must be < TTL"):
        LeaseTiming(ttl=3, renew_interval=1, rpc_timeout=1, safety=0.5).check_etcd()


def test_prefix_end() -> None:
    assert prefix_end(b"/e/") == b"/e0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\x00"


def test_request_bodies() -> None:
    assert campaign_txn(b"/e/1f", b"A", 31) == {
        "compare": [{"key": b(b"/e/1f"), "result": "EQUAL", "target": "CREATE", "create_revision": "0"}],
        "success": [{"request_put": {"key": b(b"/e/1f"), "value": b(b"A"), "lease": "31"}}],
        "failure": [{"request_range": {"key": b(b"/e/1f")}}]}
    body = fenced_txn(b"/e/1f", 42, [{"request_put": {"key": b(b"k"), "value": b(b"v")}}])
    assert body["compare"][0]["create_revision"] == "42" and len(body["success"]) == 1


def test_parse_responses() -> None:
    # Shapes as etcd 3.4.23's gateway sends them: int64 as strings, zero/false fields omitted.
    resp = {"header": {"revision": "2"}, "kvs": [{"key": b(b"/e/x"), "create_revision": "2", "mod_revision": "2",
                                                  "version": "1", "value": b(b"A"), "lease": "6670009386968369926"}],
            "count": "1"}
    assert parse_kvs(resp) == [KeyValue(b"/e/x", b"A", 2, 2, 6670009386968369926)]
    assert parse_kvs({"header": {"revision": "2"}}) == []
    assert parse_keepalive({"result": {"header": {}, "ID": "7", "TTL": "3"}}) == 3
    assert parse_keepalive({"result": {"header": {}, "ID": "12345"}}) == 0  # unknown lease: TTL omitted
    assert parse_watch_line('{"result":{"header":{"revision":"2"},"created":true}}') == ("created", [])
    line = '{"result":{"header":{},"events":[{"type":"DELETE","kv":{"key":"L2UveA==","mod_revision":"3"}}]}}'
    assert parse_watch_line(line) == ("events", [WatchEvent("DELETE", b"/e/x", 3)])
    put = '{"result":{"events":[{"kv":{"key":"L2UveA==","create_revision":"2","mod_revision":"2"}}]}}'
    assert parse_watch_line(put)[1][0].kind == "PUT"  # PUT is the enum's zero value: omitted
    for bad in ('{"error":{"grpc_code":14,"message":"unavailable"}}', '{"result":{"canceled":true}}',
                '{"result":{"compact_revision":"9"}}', "not json", "[]", '{"result":3}'):
        with pytest.raises(EtcdError):
            parse_watch_line(bad)


def test_predecessor_is_the_next_older_key() -> None:
    kvs = [KeyValue(b"k5", b"", 5, 5, 1), KeyValue(b"k9", b"", 9, 9, 2), KeyValue(b"k7", b"", 7, 7, 3)]
    assert predecessor(kvs, 9) == kvs[2]
    assert predecessor(kvs, 7) == kvs[0]
    assert predecessor(kvs, 5) is None


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(
                               ["result", "events", "kv", "key", "type", "created", "canceled", "kvs", "TTL",
                                "mod_revision", "create_revision", "error", "value", "lease", "header"]), c,
                               max_size=4), max_leaves=12)


@given(json_values)
def test_fuzz_parsers_raise_only_etcd_error(v: object) -> None:
    for fn in (parse_watch_line,):
        try:
            fn(json.dumps(v))
        except EtcdError:
            pass
    if isinstance(v, dict):
        for parse in (parse_kvs, parse_keepalive):
            try:
                parse(v)
            except EtcdError:
                pass


@given(st.text(max_size=40))
def test_fuzz_watch_line_text(line: str) -> None:
    try:
        parse_watch_line(line)
    except EtcdError:
        pass
