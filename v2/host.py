"""The py-libp2p host (pinned 0.8.1), one of the two doors to py-libp2p: the transports Waku peers speak.

TCP (nwaku: yamux, then mplex) and WebSocket (js-waku in Node: ws + noise + mplex ``/mplex/6.7.0``),
noise, identify (its protocol list is exactly our registered handlers plus identify/ping, which is
what js-waku and nwaku select peers by), ping, and a secp256k1 identity from the 32-byte node key
(Waku ENRs need a secp256k1 libp2p key; 31/WAKU2-ENR).  Only this module and
v2/relay/gossipsub_compat.py import libp2p (an import-linter contract in pyproject.toml); the rest
of the code sees :class:`Host` and :class:`v2.stream.Stream`.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import INotifee
from libp2p.crypto.secp256k1 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.auto_connector import AutoConnector
from libp2p.network.config import ConnectionConfig
from libp2p.network.connection_pruner import ConnectionPruner
from libp2p.network.stream.exceptions import StreamClosed, StreamEOF, StreamError, StreamReset
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport

from v2.errors import V2Error
from v2.relay import gossipsub_compat
from v2.stream import Stream, StreamClosedError

__all__ = ["ConnectionEvent", "DialError", "Host", "HostConfig", "StreamHandler"]

log = logging.getLogger(__name__)

StreamHandler = Callable[[Stream], Awaitable[None]]


class DialError(V2Error):
    pass


class _NetStream(Stream):
    def __init__(self, inner: Any, remote_peer: str, protocol: str) -> None:
        super().__init__()
        self._inner = inner
        self.remote_peer = remote_peer
        self.protocol = protocol

    async def _read(self, n: int) -> bytes:
        try:
            return bytes(await self._inner.read(n))
        except StreamEOF:
            return b""
        except (StreamReset, StreamClosed, StreamError) as exc:
            raise StreamClosedError(f"stream {self.protocol} from {self.remote_peer}: {type(exc).__name__}") from None

    async def _write(self, data: bytes) -> None:
        try:
            await self._inner.write(data)
        except (StreamReset, StreamClosed, StreamError) as exc:
            raise StreamClosedError(f"write on {self.protocol}: {type(exc).__name__}") from None

    async def close_write(self) -> None:
        try:
            await self._inner.close_write()
        except (StreamReset, StreamClosed, StreamError):
            pass

    async def reset(self) -> None:
        try:
            await self._inner.reset()
        except Exception:  # resetting a broken stream must never fail the caller
            pass

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            try:
                await self._inner.close()
            except Exception:
                pass


@dataclass(frozen=True, slots=True)
class ConnectionEvent:
    peer: str
    connected: bool  # False: the connection closed
    direction: str  # "inbound" | "outbound" | "unknown"


def _direction(conn: Any) -> str:
    """A swarm connection's py-libp2p ``Direction`` as "inbound" | "outbound" | "unknown"."""
    return str(getattr(getattr(conn, "direction", None), "name", "unknown")).lower()


class _ConnectionNotifee(INotifee):  # type: ignore[misc]  # libp2p is untyped
    """Forwards swarm connect/disconnect callbacks to a channel without ever blocking.

    py-libp2p awaits notifees inline on the connection path (swarm ``_notify``), so a slow
    consumer would stall every new connection: a full channel drops the event and counts it.
    """

    def __init__(self, send: trio.MemorySendChannel[ConnectionEvent]) -> None:
        self._send = send
        self.dropped = 0

    def _put(self, conn: Any, connected: bool) -> None:
        try:
            direction = _direction(conn)
            self._send.send_nowait(ConnectionEvent(str(conn.muxed_conn.peer_id), connected, direction))
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            self.dropped += 1

    async def connected(self, network: Any, conn: Any) -> None:
        self._put(conn, True)

    async def disconnected(self, network: Any, conn: Any) -> None:
        self._put(conn, False)

    async def opened_stream(self, network: Any, stream: Any) -> None:
        pass

    async def closed_stream(self, network: Any, stream: Any) -> None:
        pass

    async def listen(self, network: Any, multiaddr: Any) -> None:
        pass

    async def listen_close(self, network: Any, multiaddr: Any) -> None:
        pass


