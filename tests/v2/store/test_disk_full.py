"""The store service on a full disk (a real tmpfs): it starts without the archive it cannot open,
counts what it cannot archive, answers 503, and opens the archive by itself once space is back."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import trio
import trio.testing
from prometheus_client import CollectorRegistry

from tests.helpers.tmpfs import fill, tmpfs
from v2.core.message import WakuMessage, message_hash
from v2.store.archive import Archive
from v2.store.common import StatusCode
from v2.store.protocol import StoreService
from v2.store.rpc_codec import StoreQuery, encode_query

NOW = 1_700_000_000.0
PUBSUB = "/waku/2/rs/0/0"


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def until(pred: Callable[[], bool], real_s: float = 30.0) -> None:
    deadline = time.monotonic() + real_s
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        await trio.sleep(0.5)


async def test_an_archive_the_full_disk_refuses_is_opened_later(nursery: trio.Nursery, tmp_path: Path,
                                                                autojump_clock: trio.testing.MockClock) -> None:
    with tmpfs(tmp_path / "fs", "1m") as fs:
        fill(fs / "ballast")
        registry = CollectorRegistry()
        service = StoreService(Archive(f"sqlite://{fs / 'store.sqlite3'}"), registry, clock=lambda: NOW)
        await nursery.start(service.run)  # started, without its archive
        assert not service.archive.is_open and value(registry, "waku_archive_errors_total", type="open_failure") == 1
        msg = WakuMessage(b"m", "/test/1/disk/proto", timestamp=int(NOW * 1e9))
        data = msg.encode()
        await service.on_message(PUBSUB, msg, message_hash(PUBSUB, msg), data)  # relayed elsewhere, not archived
        assert value(registry, "waku_archive_errors_total", type="insert_failure") == 1 and not service.archive_ok
        resp = await service.answer(encode_query(StoreQuery(request_id="r", include_data=True)))
        assert resp.status_code == StatusCode.SERVICE_UNAVAILABLE
        # Virtual time runs ahead while an open is in its thread (the clock jumps when every task
        # waits): bound the waits in real time, not in sleeps.
        await until(lambda: value(registry, "waku_archive_errors_total", type="open_failure") >= 3)  # 1, 2, 4 s
        (fs / "ballast").unlink()
        await until(lambda: service.archive.is_open)
        await service.on_message(PUBSUB, msg, message_hash(PUBSUB, msg), data)
        assert service.archive.message_count == 1 and service.archive_ok
        nursery.cancel_scope.cancel()
