"""Drive the fuzz targets of :mod:`tests.fuzz.targets` with atheris (coverage-guided libFuzzer).

``python -m tests.fuzz.run campaign --runs 1000000`` (``make fuzz``) runs every target in its own
process, ``--jobs`` at a time, each with a per-input timeout (a hang is a finding) and an RSS limit
(unbounded memory is a finding), and writes executions, exec/s, coverage (libFuzzer's ``cov:``
edges and ``ft:`` features), peak RSS and findings to ``build/fuzz/results.json`` and a table.
``python -m tests.fuzz.run worker NAME [libFuzzer flags]`` is one such process, and
``python -m tests.fuzz.run reproduce NAME FILE...`` replays a finding with its traceback.

Nothing here is committed: the corpus, the seeds (regenerated from tests/vectors/ and encoders at
each start) and any finding (``crash-*``, ``timeout-*``, ``oom-*``) live under ``build/fuzz/NAME/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tests.fuzz.targets import NAMES

__all__ = ["Result", "main", "run_campaign", "run_one"]

REPO = Path(__file__).resolve().parents[2]
WORKDIR = REPO / "build" / "fuzz"
TIMEOUT_S = 5  # per input: a decoder that takes longer on one input hangs
RSS_LIMIT_MB = 1024  # the interpreter and a corpus take ~150 MB; more is a decoder's allocation
_FINDING_PREFIXES = ("crash-", "timeout-", "oom-", "leak-", "slow-unit-")


@dataclass
class Result:
    target: str
    executions: int = 0
    exec_per_s: int = 0
    cov: int = 0
    ft: int = 0
    corpus: int = 0
    peak_rss_mb: int = 0
    seconds: float = 0.0
    exit_code: int = 0
    crashes: list[str] = field(default_factory=list)
    hangs: list[str] = field(default_factory=list)
    ooms: list[str] = field(default_factory=list)
    log: str = ""

    @property
    def findings(self) -> int:
        return len(self.crashes) + len(self.hangs) + len(self.ooms)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.findings


_STATUS = re.compile(r"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)", re.M)


def parse_log(result: Result, text: str) -> None:
    """Fill ``result`` from libFuzzer's output (its status lines and -print_final_stats)."""
    status = _STATUS.findall(text)
    if status:
        n, cov, ft, corp = status[-1]
        result.executions, result.cov, result.ft, result.corpus = int(n), int(cov), int(ft), int(corp)
    stats = dict(re.findall(r"^stat::(\w+):\s+(\d+)", text, re.M))
    if "number_of_executed_units" in stats:
        result.executions = int(stats["number_of_executed_units"])
    result.exec_per_s = int(stats.get("average_exec_per_sec", 0))
    result.peak_rss_mb = int(stats.get("peak_rss_mb", 0))


def run_one(name: str, *, runs: int | None = None, seconds: int | None = None,
            workdir: Path = WORKDIR, fresh: bool = False) -> Result:
    """One target in a worker process; ``fresh`` starts from the seeds only (no earlier corpus)."""
    base = workdir / name
    if fresh and base.exists():
        shutil.rmtree(base)
    artifacts = base / "findings"
    artifacts.mkdir(parents=True, exist_ok=True)
    flags = [f"-timeout={TIMEOUT_S}", f"-rss_limit_mb={RSS_LIMIT_MB}", "-print_final_stats=1",
             f"-artifact_prefix={artifacts}/"]
    if runs is not None:
        flags.append(f"-runs={runs}")
    if seconds is not None:
        flags.append(f"-max_total_time={seconds}")
    cmd = [sys.executable, "-m", "tests.fuzz.run", "worker", name, "--workdir", str(workdir), *flags]
    log_path = base / "fuzz.log"
    started = time.monotonic()
    with log_path.open("w") as log:
        proc = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, check=False,
                              env={**os.environ, "PYTHONHASHSEED": "0"})
    result = Result(name, seconds=round(time.monotonic() - started, 1), exit_code=proc.returncode,
                    log=str(log_path))
    parse_log(result, log_path.read_text(errors="replace"))
    for f in sorted(artifacts.iterdir()):
        if f.name.startswith("crash-"):
            result.crashes.append(str(f))
        elif f.name.startswith(("timeout-", "slow-unit-")):
            result.hangs.append(str(f))
        elif f.name.startswith(("oom-", "leak-")):
            result.ooms.append(str(f))
    if not result.exec_per_s and result.seconds:
        result.exec_per_s = int(result.executions / result.seconds)
    return result


def run_campaign(names: Sequence[str] = NAMES, *, runs: int | None = None, seconds: int | None = None,
                 jobs: int = 2, workdir: Path = WORKDIR, fresh: bool = False) -> list[Result]:
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(run_one, n, runs=runs, seconds=seconds, workdir=workdir, fresh=fresh)
                   for n in names]
        return [f.result() for f in futures]


