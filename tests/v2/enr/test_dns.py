"""EIP-1459 trees: the published zone (pure checks), and real walks over a UDP DNS server on 127.0.0.1."""

from __future__ import annotations

import secrets

import pytest
import trio
from coincurve import PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.dns_server import serve, zone_of
from tests.helpers.net import LOOPBACK
from tests.helpers.vectors import load_vectors
from v2.enr.dns import (
    Branch,
    DnsDiscoveryError,
    EnrTreeUrl,
    Link,
    make_tree,
    make_txt_lookup,
    parse_entry,
    parse_root,
    subdomain,
    walk_tree,
)
from v2.enr.enr import Enr

VECTOR = load_vectors("eip1459_dns.json")["vectors"][0]
DOMAIN = VECTOR["url"].split("@", 1)[1]
SIGNER = PublicKey(bytes.fromhex(VECTOR["public_key_uncompressed"])).format(compressed=True)
# The zone verifies with the listed hex key, not the key in the example URL (EIP-1459; tests/vectors/README.md).
GOOD_URL = str(EnrTreeUrl(SIGNER, DOMAIN))


VECTOR_ZONE = zone_of(VECTOR["records"], DOMAIN)


# ---------------------------------------------------------------------- pure


def test_vector_subdomains_and_entry_types() -> None:
    kinds = {}
    for r in VECTOR["records"]:
        if r["name"] == "@":
            continue
        assert subdomain(r["txt"]) == r["name"]
        kinds[r["name"]] = parse_entry(r["txt"])
    assert sum(isinstance(e, Enr) for e in kinds.values()) == 3
    assert [type(e) for e in kinds.values()].count(Branch) == 1
    link = next(e for e in kinds.values() if isinstance(e, Link))
    assert link.url.domain == "morenodes.example.org"
    for leaf in VECTOR["decoded_leaves"]:
        e = kinds[leaf["name"]]
        assert isinstance(e, Enr) and e.seq == leaf["seq"] and e.node_id.hex() == leaf["node_id"]


def test_vector_root_signature_and_url_inconsistency() -> None:
    root = parse_root(VECTOR["records"][0]["txt"])
    assert root.seq == 1
    branch = next(r for r in VECTOR["records"] if r["txt"].startswith("enrtree-branch:"))
    link = next(r for r in VECTOR["records"] if r["txt"].startswith("enrtree://"))
    assert (root.enr_root, root.link_root) == (branch["name"], link["name"])
    assert root.verify(SIGNER)
    assert PublicKey.from_signature_and_message(root.signature, _keccak(root.signed_text), hasher=None).format() == \
        bytes.fromhex(VECTOR["root_signer_recovered"])
    assert not root.verify(EnrTreeUrl.parse(VECTOR["url"]).public_key)  # the spec's URL key did not sign it
    assert str(EnrTreeUrl.parse(GOOD_URL)) == GOOD_URL


def _keccak(text: str) -> bytes:
    from v2.enr.enr import keccak256

    return keccak256(text.encode())


def test_bad_records() -> None:
    for txt in ("enrtree-root:v1 e=AAA l=BBB seq=x sig=abc", "enrtree-root:v2 e=A l=B seq=1 sig=a", ""):
        with pytest.raises(DnsDiscoveryError):
            parse_root(txt)
    for txt in ("enrtree-branch:abc,!!", "enr:garbage", "enrtree://short@x", "hello", "enrtree-branch:A"):
        with pytest.raises(DnsDiscoveryError):
            parse_entry(txt)
    for url in ("enrtree://@nodes.example.org", "https://example.org", "enrtree://AAAA@example.org"):
        with pytest.raises(DnsDiscoveryError):
            EnrTreeUrl.parse(url)
    assert parse_entry("enrtree-branch:") == Branch(())


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_parsers(text: str) -> None:
    for fn in (parse_root, parse_entry, EnrTreeUrl.parse):
        try:
            fn(text)
        except DnsDiscoveryError:
            pass


# ---------------------------------------------------------------------- walks (in-memory zone)


def memory_lookup(zone: dict[str, list[str]], seen: list[str] | None = None):  # type: ignore[no-untyped-def]
    async def lookup(name: str) -> list[str]:
        if seen is not None:
            seen.append(name)
        return list(zone.get(name.lower(), []))

    return lookup


async def test_tampered_leaf_is_skipped_not_trusted() -> None:
    zone = {k: list(v) for k, v in VECTOR_ZONE.items()}
    leaf = VECTOR["decoded_leaves"][0]["name"].lower() + "." + DOMAIN
    other = VECTOR["records"][4]["txt"]  # a valid ENR, but not the one this name's hash commits to
    zone[leaf] = [other]
    result = await walk_tree(GOOD_URL, memory_lookup(zone), follow_links=False)
    assert len(result.enrs) == 2 and result.stats.errors == {"hash_mismatch": 1}


