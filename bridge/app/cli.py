"""``waku-bridge``: the command line.

``waku-bridge --peer-id A --config bridge.yaml`` runs one bridge instance (the default command);
sub-commands run the standalone nodes, manage keys and configs, and talk to running instances.
Exit codes: 0 ok, 1 runtime failure, 2 bad usage or configuration, 78 (EX_CONFIG) a state file of
the data dir is damaged (bridge/app/datafiles.py): the systemd unit does not restart on it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bridge.app.config import AppConfig, ConfigErrors, add_flags, load_config
from bridge.app.logging import setup_logging
from bridge.errors import DataFileError, WakuBridgeError
from common.sqlite import is_corruption
from failover.errors import FailoverError
from v1.errors import V1Error
from v2.errors import V2Error

__all__ = ["build_parser", "main"]

log = logging.getLogger("waku_bridge")

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
EXIT_DATA = 78  # EX_CONFIG (sysexits.h): restarting cannot help; RestartPreventExitStatus=78
_DELIBERATE = (WakuBridgeError, V1Error, V2Error, FailoverError)  # each package's root: a refusal, not a bug


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in _leaves(e)]
    return [exc]


def _exit_code(exc: BaseException) -> int | None:
    """The exit code for an error out of trio.run (nurseries group what their tasks raise), after
    logging it in one line; None if it is a bug (the traceback is wanted then)."""
    leaves = _leaves(exc)
    if any(isinstance(e, KeyboardInterrupt) for e in leaves):
        return EXIT_OK
    if not all(isinstance(e, _DELIBERATE) or is_corruption(e) for e in leaves):
        return None
    code = EXIT_FAIL
    for e in leaves:
        if not isinstance(e, _DELIBERATE):  # raw SQLITE_CORRUPT / NOTADB: the next start's check names the file
            log.error("a SQLite file of the data dir is damaged: %s", e)
            code = EXIT_DATA
            continue
        # A store or lease error whose cause is a damaged file (found past the start-up check).
        if isinstance(e, DataFileError) or (e.__cause__ is not None and is_corruption(e.__cause__)):
            code = EXIT_DATA
        log.error("%s", e)
    return code


def _load(args: argparse.Namespace) -> AppConfig:
    flags = {k: v for k, v in vars(args).items() if k not in ("command", "config", "func")}
    return load_config(args.config, flags)


def _run_trio(fn: Callable[..., Any], *args: Any) -> int:
    import trio

    try:
        trio.run(fn, *args)
    except BaseException as exc:
        code = _exit_code(exc)
        if code is None:
            raise
        return code
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    cfg = _load(args)
    setup_logging(cfg.log.level, cfg.log.format)
    if cfg.peer_id is None:
        print("waku-bridge: --peer-id is required to run a bridge instance", file=sys.stderr)
        return EXIT_USAGE
    from bridge.app.service import run_bridge

    return _run_trio(run_bridge, cfg)


def cmd_v1_node(args: argparse.Namespace) -> int:
    cfg = _load(args)
    setup_logging(cfg.log.level, cfg.log.format)
    from bridge.app.service import run_v1_node

    return _run_trio(run_v1_node, cfg)


def cmd_v2_node(args: argparse.Namespace) -> int:
    cfg = _load(args)
    setup_logging(cfg.log.level, cfg.log.format)
    from bridge.app.service import run_v2_node

    return _run_trio(run_v2_node, cfg)


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.file, {})
    except ConfigErrors as exc:
        print(f"{args.file}: {len(exc.errors)} error(s)", file=sys.stderr)
        for e in exc.errors:
            print(f"  {e.key}: {e.message}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{args.file}: ok")
    if args.show:
        from dataclasses import asdict

        d = asdict(cfg)
        d.pop("sources", None)
        for sec in ("v1", "v2"):
            if d[sec].get("nodekey"):
                d[sec]["nodekey"] = "<set>"
        if d["failover"].get("etcd_password"):
            d["failover"]["etcd_password"] = "<set>"
        from v2.store.common import redact_db_url

        d["v2"]["store_message_db_url"] = redact_db_url(d["v2"]["store_message_db_url"])
        print(json.dumps(d, indent=1, default=str))
    return EXIT_OK


def cmd_keygen(args: argparse.Namespace) -> int:
    from bridge.app.keys import describe_key, generate_key_file

    path = Path(args.out)
    try:
        generate_key_file(path, overwrite=args.force)
    except FileExistsError:
        print(f"waku-bridge keygen: {path} exists (use --force to replace it)", file=sys.stderr)
        return EXIT_USAGE
    info = describe_key(path.read_text().strip(), host=args.host, v1_port=args.devp2p_tcp_port,
                        v2_port=args.tcp_port)
    print(json.dumps({"file": str(path), **info}, indent=1))
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from bridge.app.report import run_report

    return run_report(Path(args.data_dir), args.format, args.days, out=Path(args.out) if args.out else None)


def cmd_status(args: argparse.Namespace) -> int:
    from bridge.app.admin import run_status

    return run_status(args.urls, as_json=args.json)


def cmd_drill(args: argparse.Namespace) -> int:
    from bridge.app.drill import drill_main

    return drill_main(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from bridge.app.demo import run_demo

    setup_logging("WARNING" if not args.verbose else "INFO", "text")
    return run_demo(duration=args.duration, rate=args.rate, failover=not args.no_failover)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="waku-bridge",
        description="Waku v1 <-> v2 bridge. Without a sub-command: run one bridge instance.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run one bridge instance (the default command)")
    add_flags(run, "bridge")
    run.set_defaults(func=cmd_run)

    v1 = sub.add_parser("v1-node", help="run a standalone Waku v1 node")
    add_flags(v1, "v1-node")
    v1.set_defaults(func=cmd_v1_node)

    v2 = sub.add_parser("v2-node", help="run a standalone Waku v2 node")
    add_flags(v2, "v2-node")
    v2.set_defaults(func=cmd_v2_node)

    cc = sub.add_parser("check-config", help="validate a YAML configuration file")
    cc.add_argument("file")
    cc.add_argument("--show", action="store_true", help="print the effective configuration")
    cc.set_defaults(func=cmd_check_config)

    kg = sub.add_parser("keygen", help="write a secp256k1 node key file (mode 0600)")
    kg.add_argument("--out", "-o", default="nodekey", help="key file to write (default: ./nodekey)")
    kg.add_argument("--force", action="store_true", help="replace an existing file")
    kg.add_argument("--host", default="127.0.0.1", help="host for the printed enode/multiaddr")
    kg.add_argument("--devp2p-tcp-port", type=int, default=30303)
    kg.add_argument("--tcp-port", type=int, default=60000)
    kg.set_defaults(func=cmd_keygen)

    from bridge.app.report import FORMATS, REPORT_HELP

    rp = sub.add_parser("report", help="migration report from the persisted hourly aggregates",
                        description=REPORT_HELP)
    rp.add_argument("--data-dir", default="./data")
    rp.add_argument("--format", choices=FORMATS, default="table")
    rp.add_argument("--out", "-o", help="write the report to this file instead of stdout (html: a self-contained page)")
    rp.add_argument("--days", type=int, default=30)
    rp.set_defaults(func=cmd_report)

    st = sub.add_parser("status", help="show role, leader and counters of running instances")
    st.add_argument("urls", nargs="+", metavar="URL", help="http://host:metrics-port of each instance")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)

    dr = sub.add_parser("drill", help="switchover drill against a running group (safe in production)")
    dr.add_argument("urls", nargs="+", metavar="URL", help="http://host:metrics-port of each instance")
    dr.add_argument("--v1-enode", help="enode of a v1 node to send canaries through")
    dr.add_argument("--v2-multiaddr", help="multiaddr of a v2 node to send canaries through")
    dr.add_argument("--canaries", type=int, default=20, help="canaries per side per phase")
    dr.add_argument("--timeout", type=float, default=60.0)
    dr.add_argument("--json", action="store_true")
    dr.set_defaults(func=cmd_drill)

    dm = sub.add_parser("demo", help="local sandbox: v1 + v2 networks, two bridges, a simulated migration")
    dm.add_argument("--duration", type=float, default=40.0, help="seconds of traffic")
    dm.add_argument("--rate", type=float, default=10.0, help="messages/s originated in total")
    dm.add_argument("--no-failover", action="store_true", help="do not kill the active bridge midway")
    dm.add_argument("--verbose", action="store_true")
    dm.set_defaults(func=cmd_demo)
    return p


_COMMANDS = {"run", "v1-node", "v2-node", "check-config", "keygen", "report", "status", "drill", "demo"}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `waku-bridge --peer-id A ...` is `waku-bridge run --peer-id A ...` (the product's command line).
    if not argv or (argv[0] not in _COMMANDS and argv[0] not in ("-h", "--help")):
        argv.insert(0, "run")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigErrors as exc:
        print(f"waku-bridge: invalid configuration ({len(exc.errors)} error(s)):", file=sys.stderr)
        for e in exc.errors:
            print(f"  {e.key}: {e.message}", file=sys.stderr)
        return EXIT_USAGE
    return code


if __name__ == "__main__":
    if os.environ.get("WAKU_BRIDGE_PROFILE"):
        import cProfile

        cProfile.run("main()", os.environ["WAKU_BRIDGE_PROFILE"])
    else:
        sys.exit(main())
