"""Metadata wire codec (66/WAKU2-METADATA; waku-v2.md §12).  Pure: bytes in, values out.

Encoding writes ``cluster_id`` always (nwaku disconnects a peer whose answer lacks it), the shards
unpacked in field 2 (the only form js-waku reads) and packed in field 3 (the form go-waku reads):
``cluster_id=0, shards=[0,1,7]`` -> ``08001000100110071a03000107``, byte for byte what nwaku
writes.  Decoding follows nwaku's order: field 3 if present, else field 2 (the protobuf parser
accepts either packing for both fields).
"""

from __future__ import annotations

from dataclasses import dataclass

from v2.codec import optional, parse, set_present
from v2.errors import V2DecodeError
from v2.metadata.proto import metadata_pb2

__all__ = ["MAX_METADATA_SIZE", "Metadata", "MetadataDecodeError", "decode_metadata", "encode_metadata"]

MAX_METADATA_SIZE = 1024  # nwaku RpcResponseMaxBytes: it reads no more than this, either way


class MetadataDecodeError(V2DecodeError):
    pass


@dataclass(frozen=True, slots=True)
class Metadata:
    cluster_id: int | None  # None: the peer did not say (nwaku treats that as a mismatch)
    shards: tuple[int, ...] = ()


def encode_metadata(md: Metadata) -> bytes:
    pb = metadata_pb2.WakuMetadata()
    set_present(pb, cluster_id=md.cluster_id)
    pb.shards.extend(md.shards)
    pb.shards_packed.extend(md.shards)
    data = pb.SerializeToString()
    if len(data) > MAX_METADATA_SIZE:
        raise ValueError(f"metadata of {len(data)} bytes exceeds the {MAX_METADATA_SIZE}-byte limit peers read")
    return data


def decode_metadata(data: bytes) -> Metadata:
    if len(data) > MAX_METADATA_SIZE:
        raise MetadataDecodeError(f"metadata of {len(data)} bytes exceeds {MAX_METADATA_SIZE}")
    pb = parse(metadata_pb2.WakuMetadata(), data, MetadataDecodeError, "undecodable metadata")
    cluster = optional(pb, "cluster_id")
    if cluster is not None and cluster > 0xFFFF:
        raise MetadataDecodeError(f"cluster id {cluster} out of range")
    shards = tuple(pb.shards_packed) if len(pb.shards_packed) else tuple(pb.shards)
    if any(s > 0xFFFF for s in shards):
        raise MetadataDecodeError("shard index out of range")
    return Metadata(cluster, shards)
