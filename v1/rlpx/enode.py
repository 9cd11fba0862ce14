"""``enode://<128 hex pubkey>@host:port[?discport=N]`` URLs (devp2p enode-url-format)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from v1.errors import V1Error

__all__ = ["Enode", "EnodeError"]

_RE = re.compile(r"^enode://([0-9a-fA-F]{128})@(\[[0-9a-fA-F:.]+\]|[^:@/?\[\]]+):(\d{1,5})(\?discport=\d{1,5})?$")


class EnodeError(V1Error):
    pass


@dataclass(frozen=True, slots=True)
class Enode:
    pubkey: bytes
    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> Enode:
        m = _RE.match(url.strip())
        if not m:
            raise EnodeError(f"not an enode URL: {url!r}")
        port = int(m.group(3))
        if not 0 < port < 65536:
            raise EnodeError(f"enode port out of range: {port}")
        return cls(bytes.fromhex(m.group(1)), m.group(2).strip("[]"), port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"enode://{self.pubkey.hex()}@{host}:{self.port}"
