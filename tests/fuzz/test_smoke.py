"""CI's fuzz smoke: every target of tests/fuzz/targets.py for 30 s under atheris, two at a time
(one process each, as `make fuzz`), failing on any crash, hang or out-of-memory.

16 targets x 30 s / 2 cores is about 4.5 minutes.  With more targets than 16 the per-target time
shrinks so the smoke stays within that budget.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.fuzz.run import Result, run_campaign
from tests.fuzz.targets import NAMES

_BUDGET_S = 16 * 30  # seconds of fuzzing, over 2 processes: ~4 minutes of wall time
SECONDS = int(os.environ.get("WAKU_BRIDGE_FUZZ_SMOKE_S", min(30, _BUDGET_S // len(NAMES))))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Result]:
    workdir: Path = tmp_path_factory.mktemp("fuzz")
    return {r.target: r for r in run_campaign(NAMES, seconds=SECONDS, jobs=2, workdir=workdir, fresh=True)}


@pytest.mark.parametrize("name", NAMES)
def test_no_finding(results: dict[str, Result], name: str) -> None:
    r = results[name]
    found = r.crashes + r.hangs + r.ooms
    assert not found, f"{name}: findings {found}; log {r.log}:\n{Path(r.log).read_text()[-3000:]}"
    assert r.exit_code == 0, f"{name}: worker exited {r.exit_code}; log {r.log}:\n{Path(r.log).read_text()[-3000:]}"
    assert r.executions > 0 and r.cov > 0
