"""Ask a connected peer for its metadata (we are the dialer of the exchange; waku-v2.md §12)."""

from __future__ import annotations

import logging

from v2.host import DialError, Host
from v2.metadata.metrics import MetadataMetrics
from v2.metadata.rpc_codec import MAX_METADATA_SIZE, Metadata, MetadataDecodeError, decode_metadata, encode_metadata
from v2.protocol_ids import METADATA
from v2.rpc import request
from v2.stream import FrameTooLarge, StreamClosedError

__all__ = ["query_metadata"]

log = logging.getLogger(__name__)


async def query_metadata(host: Host, peer: str, local: Metadata, *, timeout: float = 10.0,
                         metrics: MetadataMetrics | None = None) -> Metadata | None:
    """Send ours, read theirs; None when the exchange failed (the reason is counted).

    js-waku's handler writes its answer before reading ours; nwaku reads ours first.  Writing
    first and then reading exactly one message works with both.
    """
    try:
        data = await request(host, peer, [METADATA], encode_metadata(local), MAX_METADATA_SIZE, timeout=timeout)
        if data is None:
            reason = "empty"
        else:
            md = decode_metadata(data)
            if metrics is not None:
                metrics.requests.labels("queried").inc()
            return md
    except DialError as exc:
        log.debug("metadata: no stream to %s: %s", peer, exc)
        reason = "dial"
    except (StreamClosedError, FrameTooLarge) as exc:  # StreamTimeout is a StreamClosedError
        log.debug("metadata from %s: %s", peer, exc)
        reason = "stream"
    except MetadataDecodeError as exc:
        log.debug("metadata from %s: %s", peer, exc)
        reason = "decode"
    if metrics is not None:
        metrics.errors.labels(f"query_{reason}").inc()
    return None
