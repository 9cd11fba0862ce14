"""nwaku's REST API on a live node (v2/rest): every route with httpx, nwaku's documented curl
commands with real curl, the admin guard, and schemathesis over v2/rest/openapi.yaml (bad input
is a 4xx with a reason, never a 5xx)."""

from __future__ import annotations

import base64
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.v2node import TOPIC, Collector, make_node, start
from v2.core.message import WakuMessage
from v2.node import V2Node
from v2.rest.api import RestApi, message_from_json
from v2.rest.server import HttpError, Request, RestServer

ROOT = Path(__file__).resolve().parents[3]
CT = "/my-app/2/chatroom-1/proto"
ENC = quote(TOPIC, safe="")


async def wait_for(cond: Any, timeout: float = 20.0) -> None:
    with trio.fail_after(timeout):
        while not cond():
            await trio.sleep(0.05)


@pytest.fixture
async def live(nursery: trio.Nursery, tmp_path: Path) -> tuple[str, V2Node, V2Node, Collector]:
    """Our node with store and filter, REST on a free port, and a relay peer in its mesh."""
    node = make_node(tmp_path, lightpush=True)
    api = RestApi(node, version="v0.0.0-test", admin_token="s3cret")
    peer = make_node()
    await start(nursery, node)
    col = await start(nursery, peer)
    await peer.host.connect(node.listen_addrs[0])
    await wait_for(lambda: node.relay.mesh_peers(TOPIC) and peer.relay.mesh_peers(TOPIC))
    port = await nursery.start(RestServer("127.0.0.1", 0, api.routes()).run)
    return f"http://127.0.0.1:{port}", node, peer, col


