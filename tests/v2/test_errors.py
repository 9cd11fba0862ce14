"""One decode-error base for the v2 side: a shell catches V2DecodeError for any malformed input."""

from __future__ import annotations

from v2.codec import VarintError
from v2.core.message import MessageDecodeError
from v2.errors import V2DecodeError, V2Error
from v2.filter.rpc_codec import FilterDecodeError
from v2.lightpush.rpc_codec import LightpushDecodeError
from v2.metadata.rpc_codec import MetadataDecodeError
from v2.peer_exchange.rpc_codec import PxCodecError
from v2.store.common import StoreError
from v2.store.rpc_codec import StoreDecodeError
from v2.stream import FrameTooLarge


def test_every_v2_decode_error_shares_one_base() -> None:
    for cls in (VarintError, MessageDecodeError, FilterDecodeError, LightpushDecodeError, MetadataDecodeError,
                PxCodecError, StoreDecodeError, FrameTooLarge):
        assert issubclass(cls, V2DecodeError) and issubclass(cls, V2Error), cls
    assert issubclass(StoreDecodeError, StoreError)  # still a store error for the store's callers
