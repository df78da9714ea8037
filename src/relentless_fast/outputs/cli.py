"""``relentless-fast consume``: read a UDP (MoldUDP64) or TCP (SoupBinTCP) signal stream.

Exit status: 0 clean; 1 when any signal was bad, mismatched or lost, or the TCP server closed the
connection before end of session; 2 when the stream could not be joined (bad URL, connection
refused, login rejected).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import TextIO
from urllib.parse import parse_qs, urlsplit

import numpy as np
import numpy.typing as npt

from relentless_fast.outputs._wire import ACTION_NAMES, FLAG_NAMES
from relentless_fast.outputs.consumer import (
    ConsumerError,
    ConsumerStats,
    SignalCallback,
    TcpConsumer,
    UdpConsumer,
    UdpSource,
)
from relentless_fast.symbols import SymbolTable


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``consume``."""
    p = subparsers.add_parser(
        "consume",
        help="print or summarise a published signal stream (UDP or TCP)",
        description=(
            "Decode a signal stream, check CRCs and sequence gaps, recover UDP gaps through the "
            "MoldUDP64 re-request server, and print one line per signal or a summary. URL forms: "
            "udp://HOST:PORT[?rerequest=HOST:PORT&group=GROUP&interface=IP] (HOST is the local "
            "address to bind, or a multicast group to join) and tcp://HOST:PORT."
        ),
    )
    p.add_argument("url", help="udp://HOST:PORT[?rerequest=H:P&group=G&interface=IP] or tcp://H:P")
    p.add_argument("--count", type=int, default=None, metavar="N", help="stop after N signals")
    p.add_argument("--seconds", type=float, default=None, metavar="S", help="stop after S seconds")
    p.add_argument("--summary", action="store_true", help="print a summary instead of signals")
    p.add_argument("--symbols", default=None, metavar="FILE", help="symbol table file for names")
    p.add_argument(
        "--from-seq",
        type=int,
        default=0,
        metavar="N",
        help="start at sequence N (TCP: replay; UDP: recover from N); 0 = live (default)",
    )
    p.add_argument("--username", default="", help="SoupBinTCP username (TCP)")
    p.add_argument(
        "--password",
        default=None,
        help="SoupBinTCP password (TCP; default: $RELENTLESS_CONSUME_PASSWORD)",
    )
    p.add_argument(
        "--session", default="", help="SoupBinTCP session to join (TCP; default current)"
    )
    p.add_argument(
        "--rerequest-interval",
        type=float,
        default=1.0,
        metavar="S",
        help="seconds between UDP re-requests while a gap is open",
    )
    p.set_defaults(func=run)


def parse_url(url: str) -> UdpSource | tuple[str, int]:
    """A :class:`UdpSource` for ``udp://``, ``(host, port)`` for ``tcp://``; ValueError else."""
    parts = urlsplit(url)
    if parts.scheme not in ("udp", "tcp") or not parts.hostname or parts.port is None:
        raise ValueError(f"expected udp://HOST:PORT or tcp://HOST:PORT, got {url!r}")
    query = {k: v[-1] for k, v in parse_qs(parts.query, strict_parsing=False).items()}
    if parts.scheme == "tcp":
        if query:
            raise ValueError(f"tcp:// takes no query parameters, got {sorted(query)}")
        return parts.hostname, parts.port
    unknown = set(query) - {"rerequest", "group", "interface"}
    if unknown:
        raise ValueError(f"unknown udp:// parameter(s): {', '.join(sorted(unknown))}")
    rerequest = None
    if "rerequest" in query:
        host, _, port = query["rerequest"].rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"rerequest must be HOST:PORT, got {query['rerequest']!r}")
        rerequest = (host, int(port))
    return UdpSource(
        host=parts.hostname,
        port=parts.port,
        group=query.get("group"),
        interface=query.get("interface", "0.0.0.0"),
        rerequest=rerequest,
    )


