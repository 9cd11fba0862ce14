"""CI's fuzz smoke: every target of tests/fuzz/targets.py for 30 s under atheris, two at a time
(one process each, as `make fuzz`), failing on any crash, hang or out-of-memory.

At most 16 processes x 30 s / 2 cores: about 4 minutes (see :func:`smoke_units`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.fuzz.run import Result, run_campaign
from tests.fuzz.targets import NAMES

SECONDS = int(os.environ.get("WAKU_BRIDGE_FUZZ_SMOKE_S", "30"))
# At most 16 fuzzing processes of 30 s, two at a time (~4 minutes): the cheapest protobuf decoders
# share one process beyond that (the first input byte picks the decoder; see targets.combine).
MAX_UNITS = 16
_SMALL = ("metadata", "peer_exchange", "filter", "lightpush", "topics", "message")


def smoke_units(names: tuple[str, ...] = NAMES, max_units: int = MAX_UNITS) -> list[str]:
    units, small = [n for n in names if n not in _SMALL], [n for n in names if n in _SMALL]
    groups = max(1, max_units - len(units))  # processes left for the small targets
    return units + ["+".join(small[i::groups]) for i in range(min(groups, len(small)))]


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Result]:
    workdir: Path = tmp_path_factory.mktemp("fuzz")
    return {r.target: r for r in run_campaign(UNITS, seconds=SECONDS, jobs=2, workdir=workdir, fresh=True)}


UNITS = smoke_units()


def test_units_cover_every_target_within_the_budget() -> None:
    assert len(UNITS) <= MAX_UNITS
    assert sorted(n for u in UNITS for n in u.split("+")) == sorted(NAMES)
    assert smoke_units(("a", "b", "metadata", "filter", "topics"), 3) == ["a", "b", "metadata+filter+topics"]


@pytest.mark.parametrize("name", UNITS)
def test_no_finding(results: dict[str, Result], name: str) -> None:
    r = results[name]
    found = r.crashes + r.hangs + r.ooms
    assert not found, f"{name}: findings {found}; log {r.log}:\n{Path(r.log).read_text()[-3000:]}"
    assert r.exit_code == 0, f"{name}: worker exited {r.exit_code}; log {r.log}:\n{Path(r.log).read_text()[-3000:]}"
    assert r.executions > 0 and r.cov > 0