async def test_every_route_answers_with_nwakus_shapes(live: tuple[str, V2Node, V2Node, Collector]) -> None:
    base, node, peer, col = live
    async with httpx.AsyncClient(base_url=base, timeout=20) as http:
        health = (await http.get("/health")).json()
        assert health["nodeHealth"] == "Ready" and {"Relay": "Ready"} in health["protocolsHealth"]
        info = (await http.get("/debug/v1/info")).json()
        assert info["listenAddresses"] == node.listen_addrs and info["enrUri"] == node.enr
        assert (await http.get("/debug/v1/version")).text == "v0.0.0-test"

        peers = (await http.get("/admin/v1/peers")).json()
        assert len(peers) == 1 and peers[0]["multiaddr"].endswith(f"/p2p/{peer.peer_id}")
        assert peers[0]["multiaddr"].count("/p2p/") == 1 and peers[0]["shards"] == [0]
        assert peers[0]["connected"] == "Connected" and "/vac/waku/relay/2.0.0" in peers[0]["protocols"]
        assert (await http.get("/admin/v1/peers/connected")).json() == peers
        assert (await http.get("/admin/v1/peers/service")).json() == peers
        relay = (await http.get("/admin/v1/peers/relay")).json()
        assert relay == [{"shard": 0, "peers": peers}]
        assert (await http.get("/admin/v1/peers/mesh")).json() == relay
        stats = (await http.get("/admin/v1/peers/stats")).json()
        assert stats["Sum"] == {"Total peers": 1} and stats["Mesh peers"]["0"] == 1

        # relay: publish reaches the peer; what the peer publishes lands in our cache, drained by GET
        assert (await http.get("/relay/v1/subscriptions")).json() == [TOPIC]
        payload = base64.b64encode(b"hello from REST").decode()
        r = await http.post(f"/relay/v1/messages/{ENC}", json={"payload": payload, "contentTopic": CT})
        assert (r.status_code, r.text) == (200, "OK")
        await wait_for(lambda: any(m.message.payload == b"hello from REST" for m in col.got))
        assert (await http.get(f"/relay/v1/messages/{ENC}")).json() == []  # only messages since subscribing
        post = await http.post("/relay/v1/subscriptions", json=[TOPIC])
        assert post.text == "OK"
        sent = WakuMessage(b"from the peer", CT, version=0, timestamp=time.time_ns(), meta=b"m")
        await peer.publish(TOPIC, sent)
        got: list[Any] = []

        async def drained() -> None:
            while not got:
                got.extend((await http.get(f"/relay/v1/messages/{ENC}")).json())
                await trio.sleep(0.05)

        with trio.fail_after(20):
            await drained()
        assert got == [{"payload": base64.b64encode(b"from the peer").decode(), "contentTopic": CT,
                        "version": 0, "timestamp": sent.timestamp, "meta": base64.b64encode(b"m").decode()}]

        # auto-sharding: cluster 0 with one shard maps every content topic to /waku/2/rs/0/0
        assert (await http.post("/relay/v1/auto/subscriptions", json=[CT])).text == "OK"
        r = await http.post("/relay/v1/auto/messages", json={"payload": payload, "contentTopic": CT})
        assert r.status_code == 200
        auto = (await http.get(f"/relay/v1/auto/messages/{quote(CT, safe='')}")).json()
        assert [m["payload"] for m in auto] == [payload]  # our own publish, cached as nwaku's is

        # store v3 over the archive: what was published and relayed
        await wait_for(lambda: node.archive is not None and node.archive.message_count >= 3)
        q = {"pubsubTopic": TOPIC, "contentTopics": CT, "includeData": "true", "pageSize": "2", "ascending": "true"}
        page = (await http.get("/store/v3/messages", params=q)).json()
        assert page["statusCode"] == 200 and len(page["messages"]) == 2 and page["paginationCursor"].startswith("0x")
        assert page["messages"][0]["message"]["payload"] == payload and page["messages"][0]["pubsubTopic"] == TOPIC
        rest = (await http.get("/store/v3/messages", params={**q, "cursor": page["paginationCursor"]})).json()
        assert len(rest["messages"]) == 1 and "paginationCursor" not in rest
        h = page["messages"][1]["messageHash"]
        by_hash = (await http.get("/store/v3/messages", params={"hashes": h, "includeData": "true"})).json()
        assert [m["messageHash"] for m in by_hash["messages"]] == [h]
        remote = f"{peer.listen_addrs[0]}"
        assert "/p2p/" in remote  # the peer mounts no store: a dial/query failure is the caller's 400
        assert (await http.get("/store/v3/messages", params={"peerAddr": remote})).status_code == 400

        # filter (served from our own relay) and lightpush
        sub = {"requestId": "r1", "pubsubTopic": TOPIC, "contentFilters": [CT]}
        assert (await http.post("/filter/v2/subscriptions", json=sub)).json() == {
            "requestId": "r1", "statusCode": 200, "statusDesc": ""}
        assert (await http.get("/filter/v2/subscriptions/r1")).json()["statusCode"] == 200
        lp = await http.post("/lightpush/v3/message", json={"pubsubTopic": TOPIC, "message": {
            "payload": base64.b64encode(b"pushed").decode(), "contentTopic": CT}})
        assert lp.status_code == 200 and lp.json() == {"statusCode": 200, "relayPeerCount": 1}
        await wait_for(lambda: any(m.message.payload == b"pushed" for m in col.got))
        fm = (await http.get(f"/filter/v2/messages/{quote(CT, safe='')}")).json()
        assert base64.b64encode(b"pushed").decode() in [m["payload"] for m in fm]
        assert (await http.request("DELETE", "/filter/v2/subscriptions/all", json={"requestId": "r2"})).json()[
            "statusCode"] == 200
        assert (await http.get("/filter/v2/subscriptions/r3")).status_code == 404

        # bad input: 4xx with a reason
        for method, path, body in [
            ("POST", f"/relay/v1/messages/{ENC}", b"{not json"),
            ("POST", f"/relay/v1/messages/{ENC}", b'{"payload": "!!", "contentTopic": "/a/1/b/proto"}'),
            ("POST", "/relay/v1/messages/%2Fwaku%2F2%2Frs%2F0%2F99999", b'{"payload": "aGk=", "contentTopic": "x"}'),
            ("POST", "/relay/v1/subscriptions", b'{"a": 1}'),
            ("GET", "/relay/v1/messages/%2Fnot%2Fsubscribed", b""),
            ("POST", "/lightpush/v3/message", b'{"message": {"payload": "", "contentTopic": "/a/1/b/proto"}}'),
            ("GET", "/store/v3/messages?pageSize=x", b""),
            ("GET", "/store/v3/messages?cursor=zz", b""),
            ("POST", "/admin/v1/peers", b'["/ip4/127.0.0.1/tcp/1"]'),
            ("PATCH", "/health", b""),
            ("GET", "/nope", b""),
        ]:
            r = await http.request(method, path, content=body, headers={"content-type": "application/json"})
            assert 400 <= r.status_code < 500 and r.text, (method, path, r.status_code, r.text)


