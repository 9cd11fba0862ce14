"""A separate process that archives messages one commit at a time, then waits to be killed.

``python -m tests.helpers.archive_writer DB_URL COUNT``: prints ``inserted COUNT`` once every
insert has returned, then sleeps until SIGKILL (the crash test_archive.py checks survival of).
"""

from __future__ import annotations

import sys

import trio

from v2.core.message import WakuMessage, message_hash
from v2.store.archive import Archive

__all__ = ["PUBSUB", "make_messages"]

PUBSUB = "/waku/2/rs/0/0"


def make_messages(n: int) -> list[WakuMessage]:
    base = 1_700_000_000 * 10**9
    return [WakuMessage(f"kill-{i}".encode(), "/test/1/kill/proto", timestamp=base + i * 1000) for i in range(n)]


async def main(url: str, n: int) -> None:
    archive = Archive(url)
    await archive.open()
    for m in make_messages(n):
        await archive.insert(PUBSUB, message_hash(PUBSUB, m), m, m.encode())
    print(f"inserted {n}", flush=True)
    await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main, sys.argv[1], int(sys.argv[2]))