def table(results: Sequence[Result]) -> str:
    """The campaign's summary, one row per target (what docs/reliability.md quotes)."""
    head = f"{'target':<14} {'executions':>11} {'exec/s':>7} {'cov':>5} {'ft':>6} {'corpus':>6} " \
           f"{'rss MB':>6} {'time s':>7} {'crash':>5} {'hang':>4} {'oom':>3}"
    rows = [head, "-" * len(head)]
    for r in results:
        rows.append(f"{r.target:<14} {r.executions:>11,} {r.exec_per_s:>7,} {r.cov:>5} {r.ft:>6} {r.corpus:>6} "
                    f"{r.peak_rss_mb:>6} {r.seconds:>7.0f} {len(r.crashes):>5} {len(r.hangs):>4} {len(r.ooms):>3}"
                    + ("" if r.ok else f"  exit {r.exit_code}: see {r.log}"))
    return "\n".join(rows)


def _machine() -> dict[str, object]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    import atheris  # only for its version

    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "atheris": getattr(atheris, "__version__", "3.0.0"), "platform": platform.platform()}


def _worker(name: str, workdir: Path, flags: list[str]) -> None:
    import atheris
    import trio

    from tests.fuzz.targets import load, one_input

    target = load(name, instrument=True)
    seeds, corpus = workdir / name / "seeds", workdir / name / "corpus"
    shutil.rmtree(seeds, ignore_errors=True)
    seeds.mkdir(parents=True)
    corpus.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(target.seeds()):
        (seeds / f"seed-{i:03}").write_bytes(seed)

    def test_one_input(data: bytes) -> None:
        one_input(target, data)

    args = [sys.argv[0], f"-max_len={target.max_len}", *flags, str(corpus), str(seeds)]
    atheris.Setup(args, test_one_input)
    if not target.in_trio:
        atheris.Fuzz()
        return

    async def host() -> None:
        atheris.Fuzz()  # never returns: libFuzzer exits the process

    trio.run(host)


def _reproduce(name: str, inputs: Sequence[Path]) -> int:
    import trio

    from tests.fuzz.targets import load, one_input

    target = load(name)

    async def run_all() -> None:  # inside a trio task, as the worker runs in_trio targets
        for path in inputs:
            one_input(target, path.read_bytes())
            print(f"{path}: no finding")

    trio.run(run_all)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.fuzz.run")
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("worker", help="one target in this process (libFuzzer flags after the name)")
    w.add_argument("name", help="a target, or targets joined by '+' (fuzzed as one)")
    w.add_argument("--workdir", type=Path, default=WORKDIR)
    r = sub.add_parser("reproduce", help="run saved inputs (a finding) once, uninstrumented, with the traceback")
    r.add_argument("name")
    r.add_argument("inputs", nargs="+", type=Path)
    c = sub.add_parser("campaign", help="every (or the given) target, one process each")
    c.add_argument("--runs", type=int, help="executions per target (libFuzzer -runs)")
    c.add_argument("--seconds", type=int, help="time per target (libFuzzer -max_total_time)")
    c.add_argument("--jobs", type=int, default=2)
    c.add_argument("--targets", default=",".join(NAMES), help="comma-separated")
    c.add_argument("--fresh", action="store_true", help="start from the seeds, not the saved corpus")
    c.add_argument("--workdir", type=Path, default=WORKDIR)
    c.add_argument("--out", type=Path, help="results JSON (default WORKDIR/results.json)")
    c.add_argument("--update", action="store_true",
                   help="replace only these targets' entries in an existing --out (a re-run after a fix)")
    args, rest = p.parse_known_args(argv)
    if args.cmd == "worker":
        _worker(args.name, args.workdir, rest)
        return 0
    if args.cmd == "reproduce":
        return _reproduce(args.name, args.inputs)
    if rest:
        p.error(f"unknown arguments {rest}")
    names = [n for n in args.targets.split(",") if n]
    started = datetime.now(UTC)
    results = run_campaign(names, runs=args.runs, seconds=args.seconds, jobs=args.jobs, workdir=args.workdir,
                           fresh=args.fresh)
    out = args.out or args.workdir / "results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    entries = [{**asdict(r), "findings": r.findings, "started": started.isoformat(timespec="seconds")}
               for r in results]
    doc = {"started": started.isoformat(timespec="seconds"), "runs": args.runs, "seconds": args.seconds,
           "jobs": args.jobs, "machine": _machine(), "targets": entries}
    if args.update and out.exists():
        doc = json.loads(out.read_text())
        fresh = {e["target"]: e for e in entries}
        doc["targets"] = [fresh.pop(e["target"], e) for e in doc["targets"]] + list(fresh.values())
    doc["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(table(results))
    print(f"results: {out}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
