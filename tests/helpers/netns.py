"""Network namespaces for partition drills: one namespace per node, one L2 segment, cuts by policy rule.

Layout: a Linux bridge in the root namespace (the segment, ``10.a.b.0/24``) carries the test's own
addresses (``.1`` control, further ones for the in-process nodes: a trio node cannot enter a
namespace, so it binds one of these); every :meth:`NetNs.add` namespace is joined to it by a veth
pair and gets the next address from ``.10``.  A process runs inside a namespace with
``ip netns exec NAME argv...`` (:meth:`NetNs.prefix`).

A cut (:meth:`NetNs.partition`) is made inside the namespaces on its sides, never in the root one:
two ``ip rule ... blackhole`` rules per peer address, ``to`` (what the namespace sends) and ``from``
(what it receives; ip-rule(8): the input route lookup matches the source too).  So a cut is
silent in both directions, as a broken link is, while the test still reaches every node from the
control address.  :meth:`NetNs.link` sets a node's veth down or up (a whole node off the segment);
:meth:`NetNs.shape` puts a ``tbf`` rate cap on a node's link, both directions (tc-tbf(8)).

Names carry the owner's PID (``wbd-<pid>-<n>-<role>``, the bridge's alias), so runs in parallel
never collide, and :func:`clean_stale` removes what a killed run left behind (its namespaces, the
processes still running in them, its segment bridge).  Requires root and
iproute2; :meth:`NetNs.close` (call it in ``finally``) removes everything this instance made.
"""

from __future__ import annotations

import itertools
import os
import random
import re
import signal
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = ["NetNs", "NetNsError", "Node", "clean_stale"]

PREFIX = "wbd"
_counter = itertools.count(1)
_live: set[str] = set()  # tags of the topologies this process has open


class NetNsError(RuntimeError):
    pass


