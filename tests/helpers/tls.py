"""Throwaway TLS material for tests: a CA, a server certificate for 127.0.0.1 and localhost, and a
client certificate, as PEM files in the test's tmp dir (made at test time, never committed).
Used by the etcd TLS tests (tests/helpers/etcd.py) and the wss tests."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.net import LOOPBACK

__all__ = ["TlsFiles", "make_tls_files"]


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        ctx.load_cert_chain(str(self.client_cert), str(self.client_key))
        return ctx


def make_tls_files(directory: Path, name: str = "test") -> TlsFiles:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def subject(cn: str) -> x509.Name:
        # No CN on the client: with auth on, etcd's gateway refuses a client certificate that has
        # one ("CommonName of client sending a request against gateway will be ignored").
        if not cn:
            return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "waku-bridge")])
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        path.chmod(0o600)
        return path

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(subject(f"{name} CA")).issuer_name(subject(f"{name} CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .sign(ca_key, hashes.SHA256()))

    def leaf(cn: str, usage: list[x509.ObjectIdentifier],
             san: bool) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        b = (x509.CertificateBuilder().subject_name(subject(cn)).issuer_name(ca.subject)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.ExtendedKeyUsage(usage), critical=False))
        if san:
            import ipaddress

            b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK)),
                                                             x509.DNSName("localhost")]), critical=False)
        return b.sign(ca_key, hashes.SHA256()), key

    # etcd's gateway dials its own gRPC port with the server certificate: it must be a client's too.
    server, server_key = leaf("etcd", [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], True)
    client, client_key = leaf("", [ExtendedKeyUsageOID.CLIENT_AUTH], False)
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    (directory / "server.pem").write_bytes(server.public_bytes(pem))
    (directory / "client.pem").write_bytes(client.public_bytes(pem))
    return TlsFiles(directory / "ca.pem", directory / "server.pem", write_key(server_key, directory / "server.key"),
                    directory / "client.pem", write_key(client_key, directory / "client.key"))
