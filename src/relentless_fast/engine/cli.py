"""``relentless-fast run | symbols | kill``: the main job and its operations.

``run --config relentless.toml`` runs the engine as configured until the feed ends, ``--seconds``
pass, or SIGINT/SIGTERM, then shuts down cleanly (flush, end of session) and prints the counters
as JSON. Every configuration key is also a flag, ``--<section>.<key> VALUE``.
``symbols`` prints (or saves) the symbol table consumers decode ``symbol_id`` with.
``kill`` trips a running engine's kill switch through its gRPC port or its POSIX signal.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from relentless_fast.config import Config, ConfigError, iter_keys, load_config


def register(sub: Any) -> None:
    """Add ``run``, ``symbols`` and ``kill``."""
    run = sub.add_parser("run", help="run the engine as configured (TOML, env, flags)")
    run.add_argument("--config", help="relentless.toml (default: built-in defaults)")
    run.add_argument("--seconds", type=float, help="stop after this long (default: until ended)")
    keys = run.add_argument_group("configuration keys (override the file and the environment)")
    for key, _, default in iter_keys():
        keys.add_argument(f"--{key}", dest=f"key:{key}", default=argparse.SUPPRESS,
                          metavar="V", help=f"default {_show(default)}")  # fmt: skip
    run.set_defaults(func=cmd_run)

    sym = sub.add_parser("symbols", help="print or save the engine's symbol table")
    sym.add_argument("--config", help="relentless.toml (default: built-in defaults)")
    sym.add_argument("--format", choices=("text", "json"), default="text")
    sym.add_argument("--save", help="write the table file (<id> <SYMBOL> lines) here")
    sym.set_defaults(func=cmd_symbols)

    kill = sub.add_parser("kill", help="trip a running engine's kill switch")
    kill.add_argument("--config", help="relentless.toml: gRPC address and pid file")
    kill.add_argument("--grpc", help="HOST:PORT of the engine's gRPC server")
    kill.add_argument("--pid", type=int, help="send the configured kill signal to this process")
    kill.add_argument("--reason", default="relentless-fast kill")
    kill.set_defaults(func=cmd_kill)


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value) or "(empty)"
    return repr(value) if value == "" else str(value)


def _load(args: argparse.Namespace) -> Config:
    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("key:")}
    return load_config(args.config, overrides=overrides)


def cmd_run(args: argparse.Namespace) -> int:
    """Run the engine; print the final counters as JSON."""
    from relentless_fast.engine.core import run_engine

    try:
        config = _load(args)
    except ConfigError as exc:
        print(f"relentless-fast run: configuration error: {exc}", file=sys.stderr)
        return 2
    pid_file = config.engine.pid_file
    if pid_file:
        Path(pid_file).write_text(f"{os.getpid()}\n")
    try:
        snapshot = run_engine(config, seconds=args.seconds)
    except ConfigError as exc:  # found only when applied (e.g. a CPU this machine lacks)
        print(f"relentless-fast run: configuration error: {exc}", file=sys.stderr)
        return 2
    finally:
        if pid_file:
            Path(pid_file).unlink(missing_ok=True)
    print(json.dumps(snapshot, indent=2, default=str))
    return 0


def cmd_symbols(args: argparse.Namespace) -> int:
    """Print the table (``<id> <SYMBOL>`` or JSON) or save it."""
    from relentless_fast.engine.core import symbol_table

    try:
        table = symbol_table(load_config(args.config))
    except ConfigError as exc:
        print(f"relentless-fast symbols: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.save:
        table.save(args.save)
        return 0
    if args.format == "json":
        entries = [{"symbol": s, "symbol_id": i} for i, s in enumerate(table.symbols)]
        print(json.dumps({"table_version": table.version, "symbols": entries}))
    else:
        print(f"# relentless-fast symbol table {table.version}")
        for i, s in enumerate(table.symbols):
            print(f"{i} {s}")
    return 0


def cmd_kill(args: argparse.Namespace) -> int:
    """Kill switch by gRPC (``--grpc``, or the configured address) or by signal (``--pid``)."""
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"relentless-fast kill: configuration error: {exc}", file=sys.stderr)
        return 2
    pid = args.pid
    if pid is None and not args.grpc and config.engine.pid_file:
        try:
            pid = int(Path(config.engine.pid_file).read_text().split()[0])
        except (OSError, ValueError, IndexError) as exc:
            print(f"relentless-fast kill: cannot read the pid file: {exc}", file=sys.stderr)
            return 1
    if pid is not None:
        if not config.engine.kill_signal:
            print("relentless-fast kill: engine.kill_signal is empty", file=sys.stderr)
            return 2
        os.kill(pid, int(getattr(signal, config.engine.kill_signal)))
        print(f"sent {config.engine.kill_signal} to {pid}")
        return 0
    target = args.grpc or f"{config.outputs.grpc.host}:{config.outputs.grpc.port}"
    return _kill_grpc(target, args.reason)


def _kill_grpc(target: str, reason: str) -> int:
    import grpc
    from google.protobuf import empty_pb2, wrappers_pb2

    with grpc.insecure_channel(target) as channel:
        kill = channel.unary_unary(
            "/relentless_fast.v1.EngineControl/Kill",
            request_serializer=wrappers_pb2.StringValue.SerializeToString,
            response_deserializer=empty_pb2.Empty.FromString,
        )
        try:
            kill(wrappers_pb2.StringValue(value=reason), timeout=5.0)
        except grpc.RpcError as exc:
            print(f"relentless-fast kill: {target}: {exc.code().name}: {exc.details()}",
                  file=sys.stderr)  # fmt: skip
            return 1
    print(f"kill switch tripped on {target}")
    return 0