def test_admin_routes_need_the_token_off_loopback() -> None:
    api = RestApi.__new__(RestApi)
    api.admin_token = "s3cret"

    def req(remote: str, **headers: str) -> Request:
        return Request("GET", "/admin/v1/peers", {}, {}, b"", remote, headers)

    assert api._admin_allowed(req("127.0.0.1")) and api._admin_allowed(req("::1"))
    assert not api._admin_allowed(req("10.1.2.3"))
    assert not api._admin_allowed(req("10.1.2.3", **{"x-admin-token": "wrong"}))
    assert api._admin_allowed(req("10.1.2.3", **{"x-admin-token": "s3cret"}))
    assert api._admin_allowed(req("10.1.2.3", authorization="Bearer s3cret"))
    api.admin_token = None
    assert not api._admin_allowed(req("10.1.2.3", **{"x-admin-token": ""}))


async def test_nwaku_documented_curl_commands(live: tuple[str, V2Node, V2Node, Collector]) -> None:
    """The commands of nwaku's REST documentation (docs/api/rest-api.md, docs/operators), with
    only host:port and the pubsub topic (our shard) substituted."""
    base, _, _, col = live
    curl = shutil.which("curl")
    assert curl is not None, "curl is needed (apt: curl)"
    payload = base64.b64encode(b"Hello Waku Network - from Anonymous User").decode()

    async def run(*args: str) -> str:
        res = await trio.run_process([curl, "-s", "-f", *args], capture_stdout=True, check=False)
        assert res.returncode == 0, (args, res.returncode, res.stdout)
        return res.stdout.decode()

    assert "listenAddresses" in await run(f"{base}/debug/v1/info", "-H", "accept: application/json")
    assert "nodeHealth" in await run("-X", "GET", f"{base}/health")
    assert await run("-X", "POST", f"{base}/relay/v1/messages/{ENC}", "-H", "content-type: application/json",
                     "-d", f'{{"payload":"{payload}","contentTopic":"{CT}","timestamp":{time.time_ns()}}}') == "OK"
    await wait_for(lambda: any(m.message.content_topic == CT for m in col.got))
    assert await run("-X", "POST", f"{base}/relay/v1/auto/messages", "-H", "content-type: application/json",
                     "-d", f'{{"payload":"{payload}","contentTopic":"{CT}"}}') == "OK"
    out = await run("-X", "GET", f"{base}/store/v3/messages?contentTopics={quote(CT, safe='')}&pageSize=50"
                    "&ascending=true&includeData=true", "-H", "accept: application/json")
    assert payload in out
    assert "multiaddr" in await run("-X", "GET", f"{base}/admin/v1/peers", "-H", "accept: application/json")
    assert "statusCode" in await run("-X", "POST", f"{base}/lightpush/v3/message", "-H",
                                     "content-type: application/json", "-d",
                                     f'{{"pubsubTopic":"{TOPIC}","message":{{"payload":"{payload}",'
                                     f'"contentTopic":"{CT}"}}}}')


