"""The fuzz targets: one harness module per decoder group, each target a ``run(data)`` that feeds the
bytes to the decoders and lets only the package's error root through.

The contract every decoder keeps (docs/reliability.md): bytes from a peer either decode or raise the
package's error root (:class:`v1.errors.V1Error`, :class:`v2.errors.V2Error`); never another
exception, never a hang, never unbounded memory.  ``tests/fuzz/run.py`` drives the targets with
atheris (coverage-guided libFuzzer); :data:`GROUPS` names them without importing the harness modules,
so listing targets never imports the instrumented decoders.
"""

from __future__ import annotations

import contextlib
import importlib
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from tests.helpers.vectors import load_vectors

__all__ = ["GROUPS", "NAMES", "Target", "combine", "each", "hex_strings", "instrumented", "load", "module_of",
           "one_input", "text_strings"]


T = TypeVar("T", bytes, str)


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    run: Callable[[bytes], object]
    error: type[Exception]  # the package's error root: the only exception ``run`` may raise
    seeds: Callable[[], list[bytes]]  # a few valid and near-valid inputs, built at run time
    max_len: int = 4096  # libFuzzer -max_len: inputs longer than any field the decoder bounds
    in_trio: bool = False  # run the fuzzer inside a trio task (the decoder is async)


# module -> its targets, in the order `make fuzz` runs them (the slow public-key ones first).
GROUPS: dict[str, tuple[str, ...]] = {
    "tests.fuzz.rlpx": ("rlpx_auth", "rlpx_ack", "rlpx_frame", "p2p"),
    "tests.fuzz.waku_v1": ("waku_packets", "waku_envelope"),
    "tests.fuzz.enr": ("enr", "dns"),
    "tests.fuzz.discv5": ("discv5",),
    "tests.fuzz.protobuf": ("message", "topics", "store", "filter", "lightpush", "peer_exchange", "metadata",
                            "rpc_framing"),
}
NAMES: tuple[str, ...] = tuple(n for names in GROUPS.values() for n in names)


_instrument = False


def instrumented() -> contextlib.AbstractContextManager[object]:
    """What a harness module wraps its imports of our packages in: atheris's coverage instrumentation
    of ``v1`` and ``v2`` only (not rlp, protobuf, ...) in a fuzzing process, nothing elsewhere."""
    if not _instrument:
        return contextlib.nullcontext()
    import atheris

    return atheris.instrument_imports(include=["v1", "v2"])


def module_of(name: str) -> str:
    for module, names in GROUPS.items():
        if name in names:
            return module
    raise KeyError(f"no fuzz target {name!r}; known: {', '.join(NAMES)}")


def load(name: str, *, instrument: bool = False) -> Target:
    """Import the harness module of ``name``; ``instrument`` (before anything imported ``v1``/``v2``)
    has atheris instrument our decoders for coverage."""
    global _instrument
    _instrument = instrument
    if "+" in name:
        return combine([load(n, instrument=instrument) for n in name.split("+")])
    targets: dict[str, Target] = importlib.import_module(module_of(name)).TARGETS
    return targets[name]


def combine(members: Sequence[Target]) -> Target:
    """One target fuzzing several (``a+b``: the CI smoke groups small ones): the first input byte
    picks the member, the rest is its input; each member's own error root is the accepted answer."""

    def run(data: bytes) -> None:
        if data:
            one_input(members[data[0] % len(members)], data[1:])

    def seeds() -> list[bytes]:
        return [bytes([i]) + s for i, t in enumerate(members) for s in t.seeds()]

    if any(t.in_trio for t in members):
        raise ValueError("a trio-hosted target runs alone")
    return Target("+".join(t.name for t in members), run, members[0].error, seeds,
                  max(t.max_len for t in members) + 1)


def each(error: type[Exception], data: T, *decoders: Callable[[T], object]) -> None:
    """Give ``data`` to every decoder (one refusing it does not spare the others)."""
    for decode in decoders:
        try:
            decode(data)
        except error:
            pass


def one_input(target: Target, data: bytes) -> None:
    """Run one input; the error root is an accepted answer, anything else propagates (a finding)."""
    try:
        target.run(data)
    except target.error:
        pass


def _walk(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)
    elif isinstance(node, str):
        yield node


_HEX = re.compile(r"(?:0x)?((?:[0-9a-fA-F]{2}){4,})")


def hex_strings(vector_file: str, key: str | None = None) -> list[bytes]:
    """Every hex string of a committed vector file (under the fields named ``key`` if given)."""
    data = load_vectors(vector_file)
    if key is not None:
        found: list[Any] = []

        def pick(node: Any) -> None:
            if isinstance(node, dict):
                for k, v in node.items():
                    found.append(v) if k == key else pick(v)
            elif isinstance(node, list):
                for v in node:
                    pick(v)

        pick(data)
        data = found
    out = []
    for s in _walk(data):
        m = _HEX.fullmatch(s.strip())
        if m:
            out.append(bytes.fromhex(m.group(1)))
    return out


def text_strings(vector_file: str, prefix: str) -> list[str]:
    return [s for s in _walk(load_vectors(vector_file)) if s.startswith(prefix)]


