"""TLS and authentication settings for the etcd gateway (etcdctl's ``--cacert/--cert/--key/--user``)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path

from failover.errors import FailoverSetupError

__all__ = ["EtcdSecurity"]


@dataclass(frozen=True, slots=True)
class EtcdSecurity:
    """TLS and authentication towards etcd.  TLS is on when a CA or a client certificate is given
    (``https://`` to every member); auth is on when ``user`` is given."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def of(cls, ca_file: str | None, cert_file: str | None, key_file: str | None, user: str | None,
           password: str | None) -> EtcdSecurity:
        """From the configuration's strings (None: not set)."""
        def path(p: str | None) -> Path | None:
            return None if p is None else Path(p)

        return cls(path(ca_file), path(cert_file), path(key_file), user, password)

    @property
    def tls(self) -> bool:
        return self.ca_file is not None or self.cert_file is not None

    def check(self) -> ssl.SSLContext | None:
        """Raise FailoverSetupError (naming the parameter) for an incomplete or unreadable setup; the
        TLS context to use (None without TLS)."""
        if (self.cert_file is None) != (self.key_file is None):
            raise FailoverSetupError("cert_file", "a client certificate needs both a certificate and a key file")
        if self.user is not None and not self.password:
            raise FailoverSetupError("password", f"etcd user {self.user!r} has no password")
        if self.password and self.user is None:
            raise FailoverSetupError("user", "an etcd password was given without a user")
        return self.ssl_context() if self.tls else None

    def ssl_context(self) -> ssl.SSLContext:
        try:
            ctx = ssl.create_default_context(cafile=None if self.ca_file is None else str(self.ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise FailoverSetupError("ca_file", f"cannot load CA file {self.ca_file}: {exc}") from None
        if self.cert_file is not None and self.key_file is not None:
            try:
                ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
            except (OSError, ssl.SSLError) as exc:
                raise FailoverSetupError("cert_file", f"cannot load client certificate {self.cert_file} "
                                  f"/ key {self.key_file}: {exc}") from None
        return ctx