def _ip(*args: str, check: bool = True) -> str:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if check and r.returncode != 0:
        raise NetNsError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def _run(argv: Sequence[str]) -> None:
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=20)
    if r.returncode != 0:
        raise NetNsError(f"{' '.join(argv)}: {r.stderr.strip()}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale(tag: str) -> bool:
    """``<pid>-<n>`` of a topology whose owner is gone (or is us, and no longer has it open)."""
    m = re.fullmatch(r"(\d+)-(\d+)", tag)
    if m is None:
        return False
    pid = int(m.group(1))
    return tag not in _live if pid == os.getpid() else not _pid_alive(pid)


def clean_stale() -> list[str]:
    """Delete namespaces and segment bridges left by runs that were killed; returns their names."""
    gone: list[str] = []
    for line in _ip("netns", "list").splitlines():
        name = line.split()[0] if line.strip() else ""
        m = re.fullmatch(rf"{PREFIX}-(\d+-\d+)-[\w.]+", name)
        if m and _stale(m.group(1)):
            # what the killed run started in it (a bridge, etcd, a js peer) outlived it: end those first
            for pid in _ip("netns", "pids", name, check=False).split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            _ip("netns", "delete", name, check=False)
            gone.append(name)
    for line in _ip("-o", "link", "show", "type", "bridge").splitlines():
        m = re.search(rf"^\d+: (w[0-9a-f]+br):.*\balias {PREFIX}-(\d+-\d+)\b", line)
        if m and _stale(m.group(2)):
            _ip("link", "delete", m.group(1), check=False)
            gone.append(m.group(1))
    return gone


def _free_subnet() -> tuple[int, int]:
    """A ``10.a.b.0/24`` no interface of the root namespace is on."""
    used = _ip("-4", "-o", "addr", "show")
    rng = random.Random()
    for _ in range(200):
        a, b = rng.randrange(100, 250), rng.randrange(0, 256)
        if f" 10.{a}.{b}." not in used:
            return a, b
    raise NetNsError("no free 10.a.b.0/24")


@dataclass
class Node:
    role: str
    ns: str  # namespace name
    addr: str
    dev: str  # the veth end inside the namespace
    peer_dev: str  # its other end, on the segment bridge
    cuts: set[str] = field(default_factory=set)  # addresses this node is cut from
    control_ports: set[int] = field(default_factory=set)  # its TCP ports the control address always reaches


class NetNs:
    """One test's topology; ``with NetNs() as net:`` or :meth:`close` in ``finally``."""

    def __init__(self) -> None:
        clean_stale()
        n = next(_counter)
        self.tag = f"{os.getpid()}-{n}"
        _live.add(self.tag)
        self._short = f"w{os.getpid():x}{n:x}"  # interface names: at most 15 bytes (IFNAMSIZ)
        a, b = _free_subnet()
        self.net = f"10.{a}.{b}"
        self.bridge = f"{self._short}br"
        self.nodes: dict[str, Node] = {}
        self.root_addrs: dict[str, str] = {}
        self._shaped: list[tuple[str | None, str]] = []
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("link", "set", "dev", self.bridge, "alias", f"{PREFIX}-{self.tag}")
            _ip("link", "set", self.bridge, "up")
            self.control = self.root_addr("control")
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> NetNs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def root_addr(self, role: str) -> str:
        """A further address on the segment in the root namespace (for an in-process node)."""
        addr = f"{self.net}.{len(self.root_addrs) + 1}"
        _ip("addr", "add", f"{addr}/24", "dev", self.bridge)
        self.root_addrs[role] = addr
        return addr

    def add(self, role: str) -> Node:
        k = len(self.nodes)
        ns = f"{PREFIX}-{self.tag}-{role}"
        node = Node(role, ns, f"{self.net}.{10 + k}", f"{self._short}{k:x}", f"{self._short}{k:x}p")
        _ip("netns", "add", ns)
        self.nodes[role] = node
        _ip("link", "add", node.dev, "type", "veth", "peer", "name", node.peer_dev)
        _ip("link", "set", node.dev, "netns", ns)
        _ip("link", "set", node.peer_dev, "master", self.bridge, "up")
        _ip("-n", ns, "addr", "add", f"{node.addr}/24", "dev", node.dev)
        _ip("-n", ns, "link", "set", node.dev, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        # The local table is looked up first (rule 0), so a packet to one of our own addresses never
        # met a cut's ``from`` rule; behind the cuts (pref 100) it still serves every other packet.
        _ip("-n", ns, "rule", "add", "pref", "200", "lookup", "local")
        _ip("-n", ns, "rule", "del", "pref", "0")
        return node

    def prefix(self, role: str) -> list[str]:
        """The argv prefix that runs a command inside ``role``'s namespace."""
        return ["ip", "netns", "exec", self.nodes[role].ns]

    def addr(self, role: str) -> str:
        return self.nodes[role].addr if role in self.nodes else self.root_addrs[role]

    # --- faults ---

    def _addrs(self, roles: Iterable[str]) -> list[str]:
        return [self.addr(r) for r in roles]

    def allow_control(self, role: str, port: int) -> None:
        """Keep ``role``'s TCP ``port`` reachable from the control address through any cut."""
        self.nodes[role].control_ports.add(port)

    def _cut(self, node: Node, addr: str) -> None:
        if addr in node.cuts:
            return
        if addr == self.control:
            for port in sorted(node.control_ports):
                _ip("-n", node.ns, "rule", "add", "from", f"{addr}/32", "ipproto", "tcp", "dport", str(port),
                    "lookup", "local", "pref", "90")  # in: delivered to us (the local table)
                _ip("-n", node.ns, "rule", "add", "to", f"{addr}/32", "ipproto", "tcp", "sport", str(port),
                    "lookup", "main", "pref", "90")
        for sel in ("to", "from"):
            _ip("-n", node.ns, "rule", "add", sel, f"{addr}/32", "blackhole", "pref", "100")
        node.cuts.add(addr)

    def partition(self, side_a: Iterable[str], side_b: Iterable[str]) -> None:
        """Cut every node of ``side_a`` from every node of ``side_b`` (roles; root addresses allowed
        on one side: the cut is then made by the namespace side alone).

        An in-process node dials from the root namespace's first address (the control address; a
        trio node does not bind its outgoing sockets), so cutting a namespace from any root address
        cuts it from the control address too, except for its :meth:`allow_control` ports."""
        a, b = list(side_a), list(side_b)
        for mine, theirs in ((a, b), (b, a)):
            for role in mine:
                node = self.nodes.get(role)
                if node is None:
                    if not all(r in self.nodes for r in theirs):
                        raise NetNsError(f"{role} and {theirs}: one side of a cut must be namespaces")
                    continue
                addrs = self._addrs(theirs)
                if any(r not in self.nodes for r in theirs):
                    addrs.append(self.control)
                for addr in addrs:
                    self._cut(node, addr)

    def heal(self) -> None:
        """Remove every cut (links set down stay down: :meth:`link` brings them up)."""
        for node in self.nodes.values():
            for pref in ("90", "100"):  # ``ip rule del pref N`` removes one rule at N; fails when none is left
                while subprocess.run(["ip", "-n", node.ns, "rule", "del", "pref", pref], capture_output=True,
                                     timeout=20).returncode == 0:
                    pass
            node.cuts.clear()

    def link(self, role: str, up: bool) -> None:
        """Take ``role``'s link off the segment (or back on)."""
        _ip("link", "set", self.nodes[role].peer_dev, "up" if up else "down")

    def shape(self, role: str, rate: str, burst: str = "16kb", latency: str = "200ms") -> None:
        """A ``tbf`` rate cap on ``role``'s link, both directions (each veth end shapes its egress)."""
        node = self.nodes[role]
        for ns, dev in ((node.ns, node.dev), (None, node.peer_dev)):
            argv = ["tc", *(["-n", ns] if ns else []), "qdisc", "add", "dev", dev, "root", "tbf",
                    "rate", rate, "burst", burst, "latency", latency]
            _run(argv)
            self._shaped.append((ns, dev))

    def tc_stats(self, role: str) -> str:
        node = self.nodes[role]
        return subprocess.run(["tc", "-n", node.ns, "-s", "qdisc", "show", "dev", node.dev],
                              capture_output=True, text=True, timeout=20).stdout

    def close(self) -> None:
        for node in self.nodes.values():
            _ip("netns", "delete", node.ns, check=False)  # takes its veth pair with it
        if self.bridge:
            _ip("link", "delete", self.bridge, check=False)
        self.nodes.clear()
        _live.discard(self.tag)