async def test_generated_tree_bounds_and_links() -> None:
    keys = [secrets.token_bytes(32) for _ in range(40)]
    enrs = [Enr.build(k, 1, ip="10.0.0.1", tcp=60000 + i) for i, k in enumerate(keys)]
    sub_url, sub_zone = make_tree(secrets.token_bytes(32), "sub.example.org", enrs[30:])
    url, zone = make_tree(secrets.token_bytes(32), "main.example.org", enrs[:30], links=[sub_url], seq=5)
    assert all(len(t) < 400 for t in [*zone.values(), *sub_zone.values()])  # each fits one UDP answer
    full = {**zone_of(zone, "main.example.org"), **zone_of(sub_zone, "sub.example.org")}
    result = await walk_tree(url, memory_lookup(full))
    assert {e.node_id for e in result.enrs} == {e.node_id for e in enrs}
    assert result.trees == ("main.example.org", "sub.example.org")
    assert not result.stats.errors
    seen: list[str] = []
    bounded = await walk_tree(url, memory_lookup(full, seen), max_records=10)
    assert len(bounded.enrs) < 10 and len(seen) <= 10 + 2  # entries plus at most two roots
    assert bounded.stats.errors.get("max_records")
    shallow = await walk_tree(url, memory_lookup(full), max_depth=0, follow_links=False)
    assert not shallow.enrs and shallow.stats.errors["max_depth"] == 1
    # a linked tree whose root does not verify is skipped, the first tree still counts
    bad_sub = {**full, "sub.example.org": [zone["@"]]}
    partial = await walk_tree(url, memory_lookup(bad_sub))
    assert len(partial.enrs) == 30 and partial.stats.errors["linked_root"] == 1


async def test_duplicate_nodes_keep_highest_seq() -> None:
    key = secrets.token_bytes(32)
    old, new = Enr.build(key, 1, ip="10.0.0.1", tcp=1), Enr.build(key, 9, ip="10.0.0.2", tcp=2)
    url, zone = make_tree(secrets.token_bytes(32), "dup.example.org", [new, old])
    result = await walk_tree(url, memory_lookup(zone_of(zone, "dup.example.org")))
    assert result.enrs == (new,)


# ---------------------------------------------------------------------- real DNS over UDP


async def test_vector_zone_over_real_dns(nursery: trio.Nursery) -> None:
    server = await serve(nursery, VECTOR_ZONE)
    lookup = make_txt_lookup([LOOPBACK], port=server.port, timeout=3)
    result = await walk_tree(GOOD_URL, lookup)
    assert sorted(e.node_id.hex() for e in result.enrs) == sorted(x["node_id"] for x in VECTOR["decoded_leaves"])
    # the link points at morenodes.example.org, which this server does not serve
    assert result.stats.errors == {"linked_root": 1}
    assert "morenodes.example.org" in server.queries
    with pytest.raises(DnsDiscoveryError, match="not signed"):
        await walk_tree(VECTOR["url"], lookup)  # the spec's own URL: must be rejected


async def test_long_records_over_real_dns(nursery: trio.Nursery) -> None:
    # Waku ENRs with multiaddrs exceed 255 bytes of text: TXT strings must be joined.
    enrs = [Enr.build(secrets.token_bytes(32), 1, ip="10.0.0.1", tcp=60000, udp=9000, waku2=0x0F,
                      multiaddrs=[f"/dns4/node-{i:02d}.do-ams3.waku.sandbox.example.org/tcp/8000/wss"],
                      cluster=1, shards=range(8)) for i in range(3)]
    assert all(len(e.to_text()) > 255 for e in enrs)
    url, zone = make_tree(secrets.token_bytes(32), "long.example.org", enrs)
    server = await serve(nursery, zone_of(zone, "long.example.org"))
    result = await walk_tree(url, make_txt_lookup([LOOPBACK], port=server.port, timeout=3))
    assert {e.to_text() for e in result.enrs} == {e.to_text() for e in enrs}
    assert result.enrs[0].waku_multiaddrs


async def test_unreachable_nameserver_is_an_error() -> None:
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    with sock:
        await sock.bind((LOOPBACK, 0))  # bound, never answers
        lookup = make_txt_lookup([LOOPBACK], port=sock.getsockname()[1], timeout=0.5)
        with pytest.raises(DnsDiscoveryError):
            await walk_tree(GOOD_URL, lookup)


def test_root_seq_is_a_uint64() -> None:
    """Fuzzing finding (docs/reliability.md): a seq of over 4 300 digits raised ValueError from int()."""
    head = "enrtree-root:v1 e=JWXYDBPXYWG6FX3GMDIBFA6CJ4 l=C7HRFPF3BLGF3YR4DY5KX3SMBE seq="
    for seq in ("9" * 5000, str(1 << 64)):
        with pytest.raises(DnsDiscoveryError):
            parse_root(f"{head}{seq} sig=AAAA")
    assert parse_root(f"{head}{(1 << 64) - 1} sig=AAAA").seq == (1 << 64) - 1