@pytest.mark.slow
async def test_schemathesis_over_every_route(live: tuple[str, V2Node, V2Node, Collector], tmp_path: Path) -> None:
    base, _, _, _ = live
    st = Path(sys.executable).with_name("st")
    assert st.exists(), "schemathesis is a dev dependency (pip install -e .[dev])"
    res = await trio.run_process(
        [str(st), "run", str(ROOT / "v2/rest/openapi.yaml"), "--url", base, "--checks", "not_a_server_error",
         "--max-examples", "25", "--seed", "1", "--request-timeout", "30", "--no-color"],
        capture_stdout=True, capture_stderr=True, check=False, cwd=tmp_path,
        env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false"})
    out = res.stdout.decode() + res.stderr.decode()
    assert res.returncode == 0, out[-6000:]
    assert "Tested: 27" in out, out[-3000:]  # every operation of the document was exercised


async def test_the_bridge_serves_the_rest_api(nursery: trio.Nursery, tmp_path: Path) -> None:
    from bridge.app.bridgeservice import BridgeService
    from bridge.app.config import load_config
    from tests.helpers.net import free_ports

    tcp, ws = free_ports(2)
    cfg = load_config(None, {"peer_id": "A", "data_dir": str(tmp_path), "listen_address": "127.0.0.1",
                             "v1__port": "0", "v2__tcp_port": str(tcp), "v2__websocket_port": str(ws),
                             "metrics__enabled": "false", "v2__cluster_id": "0", "v2__rest": "true",
                             "v2__rest_port": "0"}, env={})
    bridge = BridgeService(cfg)
    await nursery.start(bridge.run)
    assert bridge.rest_port
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{bridge.rest_port}", timeout=20) as http:
        info = (await http.get("/debug/v1/info")).json()
        assert info["listenAddresses"] == bridge.v2.listen_addrs
        assert (await http.get("/health")).json()["nodeHealth"] == "Ready"
        assert set(bridge.v2.config.pubsub_topics) <= set((await http.get("/relay/v1/subscriptions")).json())


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                  max_size=6), max_leaves=12)
_FIELDS = st.fixed_dictionaries({}, optional={
    "payload": st.one_of(st.text(max_size=16), _JSON), "contentTopic": st.one_of(st.just(CT), _JSON),
    "version": _JSON, "timestamp": st.one_of(st.integers(), _JSON), "meta": st.one_of(st.text(max_size=100), _JSON),
    "ephemeral": _JSON})


@settings(max_examples=300, deadline=None)
@given(st.one_of(_JSON, _FIELDS))
def test_fuzz_message_from_json_refuses_with_a_reason(obj: Any) -> None:
    """Whatever JSON arrives, a message or an HttpError 400 with a reason, nothing else."""
    try:
        m = message_from_json(obj, 1)
    except HttpError as exc:
        assert exc.status == 400 and exc.reason
    else:
        assert m.payload and m.content_topic == obj["contentTopic"]


async def test_server_refuses_malformed_http_with_a_4xx(nursery: trio.Nursery) -> None:
    from v2.rest.server import MAX_BODY, Route, text_response

    async def echo(req: Request) -> Any:
        return text_response(req.params["x"] + ":" + req.body.decode())

    port = await nursery.start(RestServer("127.0.0.1", 0, [Route("POST", "/e/{x}", echo)]).run)

    async def raw(data: bytes) -> bytes:
        s = await trio.open_tcp_stream("127.0.0.1", port)
        await s.send_all(data)
        out = b""
        with trio.fail_after(20):
            while chunk := await s.receive_some(65536):
                out += chunk
        await s.aclose()
        return out

    ok = await raw(b"POST /e/a%2Fb HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi")
    assert ok.startswith(b"HTTP/1.1 200") and ok.endswith(b"a/b:hi")
    assert (await raw(b"garbage\r\n\r\n")).startswith(b"HTTP/1.1 400")
    assert (await raw(b"POST /e/a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")).startswith(b"HTTP/1.1 411")
    big = f"POST /e/a HTTP/1.1\r\nContent-Length: {MAX_BODY + 1}\r\n\r\n".encode()
    assert (await raw(big)).startswith(b"HTTP/1.1 413")
    assert (await raw(b"POST /e/a HTTP/1.1\r\nContent-Length: -1\r\n\r\n")).startswith(b"HTTP/1.1 400")
    assert (await raw(b"GET /e/a HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 405")
    assert (await raw(b"GET /x HTTP/1.1\r\n" + b"A: b\r\n" * 5000 + b"\r\n")).startswith(b"HTTP/1.1 431")