class _NoAutoConnector(AutoConnector):  # type: ignore[misc]  # libp2p is untyped
    """py-libp2p 0.8.1 workaround: its swarm always runs an AutoConnector that dials any peer in
    the peerstore (every address we ever dialled or learned) to reach the midpoint of its
    watermarks (~200 connections by default), on a timer and after every disconnect.  That
    redials peers our PeerManager pruned or that metadata rejected (waku-v2.md §12), behind the
    manager's back.  No ConnectionConfig value turns it off without also making the pruner cut
    everything (both read the same watermarks), so it is replaced by one that never starts:
    every entry point returns early while ``_started`` is False.  Connections are the peer
    manager's job alone (v2/peers/)."""

    async def start(self) -> None:
        pass

    async def maybe_connect(self) -> None:
        pass


class _NoConnectionPruner(ConnectionPruner):  # type: ignore[misc]  # libp2p is untyped
    """py-libp2p 0.8.1 workaround: its ConnectionPruner closes connections above its
    ``high_watermark`` by its own tag scores, which knows nothing of static peers or of the only
    relay peer on a shard; our PeerManager prunes instead (v2/peers/policy.py)."""

    async def start(self) -> None:
        pass

    async def maybe_prune_connections(self) -> None:
        pass


# How long a ws/wss client has from its TCP connect to a complete HTTP upgrade request, TLS
# handshake included (py-libp2p's own WebsocketListenerConfig.handshake_timeout, which 0.8.1 never
# passes on).
_WS_CONNECT_TIMEOUT = 15.0


