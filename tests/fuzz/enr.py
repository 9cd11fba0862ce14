"""ENR (EIP-778, 31/WAKU2-ENR) and EIP-1459 DNS tree harnesses.

A record is signed, so random bytes stop at the signature check.  Besides the raw RLP and text forms
the ``enr`` target signs the fuzzed key/value pairs itself (mode 2) and reads every accessor of the
verified record: what peer exchange, DNS discovery and discv5 do with a record a peer signed.
"""

from __future__ import annotations

from tests.fuzz.targets import Target, each, hex_strings, instrumented, text_strings
from tests.helpers.vectors import load_vectors

with instrumented():
    from v2.enr.dns import EnrTreeUrl, make_tree, parse_entry, parse_root
    from v2.enr.enr import Enr
    from v2.enr.maddr import decode_multiaddr, encode_multiaddr
    from v2.errors import V2Error

__all__ = ["TARGETS"]

KEY = bytes.fromhex("b71c71a67e1177ad4e901695e1b4b9ee17ae16c6668d313eac2f96dbcda3f291")  # EIP-778's
_KEYS = ("ip", "ip6", "tcp", "udp", "tcp6", "udp6", "waku2", "multiaddrs", "rs", "rsv", "id", "secp256k1")
_SEP = b"\xff\xfe"


def _read(e: Enr) -> None:
    _ = (e.node_id, e.peer_id, e.ip, e.ip6, e.tcp, e.udp, e.tcp6, e.udp6, e.waku2, e.waku_multiaddrs, e.shards)
    e.multiaddrs()
    assert Enr.from_text(e.to_text()) == e


def enr(data: bytes) -> None:
    """``mode ‖ rest``: 0 RLP, 1 text, 2 fuzzed pairs signed here, 3 a bare multiaddr."""
    if not data:
        return
    mode, rest = data[0] % 4, data[1:]
    if mode == 0:
        _read(Enr.from_rlp(rest))
    elif mode == 1:
        try:
            text = rest.decode("ascii")
        except UnicodeDecodeError:
            return  # records arrive as ASCII (DNS TXT, config); the DNS walker drops the rest
        _read(Enr.from_text(text))
    elif mode == 2:
        extra: dict[str, bytes] = {}
        for chunk in rest.split(_SEP):
            if chunk:
                extra[_KEYS[chunk[0]] if chunk[0] < len(_KEYS) else f"k{chunk[0]:02x}"] = chunk[1:]
        _read(Enr.from_rlp(Enr.build(KEY, 1, extra=extra).raw))
    else:
        text = decode_multiaddr(rest)
        assert decode_multiaddr(encode_multiaddr(text)) == text


def _enr_seeds() -> list[bytes]:
    raw = hex_strings("eip778_enr.json", "rlp_hex")
    texts = text_strings("eip778_enr.json", "enr:") + text_strings("eip1459_dns.json", "enr:")
    waku = Enr.build(KEY, 3, ip="10.0.0.1", tcp=60000, udp=9000, ip6="::1", waku2=0x0F,
                     multiaddrs=["/dns4/node.example/tcp/443/wss"], cluster=1, shards=[0, 1, 5])
    pairs = _SEP.join([bytes([0]) + bytes([127, 0, 0, 1]), bytes([2]) + b"\x75\x30", bytes([6]) + b"\x0f",
                       bytes([8]) + b"\x00\x01\x01\x00\x00"])
    ma = encode_multiaddr("/ip4/1.2.3.4/tcp/60000/ws")
    return ([b"\x00" + r for r in raw] + [b"\x01" + t.encode() for t in texts]
            + [b"\x00" + waku.raw, b"\x01" + waku.to_text().encode(), b"\x02" + pairs, b"\x03" + ma])


def dns(data: bytes) -> None:
    """One TXT record (ASCII, as the lookup returns it) as root, entry and tree URL."""
    try:
        txt = data.decode("ascii")
    except UnicodeDecodeError:
        return
    each(V2Error, txt, parse_entry, EnrTreeUrl.parse)
    root = parse_root(txt)
    root.verify(Enr.build(KEY).public_key)


def _dns_seeds() -> list[bytes]:
    vector = load_vectors("eip1459_dns.json")["vectors"][0]
    url, zone = make_tree(KEY, "nodes.example.org", [Enr.build(KEY, 1, ip="10.0.0.1", tcp=1)], links=[vector["url"]])
    return [r["txt"].encode() for r in vector["records"]] + [url.encode()] + [t.encode() for t in zone.values()]


TARGETS = {
    "enr": Target("enr", enr, V2Error, _enr_seeds),
    "dns": Target("dns", dns, V2Error, _dns_seeds, max_len=8192),
}
