"""The node's static secp256k1 key (its devp2p identity)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from coincurve import PrivateKey

from v1.rlpx.crypto import keccak256

__all__ = ["NodeKey"]


@dataclass(frozen=True, slots=True)
class NodeKey:
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        PrivateKey(self.secret)  # raises ValueError for an invalid scalar

    @classmethod
    def from_hex(cls, text: str) -> NodeKey:
        return cls(bytes.fromhex(text.strip().removeprefix("0x")))

    @classmethod
    def generate(cls) -> NodeKey:
        return cls(secrets.token_bytes(32))

    @property
    def pubkey(self) -> bytes:
        """64-byte uncompressed public key: the devp2p node id as it appears in enode URLs."""
        return PrivateKey(self.secret).public_key.format(compressed=False)[1:]

    @property
    def node_id(self) -> bytes:
        """keccak256(pubkey): the id discovery and geth's identity check use."""
        return keccak256(self.pubkey)