def _install_ws_connect_timeout() -> None:
    """py-libp2p 0.8.1 workaround: its WebsocketListener calls trio-websocket's
    ``serve_websocket`` without ``connect_timeout``, so trio-websocket's default of 60 s applies.
    A client whose TLS handshake failed (junk on the wss port, a plain ws or http client, a scanner)
    is not closed then: trio-websocket's reader task ends, but the connection waits for an upgrade
    request that cannot come until that timeout.  The listener module's imported name is
    replaced by one with a shorter timeout, once."""
    import libp2p.transport.websocket.listener as listener_mod

    stock = listener_mod.serve_websocket
    if getattr(stock, "waku_timeout", False):
        return

    async def serve_websocket(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("connect_timeout", _WS_CONNECT_TIMEOUT)
        return await stock(*args, **kwargs)

    serve_websocket.waku_timeout = True  # type: ignore[attr-defined]
    listener_mod.serve_websocket = serve_websocket


# How long Host.run's exit may spend closing listeners and connections (shielded from the
# cancellation that stopped it).
_CLOSE_TIMEOUT = 5.0
_CONN_CLOSE_TIMEOUT = 0.5  # a live peer answers a ws close frame well within this


def _dial_from_listen_ip(swarm: Any, listen_ip: str) -> None:
    """Bound to one address, dial from it too (an ephemeral port on ``listen_ip``).

    py-libp2p 0.8.1 dials with ``trio.open_tcp_stream``, so the kernel picks the source address:
    a host on 127.0.0.5 (or on the second address of a multi-homed machine) would reach its
    peers from 127.0.0.1 (the primary address) and be counted, by their IP colocation limits
    (nwaku ``--ip-colocation-limit``, ours), as the same host as every other node there.  The
    TCP transport's ``dial_with_source`` (meant for hole punching) binds first; the WebSocket
    transport has no such hook and keeps the kernel's choice.
    """
    if listen_ip in ("", "0.0.0.0", "::"):
        return
    for transport in swarm.transport_manager.get_transports():
        with_source = getattr(transport, "dial_with_source", None)
        if not callable(with_source) or type(transport).__name__ != "TCP":
            continue
        plain = transport.dial

        async def dial(maddr: Any, _plain: Any = plain, _with_source: Any = with_source) -> Any:
            first = next(iter(maddr.protocols()), None)
            same_family = first is not None and first.name == ("ip6" if ":" in listen_ip else "ip4")
            return await (_with_source(maddr, (listen_ip, 0)) if same_family else _plain(maddr))

        transport.dial = dial


class HostConfig:
    def __init__(self, node_key: bytes, listen_address: str = "0.0.0.0", tcp_port: int = 60000,
                 websocket_port: int | None = 8000, connection_limit: int = 300,
                 websocket_tls: ssl.SSLContext | None = None) -> None:
        """``connection_limit`` is py-libp2p's own hard cap (it refuses connections beyond it,
        before any handshake work); the peer manager's ``maximum`` (nwaku --max-connections)
        sits well below it and is what normally bounds the node.  With ``websocket_tls`` (a
        server context, v2/wss.py) the websocket port serves ``/wss`` instead of ``/ws``, as
        nwaku's does with --websocket-secure-support (waku/node/net_config.nim ``wsFlag``)."""
        self.node_key = node_key
        self.listen_address = listen_address
        self.tcp_port = tcp_port
        self.websocket_port = websocket_port
        self.connection_limit = connection_limit
        self.websocket_tls = websocket_tls

    def listen_addrs(self) -> list[str]:
        addrs = [f"/ip4/{self.listen_address}/tcp/{self.tcp_port}"]
        if self.websocket_port is not None:
            ws = "wss" if self.websocket_tls is not None else "ws"
            addrs.append(f"/ip4/{self.listen_address}/tcp/{self.websocket_port}/{ws}")
        return addrs


async def _resolve(addr: str) -> list[str]:
    """``/dns4|dns6/<name>/...`` -> the ``/ip4|ip6/<address>/...`` forms it resolves to; other
    addresses unchanged.  We resolve ourselves: py-libp2p 0.8.1's own dns dialling failed even
    for ``localhost`` here.  Raises DialError when the name does not resolve."""
    parts = addr.split("/")
    if len(parts) < 3 or parts[1] not in ("dns4", "dns6"):
        return [addr]
    family, proto = (trio.socket.AF_INET, "ip4") if parts[1] == "dns4" else (trio.socket.AF_INET6, "ip6")
    port = int(parts[4]) if len(parts) > 4 and parts[3] == "tcp" and parts[4].isdigit() else None
    try:
        infos = await trio.socket.getaddrinfo(parts[2], port, family, trio.socket.SOCK_STREAM)
    except (OSError, ValueError, UnicodeError) as exc:
        raise DialError(f"resolving {parts[2]!r} in {addr}: {exc}") from None
    return ["/".join(["", proto, ip, *parts[3:]]) for ip in dict.fromkeys(str(i[4][0]) for i in infos)]


def _dial_first(peerstore: Any, peer_id: Any, addrs: Sequence[Any]) -> None:
    """py-libp2p 0.8.1 workaround: ``host.connect(info)`` dials the *peer*, not the address it
    is given: it appends ``info.addrs`` to the peerstore and ``Swarm.dial_peer`` then picks at most
    one address per transport class (TCP, then ws 250 ms later) from everything stored for the
    peer, in storage order.  Identify has by then replaced what we dialled with the peer's own
    listen addresses (``update_peerstore_from_identify`` clears them first, 2 h TTL), so every
    redial after a lost connection went to the addresses the peer advertises, never to the one
    configured: through a proxy, a NAT or another interface those fail ("no addresses
    established a successful connection") for as long as the advertised ones are unreachable.
    nim-libp2p's ``switch.connect(peerId, addrs)``, which nwaku's peer manager calls, dials the
    addresses it is given.  So the address we dial goes first, and the advertised ones after it
    stay as the other transport class's fallback (a peer that refuses one transport for a while
    after cutting us, as py-libp2p does, is still reached over the other).  Not done while a
    connection exists: then no dial happens."""
    try:
        known = list(peerstore.addrs(peer_id))
    except Exception:  # a peer the peerstore never saw
        known = []
    try:
        peerstore.clear_addrs(peer_id)
        peerstore.add_addrs(peer_id, list(addrs), 120)  # host.connect's own TTL for what it dials
        rest = [a for a in known if a not in addrs]
        if rest:
            peerstore.add_addrs(peer_id, rest, 7200)  # identify's TTL
    except Exception as exc:
        log.debug("ordering the addresses of %s: %s", peer_id, exc)


def _noise_only(key_pair: Any) -> dict[TProtocol, Any]:
    """py-libp2p quirk: ``new_host``'s default security accepts noise, TLS, secio AND plaintext
    (libp2p/__init__.py new_swarm), i.e. an unauthenticated, unencrypted peer too.  Waku speaks
    noise only (nwaku, js-waku).  go-libp2p (go-waku v0.10.0 keeps its default security, TLS then
    noise) proposes TLS first, which py-libp2p's TLS accepted, and a peer hanging up mid-write then
    raised ``ssl.SSLError`` out of a stream write, past every StreamError handler, and stopped the
    node.  With noise only, go-libp2p falls back to noise in the same multistream negotiation."""
    return {TProtocol(NOISE_PROTOCOL_ID): NoiseTransport(key_pair,
                                                         noise_privkey=create_new_x25519_key_pair().private_key)}


class Host:
    def __init__(self, config: HostConfig) -> None:
        self.config = config
        gossipsub_compat.install()  # relay's py-libp2p patches, before any pubsub runs on this host
        _install_ws_connect_timeout()
        self._addrs = [multiaddr.Multiaddr(a) for a in config.listen_addrs()]
        # Watermarks at the hard cap with min/low 0: even the inbound slot reservation py-libp2p
        # keeps for its auto-connector (max - min) goes to real peers.
        limits = ConnectionConfig(max_connections=config.connection_limit, min_connections=0, low_watermark=0,
                                  high_watermark=config.connection_limit)
        key_pair = create_new_key_pair(config.node_key)
        # py-libp2p 0.8.1: one WebsocketTransport serves every ws listen address and hands its
        # ``tls_server_config`` to each listener (``serve_websocket(ssl_context=...)``), ``/ws`` ones
        # included, so a node listens on ws or on wss, never both (nwaku's choice too).
        self._h = new_host(key_pair=key_pair, listen_addrs=self._addrs, connection_config=limits,
                           sec_opt=_noise_only(key_pair), tls_server_config=config.websocket_tls)
        swarm = self._h.get_network()
        swarm.auto_connector = _NoAutoConnector(swarm, auto_connect_interval=limits.auto_connect_interval)
        swarm.connection_pruner = _NoConnectionPruner(swarm)
        _dial_from_listen_ip(swarm, config.listen_address)
        self.peer_id = str(self._h.get_id())
        self.started = trio.Event()
        self._stopping = False  # set once shutdown began: no new dials (their connection would outlive the swarm)

    @property
    def libp2p_host(self) -> Any:
        """The py-libp2p host, for v2/relay only (the other half of the libp2p boundary)."""
        return self._h

    @property
    def listen_addrs(self) -> list[str]:
        """Full multiaddrs including ``/p2p/<peer id>``, TCP first.  py-libp2p lists them in
        the order its listeners came up, which for a wss listener (slower to start) varies."""
        return sorted((str(a) for a in self._h.get_addrs()), key=lambda a: "/ws" in a)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        # Shutdown order: stop accepting, close the connections, and only then stop the swarm.
        # py-libp2p runs the swarm's service in tasks under ``self._h.run()``: left in our scope,
        # the cancellation that stops us stops the swarm at the same instant, while its
        # listeners (trio system tasks) still accept and upgrade connections, and every upgrade
        # that then completes fails in ``Swarm.add_conn`` with a logged ``LifecycleError:
        # Cannot schedule task after service has stopped`` traceback.  So the py-libp2p host
        # runs under a shield of its own; our cancellation only sets ``stop``, and the shield
        # gets a deadline then, which bounds the whole shutdown.
        stop = trio.Event()
        shield = trio.CancelScope(shield=True)

        async def serve(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            with shield:
                try:
                    async with self._h.run(listen_addrs=self._addrs):
                        task_status.started()
                        await stop.wait()
                        await self._close_network()  # the swarm's service still runs
                finally:
                    await self._close_network()  # again, for a run that failed while listening

        async with trio.open_nursery() as nursery:
            await nursery.start(serve)
            try:
                self.started.set()
                task_status.started()
                await trio.sleep_forever()
            finally:
                shield.deadline = trio.current_time() + 2 * _CLOSE_TIMEOUT
                stop.set()

    async def _close_network(self) -> None:
        """Stop accepting, then close every connection; shielded and bounded.

        py-libp2p 0.8.1 workaround: listeners run in their own trio *system* task, which the
        cancellation that stops us never reaches, and the swarm's own shutdown closes them
        with unshielded awaits that that same cancellation aborts at once.  The socket then
        stays open: peers complete noise handshakes against a stopped node and their
        ``connect()`` returns with no connection behind it.

        Listeners go first: closing one cancels the upgrades it has in flight.  Left running
        while the swarm's service stops, such an upgrade completes afterwards and
        ``Swarm.add_conn`` logs ``[ADDCONN_FAIL] ... LifecycleError: Cannot schedule task after
        service has stopped`` with a traceback (what ``make demo`` printed at its end).  The
        ws listener closes its raw connections one by one, unbounded (trio-websocket waits for
        the peer's close frame), before its socket: those are closed first, concurrently, each
        with its own short deadline.  Then the swarm's connections, the same way.  A close cut
        short still closes the underlying stream.  Everything here is idempotent.
        """
        self._stopping = True
        swarm = self._h.get_network()

        async def close(what: Any, closable: Any) -> None:  # a connection or a listener, bounded
            with trio.move_on_after(_CONN_CLOSE_TIMEOUT):
                try:
                    await closable.close()
                except Exception as exc:
                    log.debug("closing %s: %s", what, exc)

        with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_TIMEOUT):
            async with trio.open_nursery() as nursery:
                # The ws listener's own list of raw connections (0.8.1 ``WebsocketListener.
                # _connections``): closing the swarm connection leaves those open.
                for listener in list(swarm.listeners.values()):
                    for raw in list(getattr(listener, "_connections", {}).values()):
                        nursery.start_soon(close, "a ws connection", raw)
            async with trio.open_nursery() as nursery:
                for key, listener in list(swarm.listeners.items()):
                    nursery.start_soon(close, f"listener {key}", listener)
            swarm.listeners.clear()
            async with trio.open_nursery() as nursery:
                for peer, conns in list(swarm.connections.items()):
                    for conn in list(conns):
                        nursery.start_soon(close, f"connection to {peer}", conn)

    def set_stream_handler(self, protocol_id: str, handler: StreamHandler) -> None:
        async def adapter(inner: Any) -> None:
            stream = _NetStream(inner, str(inner.muxed_conn.peer_id), protocol_id)
            try:
                await handler(stream)
            except StreamClosedError as exc:
                log.debug("%s: %s", protocol_id, exc)
            finally:
                await stream.aclose()

        self._h.set_stream_handler(TProtocol(protocol_id), adapter)

    async def connect(self, addr: str, timeout: float = 10.0) -> str:
        """Dial a ``.../p2p/<id>`` multiaddr (``/ip4``, ``/ip6``, ``/dns4``, ``/dns6``); returns the
        peer id once the handshake completed.  ``timeout`` bounds the whole call, name
        resolution included; a name's addresses are tried in turn.  The remote may close the
        connection at once (nwaku does on a metadata mismatch): callers that need it check
        ``connected_peers()``."""
        try:
            with trio.fail_after(timeout):
                targets = await _resolve(addr)
                last: DialError | None = None
                for target in targets:
                    try:
                        return await self._connect_one(target)
                    except DialError as exc:
                        last = exc
                raise last if last is not None else DialError(f"{addr}: resolved to no address")
        except trio.TooSlowError:
            raise DialError(f"dial {addr} timed out") from None

    async def _connect_one(self, addr: str) -> str:
        if self._stopping:
            raise DialError(f"dial {addr}: the host is stopping")
        try:
            info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
        except Exception as exc:  # py-libp2p raises assorted types for a bad address
            raise DialError(f"bad multiaddr {addr!r}: {exc}") from None
        swarm = self._h.get_network()
        # py-libp2p 0.8.1 workaround: a peer whose addresses all failed sits in the swarm's
        # "negative cache" for 60 s, and every dial to it fails at once meanwhile, which would
        # override the peer manager's backoff (a restarted static peer would stay unreachable
        # for a minute).  When to redial is the manager's decision: clear it before and after.
        swarm.unblock_peer(info.peer_id)
        if not swarm.connections.get(info.peer_id):
            _dial_first(self._h.get_peerstore(), info.peer_id, info.addrs)
        try:
            await self._h.connect(info)
        except trio.Cancelled:
            raise
        except Exception as exc:
            raise DialError(f"dial {addr}: {exc}") from None
        finally:
            swarm.unblock_peer(info.peer_id)
        return str(info.peer_id)

    async def new_stream(self, peer: str, protocols: Sequence[str], timeout: float = 10.0) -> Stream:
        try:
            with trio.fail_after(timeout):
                inner = await self._h.new_stream(ID.from_base58(peer), [TProtocol(p) for p in protocols])
        except trio.TooSlowError:
            raise DialError(f"opening {protocols} to {peer} timed out") from None
        except Exception as exc:
            raise DialError(f"opening {protocols} to {peer}: {exc}") from None
        return _NetStream(inner, peer, str(inner.get_protocol()))

    def connection_events(self, capacity: int = 1024) -> trio.MemoryReceiveChannel[ConnectionEvent]:
        """A new channel of connection opened/closed events (every subscriber gets its own).

        Metadata (waku-v2.md §12: query the peer on every new connection, inbound and outbound)
        and the peer manager need this signal; py-libp2p only offers swarm notifees.
        """
        send, recv = trio.open_memory_channel[ConnectionEvent](capacity)
        self._h.get_network().register_notifee(_ConnectionNotifee(send))
        return recv

    def connected_peers(self) -> list[str]:
        return [str(p) for p in self._h.get_connected_peers()]

    def peer_protocols(self, peer: str) -> list[str]:
        try:
            return [str(p) for p in self._h.get_peerstore().get_protocols(ID.from_base58(peer))]
        except Exception:
            return []

    def peer_addrs(self, peer: str) -> list[str]:
        """The addresses the peerstore holds for ``peer`` (without /p2p/; empty if none)."""
        try:
            return [str(a) for a in self._h.get_peerstore().addrs(ID.from_base58(peer))]
        except Exception:
            return []

    def peer_direction(self, peer: str) -> str:
        """"inbound" | "outbound" of our first live connection to ``peer``; "unknown" when not
        connected or py-libp2p did not record it (waku_connected_peers' direction label, §18)."""
        try:
            conns = self._h.get_network().connections.get(ID.from_base58(peer)) or []
            return _direction(conns[0]) if conns else "unknown"
        except Exception:
            return "unknown"

    def peer_ip(self, peer: str) -> str | None:
        """The remote IP of our first live connection to ``peer`` (what an IP colocation limit
        counts: nwaku ``getPeerIp`` reads the connection's observed address too)."""
        try:
            conns = self._h.get_network().connections.get(ID.from_base58(peer)) or []
            remote = conns[0].muxed_conn.get_remote_address() if conns else None
            return str(remote[0]) if remote else None
        except Exception:
            return None

    async def disconnect(self, peer: str) -> None:
        try:
            await self._h.disconnect(ID.from_base58(peer))
        except Exception as exc:
            log.debug("disconnect %s: %s", peer, exc)
