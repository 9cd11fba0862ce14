"""Waku v1 metrics.  Envelope counters keep nwaku's names (its Grafana dashboard queries
``envelopes_valid_total`` and ``envelopes_dropped_total``); the rest are prefixed ``waku_v1_``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["V1Metrics"]


class V1Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry if registry is not None else CollectorRegistry()
        self.registry = r
        self.envelopes_received = Counter("envelopes_received", "Envelopes received from v1 peers", registry=r)
        self.envelopes_valid = Counter("envelopes_valid", "Envelopes accepted into the pool", registry=r)
        self.envelopes_dropped = Counter("envelopes_dropped", "Envelopes refused, by reason", ["reason"], registry=r)
        self.peers = Gauge("waku_v1_peers", "Connected Waku v1 peers", ["direction"], registry=r)
        self.posts = Counter("waku_v1_posts", "Local posts (bridge v2->v1), by result", ["result"], registry=r)
        self.pool_size = Gauge("waku_v1_pool_envelopes", "Envelopes in the pool", registry=r)
        self.envelopes_sent = Counter("waku_v1_envelopes_sent", "Envelopes forwarded to peers", registry=r)
        self.send_expired = Counter("waku_v1_send_expired", "Envelopes that expired while queued for a peer "
                                    "whose advertised rate limits held them back", registry=r)
        self.send_oversize = Counter("waku_v1_send_oversize", "Envelopes not sent to a peer because a packet "
                                     "holding them exceeds the bytes/s limit it advertised (status-go's "
                                     "bucket could never let it through)", registry=r)
        self.packets_in = Counter("waku_v1_packets", "waku/1 packets received, by code", ["code"], registry=r)
        self.rate_limited = Counter("waku_v1_rate_limits_exceeded", "Rate-limit exceedances by kind",
                                    ["type"], registry=r)
        # Why sessions ended, finely: an operator must tell a corrupt stream (mac_mismatch) from
        # abuse (rate_limit), bad input (malformed_messages, bad_snappy, ...) or a dead link.
        self.peer_disconnects = Counter("waku_v1_peer_disconnects", "Peers we disconnected, by cause",
                                        ["reason"], registry=r)
        self.peer_lost = Counter("waku_v1_peer_lost", "Sessions the peer ended (by the reason it sent) or "
                                 "that broke (connection_closed, connection_lost)", ["reason"], registry=r)
        self.max_peer_pow = Gauge("waku_v1_peer_max_pow_requirement",
                                  "Highest PoW requirement advertised by a connected peer", registry=r)
        self.peer_envelope_errors = Counter("waku_v1_peer_envelope_errors",
                                            "Envelopes a peer reported refusing (Message Response), by code",
                                            ["code"], registry=r)
        self.dials = Counter("waku_v1_dials", "Dials of static peers, by result", ["result"], registry=r)
