"""``relentless-fast demo``: the whole pipeline on embedded defaults, for a bounded time.

A seeded synthetic Alpaca stream (or the bundled sample recording, itself synthetic) feeds the
engine on a uvloop loop: compiled parser into the rings, feature kernel, micro-batcher, embedded
LiteRT backend on the shipped model in ``models/``, Rust codec, MoldUDP64 publisher on loopback; a
UDP consumer in the same process decodes every signal, checks CRCs and sequence gaps. A few frames
are deliberately truncated so the drop counters show. Then it prints ticks, signals, drops by
reason and tick-to-signal latency percentiles (frame delivery to the consumer's receive, both
CLOCK_REALTIME).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from typing import Any

import numpy as np
import numpy.typing as npt

from relentless_fast.config import DEFAULT_SYMBOLS, Config, load_config
from relentless_fast.engine.core import Engine, SignalBatch, new_event_loop
from relentless_fast.engine.sources import SyntheticSource, render_frames, sample_recording_path
from relentless_fast.feeds.base import BytesLike, Feed, FeedError, FeedState, FrameEncoding
from relentless_fast.model_contract import MODEL_NAME, models_dir

DEMO_SYMBOLS = DEFAULT_SYMBOLS


def register(sub: Any) -> None:
    """Add the ``demo`` subcommand."""
    p = sub.add_parser("demo", help="run the whole pipeline on embedded defaults and summarise")
    p.add_argument("--source", choices=("synthetic", "sample"), default="synthetic",
                   help="generated stream (default) or the bundled sample recording")  # fmt: skip
    p.add_argument("--frames", type=int, default=10_000, help="frames to generate (default 10000)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--encoding", choices=("json", "msgpack"), default="json")
    p.add_argument("--max-frame", type=int, default=20, help="messages per frame, at most")
    p.add_argument("--rate", type=float, default=2_000.0,
                   help="frames/s offered (0: as fast as possible; default 2000)")  # fmt: skip
    p.add_argument("--seconds", type=float, default=30.0, help="stop after this long at most")
    p.add_argument(
        "--broken-every", type=int, default=1_000, help="truncate every Nth frame (0: never)"
    )
    p.set_defaults(func=run)


def demo_config(args: argparse.Namespace, audit_dir: str = "") -> Config:
    """Embedded defaults: loopback UDP (free ports), no gRPC, no context store, no kill signal,
    metrics on a free port, the audit log in ``audit_dir`` (off when empty)."""
    return load_config(
        env={},
        overrides={
            "engine.symbols": ",".join(DEMO_SYMBOLS),
            "engine.kill_signal": "",
            "engine.halt_policy": "flag",  # synthetic halts are frequent: show them as flags
            "outputs.udp.host": "127.0.0.1",
            "outputs.udp.port": "0",  # replaced by the consumer's port
            "outputs.udp.rerequest_port": "-1",  # loopback: a gap is a bug, not a loss
            "outputs.grpc.enabled": "false",
            "context.snapshot_path": "",
            "inference.model_base_path": str(models_dir() / MODEL_NAME),
            "monitor.metrics_port": "0",
            "monitor.audit_enabled": "true" if audit_dir else "false",
            "monitor.audit_dir": audit_dir or "var/audit",
        },
    )


def make_frames(args: argparse.Namespace) -> list[bytes]:
    """The stream, rendered before the run; every ``broken_every``-th frame is truncated."""
    encoding = FrameEncoding.JSON if args.encoding == "json" else FrameEncoding.MSGPACK
    frames = render_frames(
        DEMO_SYMBOLS,
        n_frames=args.frames,
        seed=args.seed,
        max_messages=args.max_frame,
        encoding=encoding,
    )
    if args.broken_every > 0:
        for i in range(args.broken_every - 1, len(frames), args.broken_every):
            frames[i] = frames[i][: len(frames[i]) * 2 // 3]
    return frames


class _Timing:
    """Frame delivery time (CLOCK_REALTIME) of every signal, by sequence (demo bookkeeping)."""

    def __init__(self, engine: Engine, capacity: int) -> None:
        self.engine = engine
        self.recv_by_symbol = np.zeros(len(engine.table), np.int64)
        self.recv_by_seq = np.zeros(capacity + 1, np.int64)
        self.latency_ns: list[int] = []
        self.flagged_halted = 0

    def on_frame(self, payload: BytesLike, recv_ts_ns: int) -> None:
        parser = self.engine.parser
        self.engine.on_frame(payload, recv_ts_ns)
        n = parser.n_touched
        if n:
            self.recv_by_symbol[parser.touched[:n]] = recv_ts_ns

    def on_state(self, state: FeedState, detail: str) -> None:
        self.engine.on_state(state, detail)

    def on_error(self, error: FeedError) -> None:
        self.engine.on_error(error)

    def on_signals(self, batch: SignalBatch) -> None:
        first = batch.first_sequence
        last = min(first + batch.count, self.recv_by_seq.shape[0])
        ids = batch.records["symbol_id"][: last - first]
        self.recv_by_seq[first:last] = self.recv_by_symbol[ids]
        self.flagged_halted += int(np.count_nonzero(batch.records["flags"] & 16))

    def on_received(self, seq: int, record: npt.NDArray[np.void], recv_ns: int) -> None:
        if seq < self.recv_by_seq.shape[0] and self.recv_by_seq[seq]:
            self.latency_ns.append(recv_ns - int(self.recv_by_seq[seq]))


async def _run(args: argparse.Namespace, audit_dir: str) -> dict[str, Any]:
    from relentless_fast.outputs.consumer import UdpConsumer, UdpSource

    config = demo_config(args, audit_dir)
    if args.source == "sample":
        from relentless_fast.feeds.recording import read_recording

        encoding, records = read_recording(sample_recording_path())
        frames = [payload for _, payload in records]
        source = f"bundled sample recording ({sample_recording_path().name}, synthetic)"
    else:
        encoding = FrameEncoding.JSON if args.encoding == "json" else FrameEncoding.MSGPACK
        frames = make_frames(args)
        source = f"synthetic Alpaca stream ({args.encoding}, seed {args.seed})"
    holder: dict[str, _Timing] = {}

    def feed(engine: Engine) -> Feed:
        timing = holder["t"] = _Timing(engine, 64 * len(frames) + 1024)
        engine.add_listener(timing.on_signals)
        return SyntheticSource(frames, timing, encoding=encoding, rate_fps=args.rate)

    def on_received(seq: int, record: npt.NDArray[np.void], recv_ns: int) -> None:
        holder["t"].on_received(seq, record, recv_ns)

    consumer = UdpConsumer(UdpSource(host="127.0.0.1", port=0), on_signal=on_received)
    await consumer.start()
    config = _replace_udp(config, port=consumer.address[1])
    engine = Engine(config, feed=feed, context_store=False)
    t0 = time.perf_counter()
    async with engine:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(engine.wait(), args.seconds)
    wall = time.perf_counter() - t0
    await asyncio.wait_for(consumer.run(seconds=5.0), 6.0)
    consumer.close()
    return {
        "engine": engine,
        "consumer": consumer,
        "timing": holder["t"],
        "wall_s": wall,
        "source": source,
        "audit": _audited(audit_dir),
    }


def _audited(audit_dir: str) -> dict[str, Any]:
    """What the audit log holds after the run (read back from its Parquet files)."""
    from relentless_fast.monitor.cli import connect, summary

    rows = summary(connect(audit_dir))
    return rows[0] if rows else {}


def _replace_udp(config: Config, **changes: Any) -> Config:
    import dataclasses

    udp = dataclasses.replace(config.outputs.udp, **changes)
    outputs = dataclasses.replace(config.outputs, udp=udp)
    return dataclasses.replace(config, outputs=outputs)


def run(args: argparse.Namespace) -> int:
    """Run the demo and print the summary; returns 0 when every signal arrived intact."""
    import tempfile

    loop = new_event_loop("uvloop")
    try:
        with tempfile.TemporaryDirectory(prefix="relentless-audit-") as audit_dir:
            result = loop.run_until_complete(_run(args, audit_dir))
    finally:
        loop.close()
    return _print_summary(result)


def _print_summary(r: dict[str, Any]) -> int:
    engine: Engine = r["engine"]
    stats = r["consumer"].stats
    snap = engine.snapshot()
    counts = {k: int(v) for k, v in zip(_kind_names(), engine.parser.record_counts, strict=True)}
    drops = dict(snap["parser_drops"])
    drops.update({f"inference_{k}": v for k, v in snap["inference_drops"].items()})
    suppressed = {k: v for k, v in snap["suppressed"].items() if v}
    lat = np.asarray(r["timing"].latency_ns, dtype=np.int64) / 1000.0
    print("relentless-fast demo: feed -> parser -> features -> LiteRT -> codec -> UDP + audit log")
    print(f"  source          {r['source']}")
    print(f"  frames          {snap['frames']:>12,}  in {r['wall_s']:.2f} s")
    print(
        f"  ticks parsed    {snap['ticks']:>12,}  " + _fmt({k: v for k, v in counts.items() if v})
    )
    print(f"  dropped         {sum(drops.values()):>12,}  " + (_fmt(drops) or "none"))
    print(f"  rows to model   {snap['rows_submitted']:>12,}  coalesced {snap['rows_coalesced']:,}"
          f"  batches {snap['batches']:,}")  # fmt: skip
    print(f"  signals sent    {snap['signals']:>12,}  (64 bytes each, MoldUDP64 on loopback)")
    print(f"  suppressed      {sum(suppressed.values()):>12,}  " + (_fmt(suppressed) or "none"))
    flagged = int(r["timing"].flagged_halted)
    print(f"  flagged halted  {flagged:>12,}  (halt or LULD band: flag bit 4)")
    print(f"  signals recvd   {stats.signals:>12,}  actions hold/buy/sell "
          f"{'/'.join(f'{a:,}' for a in stats.actions)}")  # fmt: skip
    ok = stats.clean and stats.end_of_session and stats.signals == snap["signals"]
    print(f"  consumer check  {'ok' if ok else 'FAILED':>12}  CRC/sequence: bad {stats.bad_signals}"
          f" gaps {stats.gaps} lost {stats.lost}; end of session "
          f"{'seen' if stats.end_of_session else 'missing'}")  # fmt: skip
    audit = r["audit"]
    audit_ok = (audit.get("signals"), audit.get("missing"), audit.get("duplicates")) == (
        snap["signals"],
        0,
        0,
    )
    ok = ok and audit_ok
    print(f"  audit log       {'ok' if audit_ok else 'FAILED':>12}  {audit.get('signals', 0):,} "
          f"signals in Parquet (DuckDB), sequences {audit.get('first_sequence')}.."
          f"{audit.get('last_sequence')}, missing {audit.get('missing')}")  # fmt: skip
    ctx = "neutral, flagged stale" if snap["context_stale"] else "fresh"
    print(f"  model           v{engine.embedded.version('stable')} on LiteRT (embedded); "
          f"context v{snap['context_version']} ({ctx})")  # fmt: skip
    if lat.size:
        p50, p99, p999 = np.percentile(lat, [50, 99, 99.9])
        print(f"  tick-to-signal  P50 {p50:,.1f} us  P99 {p99:,.1f} us  P99.9 {p999:,.1f} us"
              f"  max {lat.max():,.1f} us  (frame delivery -> consumer receive)")  # fmt: skip
    eng = snap["latency_us"]
    if eng:
        print(f"  in engine       P50 {eng['p50']:,.1f} us  P99 {eng['p99']:,.1f} us  "
              f"P99.9 {eng['p99.9']:,.1f} us  (frame in -> batch packed)")  # fmt: skip
    return 0 if ok else 1


def _kind_names() -> list[str]:
    from relentless_fast.records import Kind

    return [k.name.lower() for k in Kind]


def _fmt(d: dict[str, int]) -> str:
    return " ".join(f"{k}={v:,}" for k, v in sorted(d.items()))
