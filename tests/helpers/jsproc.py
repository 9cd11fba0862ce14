"""Drive a third-party peer (js-waku, @ethereumjs/devp2p, status-go, go-waku) from a trio test.

Protocol between the test and a harness program (a script under ``tests/interop/js/<name>/`` or a
Go program built from ``tests/interop/go/<module>/``): the program
reads one JSON object per line on stdin (commands, each with an ``id``) and writes one JSON object
per line on stdout: replies ``{"id": ..., "ok": true|false, ...}`` and events
``{"event": "<type>", ...}``.  stderr is captured for failure messages.  The harness folders are
installed by ``make setup`` (npm ci; ``go build`` for the Go programs); a missing ``node_modules``
or binary is an error, not a skip.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import trio

__all__ = ["GO_DIR", "JS_DIR", "GoPeer", "JsPeer", "JsPeerError"]

JS_DIR = Path(__file__).resolve().parents[1] / "interop" / "js"
GO_DIR = Path(__file__).resolve().parents[1] / "interop" / "go"


class JsPeerError(AssertionError):
    pass


class JsPeer:
    """A running ``node <script>`` with a JSON-lines command channel."""

    # stdout lines containing any of these are dropped unparsed (a load run's per-message events)
    drop_lines: tuple[bytes, ...] = ()

    def __init__(self, proc: trio.Process, name: str) -> None:
        self._proc = proc
        self.name = name
        self._ids = itertools.count(1)
        self._replies: dict[int, dict[str, Any]] = {}
        self._events: list[dict[str, Any]] = []
        self._changed = trio.Event()
        self._stderr: list[str] = []
        self._closed = False
        self._send_lock = trio.Lock()  # concurrent requests (a long one and polls) must not interleave writes

    @classmethod
    async def start(
        cls,
        nursery: trio.Nursery,
        folder: str,
        script: str,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        node_args: Sequence[str] = (),
        prefix: Sequence[str] = (),
    ) -> JsPeer:
        """``prefix``: argv put before ``node`` (``ip netns exec NS``: run it in a network namespace)."""
        node = shutil.which("node")
        if node is None:
            raise JsPeerError("node is not installed; run `make setup`")
        cwd = JS_DIR / folder
        if not (cwd / "node_modules").is_dir():
            raise JsPeerError(f"{cwd}/node_modules missing; run `make setup`")
        return await cls.spawn(nursery, [*prefix, node, *node_args, script, *args], cwd, f"{folder}/{script}", env)

    @classmethod
    async def spawn(
        cls,
        nursery: trio.Nursery,
        argv: Sequence[str],
        cwd: Path,
        name: str,
        env: Mapping[str, str] | None = None,
    ) -> JsPeer:
        full_env = dict(os.environ)
        full_env.update(env or {})
        proc = await trio.lowlevel.open_process(
            list(argv), cwd=cwd, stdin=-1, stdout=-1, stderr=-1, env=full_env
        )
        peer = cls(proc, name)
        nursery.start_soon(peer._read_stdout)
        nursery.start_soon(peer._read_stderr)
        return peer

    async def _read_stdout(self) -> None:
        assert self._proc.stdout is not None
        buf = b""
        async for chunk in self._proc.stdout:
            lines = (buf + chunk).split(b"\n")
            buf = lines.pop()
            for line in lines:
                if not line.strip() or any(n in line for n in self.drop_lines):
                    continue
                try:
                    obj = json.loads(line)
                except ValueError:
                    self._stderr.append(f"[stdout] {line.decode(errors='replace')}")
                    continue
                if "id" in obj and "event" not in obj:
                    self._replies[int(obj["id"])] = obj
                else:
                    self._events.append(obj)
            self._changed.set()
            self._changed = trio.Event()
        self._closed = True
        self._changed.set()

    async def _read_stderr(self) -> None:
        assert self._proc.stderr is not None
        async for chunk in self._proc.stderr:
            self._stderr.append(chunk.decode(errors="replace"))

    @property
    def pid(self) -> int:
        """The program's process id (a benchmark reads its CPU from /proc)."""
        return int(self._proc.pid)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)[-8000:]

    @property
    def events(self) -> list[dict[str, Any]]:
        return list(self._events)

    async def request(self, cmd: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        """Send a command and wait for its reply; a reply with ``ok: false`` raises."""
        rid = next(self._ids)
        assert self._proc.stdin is not None
        line = json.dumps({"id": rid, "cmd": cmd, **params}) + "\n"
        async with self._send_lock:
            await self._proc.stdin.send_all(line.encode())
        with trio.fail_after(timeout):
            while rid not in self._replies:
                if self._closed:
                    raise JsPeerError(f"{self.name} exited during {cmd!r}:\n{self.stderr}")
                await self._changed.wait()
        reply = self._replies.pop(rid)
        if not reply.get("ok", False):
            raise JsPeerError(f"{self.name} {cmd!r} failed: {reply.get('error')}\n{self.stderr}")
        return reply

    async def wait_event(
        self, event: str, timeout: float = 30.0, count: int = 1, **match: Any
    ) -> list[dict[str, Any]]:
        """Wait until ``count`` events of type ``event`` whose fields equal ``match`` arrived."""

        def found() -> list[dict[str, Any]]:
            return [
                e for e in self._events
                if e.get("event") == event and all(e.get(k) == v for k, v in match.items())
            ]

        with trio.fail_after(timeout):
            while len(found()) < count:
                if self._closed:
                    raise JsPeerError(f"{self.name} exited waiting for {event!r}:\n{self.stderr}")
                await self._changed.wait()
        return found()

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            if self._proc.returncode is None:
                try:
                    assert self._proc.stdin is not None
                    await self._proc.stdin.aclose()
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass
                with trio.move_on_after(5):
                    await self._proc.wait()
                if self._proc.returncode is None:
                    self._proc.kill()
                    await self._proc.wait()


class GoPeer(JsPeer):
    """A Go harness program of ``tests/interop/go/<module>/``, built by ``make setup``."""

    @classmethod
    async def start_go(
        cls,
        nursery: trio.Nursery,
        module: str,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> JsPeer:
        binary = GO_DIR / module / "bin" / module
        if not binary.is_file():
            raise JsPeerError(f"{binary} missing; run `make setup` (it builds the Go peers)")
        return await cls.spawn(nursery, [str(binary), *args], GO_DIR / module, f"go/{module}", env)
