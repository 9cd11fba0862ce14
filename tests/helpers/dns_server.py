"""A tiny authoritative DNS server over UDP on 127.0.0.1 for EIP-1459 tests (real sockets, no mocks)."""

from __future__ import annotations

from collections.abc import Mapping

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rrset
import trio

from tests.helpers.net import LOOPBACK

__all__ = ["DnsServer", "serve", "zone_of"]


def zone_of(records: list[dict[str, object]] | Mapping[str, str], domain: str) -> dict[str, list[str]]:
    items = records.items() if isinstance(records, Mapping) else [(r["name"], r["txt"]) for r in records]
    return {(domain if name == "@" else f"{name}.{domain}").lower(): [str(txt)] for name, txt in items}


class DnsServer:
    """A tiny authoritative UDP server: exact-name TXT answers, NXDOMAIN otherwise."""

    def __init__(self, zone: dict[str, list[str]]) -> None:
        self.zone = zone
        self.queries: list[str] = []
        self.port = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        with sock:
            await sock.bind((LOOPBACK, 0))
            self.port = sock.getsockname()[1]
            task_status.started()
            while True:
                data, peer = await sock.recvfrom(4096)
                try:
                    query = dns.message.from_wire(data)
                except Exception:
                    continue  # a test server: ignore garbage
                resp = dns.message.make_response(query)
                resp.flags |= dns.flags.AA
                q = query.question[0]
                name = q.name.to_text().rstrip(".").lower()
                self.queries.append(name)
                if name in self.zone and q.rdtype == dns.rdatatype.TXT:
                    rrset = dns.rrset.RRset(q.name, dns.rdataclass.IN, dns.rdatatype.TXT)
                    for txt in self.zone[name]:
                        raw = txt.encode()
                        chunks = [raw[i:i + 255] for i in range(0, len(raw), 255)] or [b""]  # RFC 1035 strings
                        rrset.add(dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, chunks), 60)
                    resp.answer.append(rrset)
                elif name not in self.zone:
                    resp.set_rcode(dns.rcode.NXDOMAIN)
                await sock.sendto(resp.to_wire(), peer)


async def serve(nursery: trio.Nursery, zone: dict[str, list[str]]) -> DnsServer:
    server = DnsServer(zone)
    await nursery.start(server.run)
    return server


