"""``relentless-fast context load|show|backfill``.

- ``load [--date D] [--schedule]``: one load for D (default: today's session in New York, or the
  next session when today is none); ``--schedule`` runs it daily at ``schedule_time`` and keeps
  running. Exit code 1 only when nothing usable was built.
- ``show [--date D] [--json] [--rebuild]``: print a stored context (``--rebuild`` rebuilds it from
  its stored payloads and says whether it matches).
- ``backfill --from D1 --to D2``: load every session in [D1, D2], point in time.
- ``universe --tickers AAPL,MSFT --out universe.csv``: write a universe file from EDGAR
  (``company_tickers.json`` for the CIK, each company's submissions for its SIC code and name).

Configuration: the ``[context]`` table of ``--config`` (default ``relentless.toml`` when present).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import sys
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from relentless_fast.context.config import ContextConfig


def register(subparsers: Any) -> None:
    """Add the ``context`` command."""
    parser = subparsers.add_parser("context", help="daily pre-market context loader")
    parser.add_argument("--config", default="relentless.toml", help="TOML with a [context] table")
    sub = parser.add_subparsers(dest="context_command", metavar="ACTION", required=True)

    load = sub.add_parser("load", help="build, store and publish the context")
    load.add_argument("--date", type=_date, help="as-of session (YYYY-MM-DD)")
    load.add_argument("--schedule", action="store_true", help="run daily and keep running")
    load.set_defaults(func=_guard(_cmd_load))

    show = sub.add_parser("show", help="print a stored context")
    show.add_argument("--date", type=_date, help="as-of date (default: the latest)")
    show.add_argument("--json", action="store_true", help="JSON instead of protobuf text")
    show.add_argument("--rebuild", action="store_true", help="rebuild from stored payloads")
    show.set_defaults(func=_guard(_cmd_show))

    back = sub.add_parser("backfill", help="load every session in a date range")
    back.add_argument("--from", dest="start", type=_date, required=True)
    back.add_argument("--to", dest="end", type=_date, required=True)
    back.set_defaults(func=_guard(_cmd_backfill))

    uni = sub.add_parser("universe", help="write a universe CSV (ticker,cik,sic,name) from EDGAR")
    uni.add_argument(
        "--tickers", required=True, help="comma-separated tickers, or @FILE (one a line)"
    )
    uni.add_argument("--out", required=True, help="CSV to write (use it as universe_path)")
    uni.set_defaults(func=_cmd_universe)


def _guard(fn: Any) -> Any:
    """Turn a busy or unreadable database into a one-line error and exit code 2."""

    def run(args: argparse.Namespace) -> int:
        import duckdb

        try:
            code: int = fn(args)
        except duckdb.IOException as exc:
            print(f"context database unavailable: {exc}", file=sys.stderr)
            return 2
        return code

    return run


def main(argv: list[str] | None = None) -> int:
    """``python -m relentless_fast.context.cli ...``: the context command on its own."""
    parser = argparse.ArgumentParser(prog="relentless-fast")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {text!r}") from exc


def _config(args: argparse.Namespace) -> ContextConfig:
    path = Path(args.config)
    if path.exists():
        return ContextConfig.from_toml(path)
    if args.config != "relentless.toml":
        raise SystemExit(f"config file {path} not found")
    return ContextConfig()


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # its request lines carry the query


def default_as_of(cfg: ContextConfig) -> dt.date:
    """Today's session in the schedule's zone, or the next session."""
    from relentless_fast.context import sessions

    today = dt.datetime.now(ZoneInfo(cfg.schedule_tz)).date()
    return sessions.session_on_or_after(today)


def _cmd_load(args: argparse.Namespace) -> int:
    from relentless_fast.context.loader import load_once
    from relentless_fast.context.scheduler import run_schedule

    _setup_logging()
    cfg = _config(args)
    if args.schedule:

        async def job(day: dt.date) -> int:
            return 0 if (await load_once(cfg, day)).ok else 1

        asyncio.run(run_schedule(job, cfg.schedule_time, cfg.schedule_tz))
        return 0
    as_of = args.date or default_as_of(cfg)
    result = asyncio.run(load_once(cfg, as_of))
    print(
        json.dumps(
            {
                "as_of": as_of.isoformat(),
                "ok": result.ok,
                "version": result.context.version if result.context else None,
                "requests": result.requests,
                "sources": {s: (r.error or "ok") for s, r in result.results.items()},
            }
        )
    )
    return 0 if result.ok else 1


def _cmd_show(args: argparse.Namespace) -> int:
    from google.protobuf import json_format, text_format

    from relentless_fast.context.loader import rebuild
    from relentless_fast.context.storage import ContextDB

    cfg = _config(args)
    with ContextDB(cfg.db_path) as db:
        ctx = db.context_for(args.date) if args.date else db.latest_context()
    if ctx is None:
        print(f"no context stored for {args.date or 'any date'}", file=sys.stderr)
        return 1
    if args.rebuild:
        again = rebuild(cfg, dt.date.fromisoformat(ctx.as_of_date))
        same = again is not None and again == ctx
        print(f"# rebuild from stored payloads: {'identical' if same else 'DIFFERENT'}")
        if not same:
            return 1
    if args.json:
        print(json_format.MessageToJson(ctx, preserving_proto_field_name=True))
    else:
        print(text_format.MessageToString(ctx), end="")
    return 0


def _cmd_universe(args: argparse.Namespace) -> int:
    import httpx

    from relentless_fast.context.sources.http import RetryPolicy, SourceError, SourceHttp
    from relentless_fast.context.sources.sec import SecClient
    from relentless_fast.context.universe import build_universe, write_universe

    cfg = _config(args)
    spec: str = args.tickers
    text = Path(spec[1:]).read_text(encoding="utf-8") if spec.startswith("@") else spec
    tickers = [t.strip().upper() for t in text.replace(",", "\n").splitlines() if t.strip()]

    async def run() -> tuple[list[Any], dict[str, str]]:
        retry = RetryPolicy(cfg.max_attempts, cfg.backoff_base_s, cfg.backoff_max_s)
        headers = {"User-Agent": cfg.sec_user_agent, "Accept-Encoding": "gzip, deflate"}
        async with httpx.AsyncClient(timeout=cfg.http_timeout_s) as hc:
            http = SourceHttp("sec", hc, max_rps=cfg.sec_max_rps, retry=retry, headers=headers)
            client = SecClient(http, cfg.sec_data_base_url, cfg.sec_archive_base_url)
            return await build_universe(client, tickers)

    try:
        members, errors = asyncio.run(run())
    except SourceError as exc:
        print(f"universe: {exc}", file=sys.stderr)
        return 1
    for ticker, why in errors.items():
        print(f"universe: skipped {ticker}: {why}", file=sys.stderr)
    if not members:
        return 1
    write_universe(args.out, members)
    print(json.dumps({"written": len(members), "skipped": len(errors), "out": args.out}))
    return 0


def _cmd_backfill(args: argparse.Namespace) -> int:
    from relentless_fast.context import sessions
    from relentless_fast.context.loader import load_once

    _setup_logging()
    cfg = _config(args)
    if args.end < args.start:
        print("--to is before --from", file=sys.stderr)
        return 2
    failed = 0
    days = sessions.sessions_in(args.start, args.end)
    for day in days:
        result = asyncio.run(load_once(cfg, day))
        failed += 0 if result.ok else 1
        print(json.dumps({"as_of": day.isoformat(), "ok": result.ok, "requests": result.requests}))
    return 1 if days and failed == len(days) else 0


if __name__ == "__main__":
    sys.exit(main())
