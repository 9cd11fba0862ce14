"""The etcd elector against a real etcd that serves https only, requires client certificates and
has authentication on (what a multi-host production etcd looks like), and the bridge process
configured for it.  Certificates are made per test run (tests/helpers/etcd.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
from prometheus_client import CollectorRegistry

from bridge.app.config import ConfigErrors, load_config
from failover.errors import FailoverSetupError
from failover.etcd.elector import EtcdElector
from failover.etcd.security import EtcdSecurity
from failover.etcd.wire import DEFAULT_PREFIX
from failover.lease import LeaseTiming
from failover.metrics import FailoverMetrics
from tests.helpers.bridgeproc import BridgeProc
from tests.helpers.candidates import Candidate
from tests.helpers.etcd import EtcdCluster, TlsFiles, enable_auth, etcd_available, make_tls_files
from tests.helpers.metrics import metric_value
from tests.helpers.wait import wait_until

pytestmark = pytest.mark.skipif(not etcd_available(), reason="needs the etcd binary (scripts/setup.sh)")

FAST = LeaseTiming(ttl=3, renew_interval=0.5, rpc_timeout=0.5, safety=0.5)
USER = "bridge"


@dataclass
class SecureEtcd:
    cluster: EtcdCluster
    tls: TlsFiles
    password: str

    def security(self, *, password: str | None = None, ca: Path | None = None,
                 client_cert: bool = True) -> EtcdSecurity:
        return EtcdSecurity(ca or self.tls.ca, self.tls.client_cert if client_cert else None,
                            self.tls.client_key if client_cert else None, USER, password or self.password)


@pytest.fixture(scope="module")
def secure_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureEtcd]:
    tmp = tmp_path_factory.mktemp("etcd-tls")
    tls = make_tls_files(tmp / "pki")
    cluster = EtcdCluster.start(tmp, 1, tls=tls)
    password = os.urandom(9).hex()
    try:
        enable_auth(cluster, USER, password, DEFAULT_PREFIX.encode())
        yield SecureEtcd(cluster, tls, password)
    finally:
        cluster.close()


def errors(m: FailoverMetrics, kind: str) -> float:
    return metric_value(m.errors, kind)


async def test_election_over_tls_with_client_certificates_and_auth(secure_etcd: SecureEtcd) -> None:
    eps, name = secure_etcd.cluster.endpoints, f"tls{trio.current_time():.0f}a"
    a = EtcdElector(eps, "A", name=name, timing=FAST, security=secure_etcd.security())
    b = EtcdElector(eps, "B", name=name, timing=FAST, security=secure_etcd.security())
    assert a.client.base.startswith("https://")
    async with trio.open_nursery() as n:
        await n.start(a.run)
        with trio.fail_after(5):
            term = await a.campaign()
        await n.start(b.run)
        await trio.sleep(1.5)  # keepalives and the standby's watch, all authenticated
        assert a.is_leader() and not b.is_leader() and b.leader == "A"
        assert await a.fenced(term.token)
        await a.resign()
        with trio.fail_after(3):
            t2 = await b.campaign()
        assert t2.token > term.token and not await a.fenced(term.token) and await b.fenced(t2.token)
        n.cancel_scope.cancel()


async def test_an_expired_token_is_renewed_by_logging_in_again(tmp_path: Path) -> None:
    """etcd's simple tokens expire after ``--auth-token-ttl`` s without an authorised request (300 s by
    default; 1 s here).  An active that only sends keepalives (which etcd does not authorise) holds
    an expired token when it next writes: the write is refused, it logs in again and retries."""
    tls = make_tls_files(tmp_path / "pki")
    cluster = EtcdCluster.start(tmp_path, 1, tls=tls, extra_args=("--auth-token-ttl", "1"))
    try:
        password = os.urandom(9).hex()
        enable_auth(cluster, USER, password, DEFAULT_PREFIX.encode())
        sec = EtcdSecurity(tls.ca, tls.client_cert, tls.client_key, USER, password)
        m = FailoverMetrics(CollectorRegistry(), "A")
        a = EtcdElector(cluster.endpoints, "A", name="ttl", timing=FAST, security=sec, metrics=m)
        async with trio.open_nursery() as n:
            await n.start(a.run)
            with trio.fail_after(5):
                term = await a.campaign()
            old_token = a.client._tokens[a.client.base]
            await trio.sleep(2.5)  # > the token TTL, while keepalives go on
            assert a.is_leader() and await a.fenced(term.token)
            assert a.client._tokens[a.client.base] != old_token
            n.cancel_scope.cancel()
        assert errors(m, "auth") == 0  # a refused token is not a refused login
    finally:
        cluster.close()


async def test_a_wrong_password_is_refused_and_counted(secure_etcd: SecureEtcd,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    m = FailoverMetrics(CollectorRegistry(), "X")
    e = EtcdElector(secure_etcd.cluster.endpoints, "X", name="tls-badpw", timing=FAST,
                    security=secure_etcd.security(password="not-the-password"), metrics=m)
    async with trio.open_nursery() as n:
        await n.start(e.run)
        await wait_until(lambda: errors(m, "auth") >= 2, 10, "counted auth failures")
        assert not e.is_leader() and e.fencing_token is None
        n.cancel_scope.cancel()
    assert "authentication as 'bridge' refused" in caplog.text


@pytest.mark.parametrize("case", ["untrusted server", "no client certificate"])
async def test_tls_failures_mean_no_leader_and_are_counted(secure_etcd: SecureEtcd, tmp_path: Path,
                                                           case: str) -> None:
    other_ca = make_tls_files(tmp_path / "other").ca
    sec = (secure_etcd.security(ca=other_ca) if case == "untrusted server"
           else secure_etcd.security(client_cert=False))
    m = FailoverMetrics(CollectorRegistry(), "X")
    e = EtcdElector(secure_etcd.cluster.endpoints, "X", name="tls-bad", timing=FAST, security=sec, metrics=m)
    async with trio.open_nursery() as n:
        await n.start(e.run)
        await wait_until(lambda: errors(m, "unavailable") >= 2, 10, "counted TLS failures")
        assert not e.is_leader()
        n.cancel_scope.cancel()


def test_security_settings_are_checked_at_load(tmp_path: Path, secure_etcd: SecureEtcd) -> None:
    t = secure_etcd.tls
    url = secure_etcd.cluster.url

    def keys(text: str, env: dict[str, str] | None = None) -> list[str]:
        p = tmp_path / "c.yaml"
        p.write_text(text)
        try:
            load_config(p, {}, env=env or {})
        except ConfigErrors as exc:
            return [e.key for e in exc.errors]
        return []

    base = f"failover:\n  backend: {url}\n"
    assert keys(base + f"  etcd_cacert: {t.ca}\n  etcd_cert: {t.client_cert}\n  etcd_key: {t.client_key}\n"
                       f"  etcd_user: {USER}\n", {"WAKU_BRIDGE_FAILOVER_ETCD_PASSWORD": "x"}) == []
    assert keys(base + f"  etcd_cacert: {tmp_path}/missing.pem\n") == ["failover.etcd_cacert"]
    assert keys(base + f"  etcd_cert: {t.client_cert}\n") == ["failover.etcd_cert"]  # no key
    assert keys(base + f"  etcd_cacert: {t.client_key}\n") == ["failover.etcd_cacert"]  # not a CA bundle
    assert keys(base + f"  etcd_user: {USER}\n") == ["failover.etcd_password"]
    assert keys(f"failover:\n  backend: sqlite:{tmp_path}/l.db\n  etcd_user: {USER}\n") == ["failover.etcd_user"]
    pw = tmp_path / "pw"
    pw.write_text("from-a-file\n")
    p = tmp_path / "ok.yaml"
    p.write_text(base + f"  etcd_cacert: {t.ca}\n  etcd_user: {USER}\n  etcd_password_file: {pw}\n")
    cfg = load_config(p, {}, env={})
    assert cfg.failover.etcd_password == "from-a-file" and "from-a-file" not in repr(cfg)
    sec = cfg.failover.etcd_security()
    assert sec is not None and sec.tls and sec.user == USER
    with pytest.raises(FailoverSetupError, match=r"^cert_file: "):
        EtcdSecurity(cert_file=t.client_cert).check()


async def test_the_bridge_becomes_active_on_a_secured_etcd(secure_etcd: SecureEtcd, tmp_path: Path) -> None:
    t = secure_etcd.tls
    pw = tmp_path / "etcd-password"
    pw.write_text(secure_etcd.password)
    pw.chmod(0o600)
    b = BridgeProc("A", tmp_path, [], [], failover=f"{secure_etcd.cluster.url}/tls-bridge", failover_ttl=3.0,
                   extra=["--failover-etcd-cacert", str(t.ca), "--failover-etcd-cert", str(t.client_cert),
                          "--failover-etcd-key", str(t.client_key), "--failover-etcd-user", USER,
                          "--failover-etcd-password-file", str(pw)])
    try:
        await trio.to_thread.run_sync(b.start)
        st = await trio.to_thread.run_sync(b.wait_status, lambda s: s["role"] == "active", 20.0)
        assert st["leader"] == "A" and st["fencing_token"] > 0
        assert secure_etcd.password not in b.log_tail(100_000)
    finally:
        await trio.to_thread.run_sync(b.kill, 15)


async def test_the_candidate_cli_joins_a_secured_election(secure_etcd: SecureEtcd,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """``python -m failover`` (who is active?) works against the same etcd as the bridges."""
    t = secure_etcd.tls
    monkeypatch.setenv("WAKU_BRIDGE_FAILOVER_ETCD_PASSWORD", secure_etcd.password)
    c = Candidate(f"{secure_etcd.cluster.url}/tls-cli", "C", extra=(
        "--cacert", str(t.ca), "--cert", str(t.client_cert), "--key", str(t.client_key), "--user", USER))
    async with trio.open_nursery() as n:
        n.start_soon(c.pump)
        try:
            await wait_until(lambda: c.leader, 15, "the candidate leading")
            assert c.token is not None and c.token > 0
        finally:
            c.proc.terminate()
            await trio.to_thread.run_sync(c.proc.wait)
        n.cancel_scope.cancel()
