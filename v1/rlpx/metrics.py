"""RLPx metrics, named as nim-eth exported them (rlpx_*), on a registry the app passes in."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["RLPxMetrics"]


class RLPxMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry if registry is not None else CollectorRegistry()
        self.connected_peers = Gauge("rlpx_connected_peers", "Open RLPx sessions", registry=r)
        self.connect_success = Counter("rlpx_connect_success", "Outbound sessions established", registry=r)
        self.connect_failure = Counter("rlpx_connect_failure", "Outbound dials that failed", ["reason"], registry=r)
        self.accept_success = Counter("rlpx_accept_success", "Inbound sessions established", registry=r)
        self.accept_failure = Counter("rlpx_accept_failure", "Inbound connections refused or failed",
                                      ["reason"], registry=r)
        self.disconnects = Counter("rlpx_disconnects", "Sessions ended, by reason and by who ended them",
                                   ["reason", "side"], registry=r)
        self.frames = Counter("rlpx_frames", "Frames by direction", ["direction"], registry=r)
        self.bytes = Counter("rlpx_bytes", "Wire bytes by direction", ["direction"], registry=r)
        self.protocol_errors = Counter("rlpx_protocol_errors", "Broken peers by kind (mac, oversize, "
                                       "malformed, handshake, ...)", ["kind"], registry=r)