def format_signal(
    seq: int, record: npt.NDArray[np.void], recv_ns: int, symbols: SymbolTable | None = None
) -> str:
    """One line describing a signal."""
    r = record[0]
    sym_id = int(r["symbol_id"])
    name = f"#{sym_id}"
    if symbols is not None and sym_id < len(symbols):
        name = f"{symbols.symbol_of(sym_id)}"
    action = int(r["action"])
    flags = int(r["flags"])
    flag_text = ",".join(n for i, n in enumerate(FLAG_NAMES) if flags >> i & 1) or "-"
    return (
        f"seq={seq} {name} {ACTION_NAMES[action] if action < 3 else action} "
        f"conf={float(r['confidence']):.3f} target={float(r['price_target']):.2f} "
        f"stop={float(r['stop_loss']):.2f} size={float(r['position_size']):.3f} "
        f"risk={int(r['risk_score'])} urgency={int(r['urgency'])} "
        f"strategy={int(r['strategy_id'])} model={int(r['model_version'])} flags={flag_text} "
        f"ctx={int(r['context_version'])} event_ts={int(r['event_ts_ns'])} "
        f"latency_us={(recv_ns - int(r['emit_ts_ns'])) / 1000:.1f}"
    )


def format_summary(stats: ConsumerStats) -> str:
    """A few lines summarising a run."""
    hold, buy, sell = stats.actions
    lines = [
        f"session {stats.session or '-'}: {stats.signals} signals "
        f"(buy {buy}, sell {sell}, hold {hold}), sequences {stats.first_seq}..{stats.last_seq}, "
        f"{stats.packets} packets, {stats.heartbeats} heartbeats"
        + (", end of session" if stats.end_of_session else ""),
        f"gaps {stats.gaps}, recovered {stats.recovered}, lost {stats.lost}, "
        f"re-requests {stats.rerequests_sent}, duplicates {stats.duplicates}",
        f"bad signals {stats.bad_signals}, sequence mismatches {stats.sequence_mismatches}, "
        f"malformed packets {stats.malformed_packets}, foreign session {stats.foreign_session}",
    ]
    lat = stats.latency_us()
    if lat:
        lines.append(
            "emit->receive latency us (CLOCK_REALTIME both ends): "
            + " ".join(f"{k}={v:.1f}" for k, v in lat.items())
        )
    lines.extend(f"server says: {text}" for text in stats.debug_messages)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """The ``consume`` command."""
    try:
        source = parse_url(args.url)
        symbols = SymbolTable.from_file(args.symbols) if args.symbols else None
    except (ValueError, OSError) as exc:
        print(f"relentless-fast consume: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_consume(args, source, symbols, sys.stdout))


async def _consume(
    args: argparse.Namespace,
    source: UdpSource | tuple[str, int],
    symbols: SymbolTable | None,
    out: TextIO,
) -> int:
    on_signal: SignalCallback | None = None
    if not args.summary:

        def on_signal(seq: int, record: npt.NDArray[np.void], recv_ns: int) -> None:
            print(format_signal(seq, record, recv_ns, symbols), file=out, flush=True)

    stats: ConsumerStats
    try:
        if isinstance(source, UdpSource):
            udp = UdpConsumer(
                source,
                on_signal=on_signal,
                start_seq=args.from_seq,
                rerequest_interval_s=args.rerequest_interval,
            )
            await udp.start()
            try:
                await udp.run(count=args.count, seconds=args.seconds)
            finally:
                udp.close()
            stats = udp.stats
        else:
            password = args.password
            if password is None:
                password = os.environ.get("RELENTLESS_CONSUME_PASSWORD", "")
            tcp = TcpConsumer(
                *source,
                on_signal=on_signal,
                username=args.username,
                password=password,
                session=args.session,
                start_seq=args.from_seq,
            )
            stats = tcp.stats
            await tcp.run(count=args.count, seconds=args.seconds)
    except (ConsumerError, OSError) as exc:
        print(f"relentless-fast consume: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # pragma: no cover - interactive
        pass
    if args.summary:
        print(format_summary(stats), file=out, flush=True)
    if stats.disconnected:
        print(
            "relentless-fast consume: the server closed the connection before end of session",
            file=sys.stderr,
        )
    return 0 if stats.clean and not stats.disconnected else 1


def main(argv: list[str] | None = None) -> int:
    """``python -m relentless_fast.outputs.cli consume URL ...`` without the other commands."""
    parser = argparse.ArgumentParser(prog="relentless-fast")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
