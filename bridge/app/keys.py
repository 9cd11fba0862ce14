"""Node key files: a secp256k1 private key as 64 hex characters, mode 0600.

One key type serves both networks: v1 (devp2p node id = the uncompressed public key) and v2 (a
secp256k1 libp2p identity, which Waku ENRs require).  Keys are created atomically with O_EXCL so
two instances starting together cannot both write one.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from coincurve import PrivateKey

from bridge.errors import ConfigError

__all__ = ["describe_key", "generate_key_file", "load_or_create_key", "read_key_file"]


def _write_new(path: Path, key_hex: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(key_hex + "\n")
    except OSError as exc:  # a full disk: an empty key file left behind would fail every later start
        path.unlink(missing_ok=True)
        raise ConfigError(str(path), f"cannot write a new node key: {exc.strerror or exc}") from None


def generate_key_file(path: Path, *, overwrite: bool = False) -> str:
    """Create ``path`` holding a fresh key; refuses to replace an existing file unless asked."""
    key_hex = secrets.token_bytes(32).hex()
    PrivateKey(bytes.fromhex(key_hex))  # rejects the (astronomically unlikely) invalid scalar
    if overwrite and path.exists():
        path.unlink()
    _write_new(path, key_hex)
    return key_hex


def read_key_file(path: Path) -> str:
    text = path.read_text().strip().removeprefix("0x")
    try:
        PrivateKey(bytes.fromhex(text))
    except ValueError:
        raise ConfigError(str(path), "not a 64-hex-character secp256k1 private key") from None
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ConfigError(str(path), f"key file is readable by others (mode {mode:o}); chmod 600 it")
    return text.lower()


def load_or_create_key(path: Path) -> str:
    """The persistent node key of a data dir: read it, or create it on first start."""
    try:
        return read_key_file(path)
    except FileNotFoundError:
        try:
            return generate_key_file(path)
        except FileExistsError:  # another process created it between our read and write
            return read_key_file(path)


def _b58(data: bytes) -> str:
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = alphabet[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def describe_key(key_hex: str, *, host: str = "127.0.0.1", v1_port: int = 30303,
                 v2_port: int = 60000) -> dict[str, str]:
    """The identities a key gives: v1 enode URL and v2 libp2p peer id / multiaddr."""
    priv = PrivateKey(bytes.fromhex(key_hex))
    pub64 = priv.public_key.format(compressed=False)[1:]
    # libp2p peer id of a secp256k1 key: identity multihash (the encoded key is < 42 bytes) of the
    # protobuf PublicKey{Type: Secp256k1 (2), Data: 33-byte compressed key} (libp2p peer-ids spec).
    pubkey_pb = b"\x08\x02\x12\x21" + priv.public_key.format(compressed=True)
    peer_id = _b58(b"\x00" + bytes([len(pubkey_pb)]) + pubkey_pb)
    return {
        "enode": f"enode://{pub64.hex()}@{host}:{v1_port}",
        "peer_id": peer_id,
        "multiaddr": f"/ip4/{host}/tcp/{v2_port}/p2p/{peer_id}",
    }
