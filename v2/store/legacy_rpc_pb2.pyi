# mypy: disable-error-code="type-arg"
# (the shape `protoc --pyi_out` writes for legacy_rpc.proto; see its header)
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Index(_message.Message):
    __slots__ = ["digest", "pubsub_topic", "receiver_time", "sender_time"]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    PUBSUB_TOPIC_FIELD_NUMBER: _ClassVar[int]
    RECEIVER_TIME_FIELD_NUMBER: _ClassVar[int]
    SENDER_TIME_FIELD_NUMBER: _ClassVar[int]
    digest: bytes
    pubsub_topic: str
    receiver_time: int
    sender_time: int
    def __init__(self, digest: _Optional[bytes] = ..., receiver_time: _Optional[int] = ..., sender_time: _Optional[int] = ..., pubsub_topic: _Optional[str] = ...) -> None: ...

class PagingInfo(_message.Message):
    __slots__ = ["cursor", "direction", "page_size"]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    cursor: Index
    direction: int
    page_size: int
    def __init__(self, page_size: _Optional[int] = ..., cursor: _Optional[_Union[Index, _Mapping]] = ..., direction: _Optional[int] = ...) -> None: ...

class HistoryContentFilter(_message.Message):
    __slots__ = ["content_topic"]
    CONTENT_TOPIC_FIELD_NUMBER: _ClassVar[int]
    content_topic: str
    def __init__(self, content_topic: _Optional[str] = ...) -> None: ...

class HistoryQuery(_message.Message):
    __slots__ = ["content_filters", "end_time", "paging_info", "pubsub_topic", "start_time"]
    CONTENT_FILTERS_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    PAGING_INFO_FIELD_NUMBER: _ClassVar[int]
    PUBSUB_TOPIC_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    content_filters: _containers.RepeatedCompositeFieldContainer[HistoryContentFilter]
    end_time: int
    paging_info: PagingInfo
    pubsub_topic: str
    start_time: int
    def __init__(self, pubsub_topic: _Optional[str] = ..., content_filters: _Optional[_Iterable[_Union[HistoryContentFilter, _Mapping]]] = ..., paging_info: _Optional[_Union[PagingInfo, _Mapping]] = ..., start_time: _Optional[int] = ..., end_time: _Optional[int] = ...) -> None: ...

class HistoryResponse(_message.Message):
    __slots__ = ["error", "messages", "paging_info"]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    PAGING_INFO_FIELD_NUMBER: _ClassVar[int]
    error: int
    messages: _containers.RepeatedScalarFieldContainer[bytes]
    paging_info: PagingInfo
    def __init__(self, messages: _Optional[_Iterable[bytes]] = ..., paging_info: _Optional[_Union[PagingInfo, _Mapping]] = ..., error: _Optional[int] = ...) -> None: ...

class HistoryRPC(_message.Message):
    __slots__ = ["query", "request_id", "response"]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    query: HistoryQuery
    request_id: str
    response: HistoryResponse
    def __init__(self, request_id: _Optional[str] = ..., query: _Optional[_Union[HistoryQuery, _Mapping]] = ..., response: _Optional[_Union[HistoryResponse, _Mapping]] = ...) -> None: ...
