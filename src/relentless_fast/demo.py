"""``relentless-fast demo``: the native path on a generated Alpaca-shaped stream.

A seeded synthetic stream (every message kind of the Alpaca v2 stream, plus a few deliberately
broken frames so the drop counters show) is rendered to frames up front; the timed loop then runs,
per frame, the compiled parser into the rings, the feature kernel over the touched symbols and the
Rust codec packing one signal per touched symbol into a reusable buffer. It prints counts, drops by
reason and the cost per tick and per frame.

At this stage no model runs: every signal is a ``hold`` whose price target and stop loss are the
symbol's last trade price (NaN before its first trade), flagged ``context stale``. The engine
replaces this with model outputs.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import numpy.typing as npt

from relentless_fast._features import FeatureKernel
from relentless_fast._tickparse import TickParser, TickRings
from relentless_fast.feeds.synthetic import ALL_KINDS_MIX, SyntheticFeed
from relentless_fast.records import Kind
from relentless_fast.signals import (
    FLAG_CONTEXT_STALE,
    SIGNAL_RECORD_DTYPE,
    SIGNAL_SIZE,
    pack_into,
    unpack,
)
from relentless_fast.symbols import SymbolTable

DEMO_SYMBOLS = ("AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "SPY", "QQQ", "AMD")


def register(sub: Any) -> None:
    """Add the ``demo`` subcommand."""
    p = sub.add_parser("demo", help="run the native pipeline on a generated stream and summarise")
    p.add_argument("--frames", type=int, default=20_000, help="frames to generate (default 20000)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--encoding", choices=("json", "msgpack"), default="json")
    p.add_argument("--max-frame", type=int, default=50, help="messages per frame, at most")
    p.add_argument(
        "--broken-every", type=int, default=1_000, help="truncate every Nth frame (0: never)"
    )
    p.set_defaults(func=run)


def make_frames(args: argparse.Namespace) -> list[bytes]:
    """The stream, rendered before timing starts; every ``broken_every``-th frame is truncated."""
    feed = SyntheticFeed(DEMO_SYMBOLS, seed=args.seed, mix=ALL_KINDS_MIX)
    render = feed.json_frame if args.encoding == "json" else feed.msgpack_frame
    frames = [render(msgs) for msgs in feed.frames(args.frames, 1, args.max_frame)]
    if args.broken_every > 0:
        for i in range(args.broken_every - 1, len(frames), args.broken_every):
            frames[i] = frames[i][: len(frames[i]) * 2 // 3]
    return frames


def run(args: argparse.Namespace) -> int:
    """Run the demo and print the summary; returns 0."""
    table = SymbolTable(DEMO_SYMBOLS)
    frames = make_frames(args)
    rings = TickRings(len(table), 4096)
    parser = TickParser(table, rings)
    kernel = FeatureKernel(rings, len(table))
    parse = parser.parse_json if args.encoding == "json" else parser.parse_msgpack

    records = np.zeros(len(table), dtype=SIGNAL_RECORD_DTYPE)
    out = bytearray(len(table) * SIGNAL_SIZE)
    records["flags"] = FLAG_CONTEXT_STALE
    frame_ns = np.empty(len(frames), dtype=np.int64)
    sequence = 0
    clock = time.perf_counter_ns

    for i, frame in enumerate(frames):
        t0 = clock()
        n = parse(frame)
        if n:
            kernel.update(parser.touched, n)
            ids = parser.touched[:n]
            sequence = _fill_signals(records[:n], ids, kernel, sequence)
            pack_into(records[:n], out)
        frame_ns[i] = clock() - t0

    _print_summary(parser, kernel, frame_ns, sequence, out)
    return 0


def _fill_signals(
    rec: npt.NDArray[np.void], ids: npt.NDArray[np.uint32], kernel: FeatureKernel, sequence: int
) -> int:
    """Hold signals for ``ids``: a handful of vectorised array operations per frame."""
    n = len(ids)
    price = kernel.last_price[ids]
    rec["symbol_id"] = ids
    rec["sequence"] = np.arange(sequence + 1, sequence + n + 1, dtype=np.uint64)
    rec["event_ts_ns"] = kernel.event_ts_ns[ids]
    rec["emit_ts_ns"] = time.time_ns()
    rec["price_target"] = price
    rec["stop_loss"] = price
    return sequence + n


def _print_summary(
    parser: TickParser,
    kernel: FeatureKernel,
    frame_ns: npt.NDArray[np.int64],
    signals: int,
    last_batch: bytearray,
) -> None:
    counts = {k.name.lower(): int(parser.record_counts[k]) for k in Kind}
    ticks = sum(counts.values())
    total_ns = int(frame_ns.sum())
    p50, p99, p999 = np.percentile(frame_ns, [50, 99, 99.9])
    drops = {k: v for k, v in parser.drops().items() if v}
    print("relentless-fast demo: synthetic Alpaca stream -> parser -> features -> codec")
    print(f"  frames          {len(frame_ns):>12,}")
    print(f"  ticks parsed    {ticks:>12,}  " + " ".join(f"{k}={v:,}" for k, v in counts.items()))
    print(f"  dropped         {sum(drops.values()):>12,}  " + (_fmt(drops) or "none"))
    print(f"  signals packed  {signals:>12,}  (64 bytes each, hold, no model at this stage)")
    print(f"  feature rows    {kernel.features.shape[0]:>12,} x {kernel.features.shape[1]} float32")
    print(f"  ns per tick     {total_ns / max(ticks, 1):>12,.1f}  (parse + features + pack)")
    print(f"  ns per frame    P50 {p50:,.0f}  P99 {p99:,.0f}  P99.9 {p999:,.0f}")
    check = unpack(bytes(last_batch[: SIGNAL_SIZE * 1]))
    print(f"  last batch CRC  ok (first signal: symbol {int(check['symbol_id'][0])})")


def _fmt(d: dict[str, int]) -> str:
    return " ".join(f"{k}={v:,}" for k, v in sorted(d.items()))
