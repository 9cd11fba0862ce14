"""Secure WebSocket (``wss``) for browser clients: the server's TLS context from the operator's
PEM files, and a count of the TLS handshakes that fail on it.

A page served over https may only open ``wss://`` (the browser's mixed-content rule), so js-waku in
a browser dials only ``/wss`` and ``/tls/ws`` addresses (@libp2p/websockets ``filters.wss``, the
@waku/sdk default outside tests).  As in nwaku (``--websocket-secure-support`` with
``--websocket-secure-key-path``/``--websocket-secure-cert-path``; waku/node/net_config.nim
``wsFlag``, waku/node/waku_switch.nim ``withWssTransport``), the websocket port then serves TLS
instead of plain ws and the node announces ``/ip4/<ip>/tcp/<port>/wss``.  noise still runs inside
the TLS tunnel: TLS only satisfies the browser, the libp2p peer identity comes from noise.

Only the stdlib ``ssl`` module here: the config loader checks the files with
:func:`server_context` at start, before any libp2p import.
"""

from __future__ import annotations

import enum
import logging
import ssl
from collections.abc import Callable
from pathlib import Path

from v2.errors import V2Error

__all__ = ["HandshakeFailure", "WssConfigError", "classify", "server_context"]

log = logging.getLogger(__name__)


class WssConfigError(V2Error):
    """The key or certificate cannot serve wss; ``setting`` names which (``key``, ``cert`` or both)."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting
        self.message = message


class HandshakeFailure(enum.StrEnum):
    """Why a client's TLS handshake failed: the ``reason`` label of the failure counter."""

    # The client closed mid-handshake: a scanner, a client that gave up, and also a client that
    # rejected our certificate (expired, wrong name, unknown CA): Node and browsers hang up inside
    # the TLS 1.3 handshake without an alert.  A rise after a certificate change points there.
    EOF = "eof"
    CLIENT_ALERT = "client_alert"  # the client sent an alert, e.g. it rejected our certificate
    PROTOCOL = "protocol"  # not TLS or not TLS we speak: plain ws/http on the wss port, junk, old versions


def classify(exc: ssl.SSLError) -> HandshakeFailure:
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return HandshakeFailure.EOF
    if "ALERT" in str(getattr(exc, "reason", None) or ""):
        return HandshakeFailure.CLIENT_ALERT
    return HandshakeFailure.PROTOCOL


class _CountingSSLObject(ssl.SSLObject):
    """Reports failed server handshakes to its context's ``on_handshake_failure``.

    trio's SSLStream drives ``do_handshake`` on the object ``SSLContext.wrap_bio`` makes (of the
    context's ``sslobject_class``) and turns an ``ssl.SSLError`` into ``trio.BrokenResourceError``,
    which trio-websocket treats as a closed connection: nothing above this object sees why.
    """

    def do_handshake(self) -> None:
        try:
            super().do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except ssl.SSLError as exc:
            context = self.context
            report = context.on_handshake_failure if isinstance(context, _ServerContext) else None
            if report is not None:
                try:
                    report(classify(exc))
                except Exception:  # a broken counter must not change how the handshake fails
                    log.exception("wss: handshake failure callback")
            log.debug("wss: TLS handshake failed: %s", exc)
            raise


class _ServerContext(ssl.SSLContext):
    sslobject_class = _CountingSSLObject
    on_handshake_failure: Callable[[HandshakeFailure], None] | None = None


def server_context(cert_path: str | Path, key_path: str | Path,
                   on_handshake_failure: Callable[[HandshakeFailure], None] | None = None) -> ssl.SSLContext:
    """The TLS server context of the wss listener: ``cert_path`` is the PEM certificate chain
    (leaf first, as a CA issues it: Let's Encrypt's ``fullchain.pem``), ``key_path`` its PEM key.

    Raises :class:`WssConfigError` for an unreadable file, a file that is not PEM, or a key that
    does not belong to the certificate, so a bad pair fails at start, not at the first browser.
    """
    for setting, path in (("cert", cert_path), ("key", key_path)):
        try:
            text = Path(path).read_bytes()
        except OSError as exc:
            raise WssConfigError(setting, f"cannot read {path}: {exc.strerror}") from None
        if b"-----BEGIN " not in text:
            raise WssConfigError(setting, f"{path} is not a PEM file")
    ctx = _ServerContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(cert_path), str(key_path))
    except ssl.SSLError as exc:
        reason = str(getattr(exc, "reason", None) or exc)
        if "KEY_VALUES_MISMATCH" in reason:
            raise WssConfigError("key", f"the key {key_path} does not belong to the certificate {cert_path}") from None
        raise WssConfigError("cert", f"cannot load the certificate {cert_path} with the key {key_path}: "
                                     f"{reason}") from None
    ctx.on_handshake_failure = on_handshake_failure
    return ctx
