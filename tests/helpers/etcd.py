"""Real etcd members for tests: free loopback ports, a tmp data dir, killed by PID on teardown.

Uses the ``etcd`` binary (Debian ``etcd-server``, installed by scripts/setup.sh); tests skip when
it is missing.  Single member: ``EtcdCluster.start(tmp, 1)``; three members: ``(tmp, 3)``.
Faults: ``kill`` (SIGKILL), ``stop`` (SIGSTOP), ``cont`` (SIGCONT), ``restart`` (same data dir,
same ports).  ``raft_leader()`` asks ``/v3/maintenance/status`` of each live member.
Security: ``start(..., tls=make_tls_files(dir))`` serves https and requires client certificates;
``enable_auth`` turns etcd authentication on.  Keys and certificates are made by the test, in its
tmp dir, never committed.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers.net import LOOPBACK, free_ports
from tests.helpers.tls import TlsFiles, make_tls_files

__all__ = ["ETCD", "EtcdCluster", "EtcdMember", "TlsFiles", "enable_auth", "etcd_available", "make_tls_files"]

ETCD = shutil.which("etcd") or "/usr/bin/etcd"


def etcd_available() -> bool:
    return os.access(ETCD, os.X_OK)


@dataclass
class EtcdMember:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    initial_cluster: str
    election_timeout_ms: int = 1000
    proc: subprocess.Popen[bytes] | None = None
    stopped: bool = False
    starts: int = field(default=0)
    tls: TlsFiles | None = None
    auth: tuple[str, str] | None = None  # (user, password) the helper itself uses once auth is on
    extra_args: tuple[str, ...] = ()
    host: str = LOOPBACK  # its client and peer address (a namespace's, tests/helpers/netns.py)
    prefix: tuple[str, ...] = ()  # argv before etcd's (``ip netns exec NS``)

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.client_port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.endpoint}"

    def spawn(self) -> None:
        peer = f"http://{self.host}:{self.peer_port}"
        state = "new" if self.starts == 0 else "existing"
        log = open(self.data_dir.with_suffix(".log"), "ab")  # noqa: SIM115 - handed to the child
        try:
            self.proc = subprocess.Popen(
                [*self.prefix, ETCD, "--name", self.name, "--data-dir", str(self.data_dir),
                 "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                 "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                 "--initial-cluster", self.initial_cluster, "--initial-cluster-state", state,
                 "--initial-cluster-token", f"t-{zlib.crc32(self.initial_cluster.encode()):08x}",
                 # Small for tests: the leases' minimum TTL derives from these (specs/failover.md §1.2).
                 "--heartbeat-interval", str(self.election_timeout_ms // 10),
                 "--election-timeout", str(self.election_timeout_ms),
                 "--logger", "zap", "--log-level", "warn",
                 *([] if self.tls is None else [
                     "--cert-file", str(self.tls.server_cert), "--key-file", str(self.tls.server_key),
                     "--trusted-ca-file", str(self.tls.ca), "--client-cert-auth"]),
                 *self.extra_args],
                stdout=log, stderr=log)
        finally:
            log.close()
        self.starts += 1
        self.stopped = False

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            if self.stopped:
                self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()
        self.stopped = False

    def stop(self) -> None:
        self.signal(signal.SIGSTOP)
        self.stopped = True

    def cont(self) -> None:
        self.signal(signal.SIGCONT)
        self.stopped = False

    def post(self, path: str, body: dict[str, object], timeout: float = 1.0) -> dict[str, object]:
        headers = {"Content-Type": "application/json"}
        if self.auth is not None and path != "/v3/auth/authenticate":
            token = self.post("/v3/auth/authenticate", {"name": self.auth[0], "password": self.auth[1]}, timeout)
            headers["Authorization"] = str(token["token"])
        req = urllib.request.Request(self.url + path, json.dumps(body).encode(), headers)
        ctx = None if self.tls is None else self.tls.client_context()
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:
            out: dict[str, object] = json.loads(resp.read())
            return out

    def healthy(self) -> bool:
        try:
            self.post("/v3/kv/range", {"key": base64.b64encode(b"health").decode()}, timeout=0.5)
            return True
        except (OSError, urllib.error.URLError, ValueError):
            return False


class EtcdCluster:
    def __init__(self, members: list[EtcdMember]) -> None:
        self.members = members

    @classmethod
    def start(cls, tmp: Path, n: int = 1, *, wait: float = 20.0, election_timeout_ms: int = 1000,
              tls: TlsFiles | None = None, extra_args: tuple[str, ...] = (),
              hosts: list[tuple[str, list[str]]] | None = None) -> EtcdCluster:
        """``hosts``: per member, its address and argv prefix (default: loopback, no prefix)."""
        ports = free_ports(2 * n)
        names = [f"m{i + 1}" for i in range(n)]
        place = hosts or [(LOOPBACK, [])] * n
        initial = ",".join(f"{nm}=http://{place[i][0]}:{ports[n + i]}" for i, nm in enumerate(names))
        members = []
        for i, nm in enumerate(names):
            d = tmp / f"etcd-{nm}"
            d.mkdir(parents=True, exist_ok=True)
            members.append(EtcdMember(nm, ports[i], ports[n + i], d / "data", initial, election_timeout_ms, tls=tls,
                                      extra_args=extra_args, host=place[i][0], prefix=tuple(place[i][1])))
        cluster = cls(members)
        try:
            for m in members:
                m.spawn()
            cluster.wait_healthy(wait)
        except BaseException:
            cluster.close()
            raise
        return cluster

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    @property
    def url(self) -> str:
        return "etcd://" + ",".join(self.endpoints)

    def wait_healthy(self, timeout: float = 20.0, members: list[EtcdMember] | None = None) -> None:
        deadline = time.monotonic() + timeout
        todo = members if members is not None else self.members
        while not all(m.healthy() for m in todo):
            for m in todo:
                if m.proc is not None and m.proc.poll() is not None:
                    raise RuntimeError(f"etcd {m.name} exited with {m.proc.returncode}; "
                                       f"log: {m.data_dir.with_suffix('.log')}")
            if time.monotonic() > deadline:
                raise TimeoutError("etcd did not become healthy")
            time.sleep(0.05)

    def restart(self, m: EtcdMember, *, wait: bool = True) -> None:
        m.kill()
        m.spawn()
        if wait:
            self.wait_healthy(members=[m])

    def raft_leader(self) -> EtcdMember | None:
        """The member the live members agree leads raft (None during an election)."""
        ids: dict[int, EtcdMember] = {}
        leaders = set()
        for m in self.members:
            if m.stopped or m.proc is None or m.proc.poll() is not None:
                continue
            try:
                st = m.post("/v3/maintenance/status", {}, timeout=0.5)
            except (OSError, urllib.error.URLError, ValueError):
                continue
            header = st.get("header")
            if isinstance(header, dict):
                ids[int(header["member_id"])] = m
            if "leader" in st:
                leaders.add(int(str(st["leader"])))
        if len(leaders) == 1:
            return ids.get(leaders.pop())
        return None

    def close(self) -> None:
        for m in self.members:
            m.kill()


def enable_auth(cluster: EtcdCluster, user: str, password: str, prefix: bytes) -> None:
    """etcd authentication on: a root user, and ``user`` allowed to read and write keys under
    ``prefix`` only (what an election needs; leases need no permission)."""
    m = cluster.members[0]
    root_pw = base64.b64encode(os.urandom(12)).decode()

    def b64(b: bytes) -> str:
        return base64.b64encode(b).decode()

    end = bytearray(prefix)
    end[-1] += 1
    m.post("/v3/auth/role/add", {"name": "root"})
    m.post("/v3/auth/user/add", {"name": "root", "password": root_pw})
    m.post("/v3/auth/user/grant", {"user": "root", "role": "root"})
    m.post("/v3/auth/role/add", {"name": "election"})
    m.post("/v3/auth/role/grant", {"name": "election", "perm": {"permType": "READWRITE", "key": b64(prefix),
                                                                "range_end": b64(bytes(end))}})
    m.post("/v3/auth/user/add", {"name": user, "password": password})
    m.post("/v3/auth/user/grant", {"user": user, "role": "election"})
    m.post("/v3/auth/enable", {})
    for member in cluster.members:
        member.auth = ("root", root_pw)
