"""``relentless-fast record`` and ``relentless-fast replay``: frame recordings on the command line.

``record`` connects to an Alpaca-protocol stream (the real one, credentials from
``APCA_API_KEY_ID``/``APCA_API_SECRET_KEY``, or a local replay server) and writes every data
frame with its receive timestamp. ``replay`` plays a recording into a counting sink and prints a
summary, or (``--serve``) serves it to clients as an Alpaca-protocol WebSocket server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from relentless_fast.feeds.base import BytesLike, FeedFatalError, FeedState, FrameEncoding, NullSink

if TYPE_CHECKING:
    from relentless_fast.feeds.replay_server import ReplayServerConfig

__all__ = ["register"]

_ALPACA_URL = "wss://stream.data.alpaca.markets/v2/{feed}"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``record`` and ``replay``."""
    rec = subparsers.add_parser(
        "record",
        help="record the raw frames of an Alpaca-protocol stream to a file",
        description=__doc__,
    )
    rec.add_argument("out", type=Path, help="recording file to write")
    where = rec.add_mutually_exclusive_group()
    where.add_argument("--url", help="ws:// or wss:// URL (overrides --feed)")
    where.add_argument(
        "--feed", default="iex", help="Alpaca feed: iex, sip, delayed_sip, test (default iex)"
    )
    for channel in ("trades", "quotes", "bars", "statuses", "lulds"):
        rec.add_argument(f"--{channel}", default="", help=f"comma-separated symbols for {channel}")
    rec.add_argument("--msgpack", action="store_true", help="ask for msgpack frames")
    rec.add_argument("--header-auth", action="store_true", help="authenticate in the headers")
    rec.add_argument("--duration", type=float, default=None, help="stop after SECS seconds")
    rec.add_argument("--max-frames", type=int, default=None, help="stop after N data frames")
    rec.add_argument(
        "--credentials",
        choices=("env", "test"),
        default="env",
        help="env: APCA_API_KEY_ID/APCA_API_SECRET_KEY; test: the replay server's test pair",
    )
    rec.set_defaults(func=_record_command)

    rep = subparsers.add_parser(
        "replay",
        help="play a frame recording (summary) or serve it as an Alpaca-protocol server",
        description=__doc__,
    )
    rep.add_argument("recording", type=Path)
    pace = rep.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, default=1.0, help="multiple of recorded pace")
    pace.add_argument("--fast", action="store_true", help="as fast as possible")
    rep.add_argument(
        "--serve", metavar="HOST:PORT", help="serve to clients instead of a summary (port 0: any)"
    )
    rep.add_argument("--duration", type=float, default=None, help="stop serving after SECS")
    rep.add_argument(
        "--rate", type=float, default=None, help="with --serve: offer FPS frames per second"
    )
    rep.add_argument("--repeat", type=int, default=1, help="with --serve: send the frames N times")
    rep.add_argument(
        "--stamp-send-time",
        action="store_true",
        help="with --serve: set every message's t to its send time (end-to-end latency runs)",
    )
    rep.set_defaults(func=_replay_command)


def _run(coro: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; keep the tools usable
        return asyncio.run(coro)
    result: int = uvloop.run(coro)
    return result


def _symbols(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


# ---- record -------------------------------------------------------------------------------------


class _CountingSink(NullSink):
    def __init__(self, max_frames: int | None, done: asyncio.Event, *, verbose: bool) -> None:
        self.verbose = verbose
        self.frames = 0
        self.bytes = 0
        self.max_frames = max_frames
        self.done = done

    def on_frame(self, payload: BytesLike, recv_ts_ns: int) -> None:
        self.frames += 1
        self.bytes += len(payload)
        if self.max_frames is not None and self.frames >= self.max_frames:
            self.done.set()

    def on_state(self, state: FeedState, detail: str) -> None:
        if self.verbose:
            print(f"feed: {state.name} {detail}", file=sys.stderr)


def _record_command(args: argparse.Namespace) -> int:
    from relentless_fast.feeds.alpaca import AlpacaFeedConfig

    url = args.url or _ALPACA_URL.format(feed=args.feed)
    try:
        config = AlpacaFeedConfig(
            url=url,
            encoding=FrameEncoding.MSGPACK if args.msgpack else FrameEncoding.JSON,
            auth_in_headers=args.header_auth,
            trades=_symbols(args.trades),
            quotes=_symbols(args.quotes),
            bars=_symbols(args.bars),
            statuses=_symbols(args.statuses),
            lulds=_symbols(args.lulds),
            key_id="test-key",
            secret_key="test-secret",
        )
        if args.credentials == "env":
            config = config.with_env_credentials()
    except ValueError as exc:
        print(f"record: {exc}", file=sys.stderr)
        return 2
    return _run(_record(config, args.out, args.duration, args.max_frames))


async def _record(config: Any, out: Path, duration: float | None, max_frames: int | None) -> int:
    from relentless_fast.feeds.alpaca import AlpacaFeed
    from relentless_fast.feeds.recording import RecordingSink, RecordingWriter

    done = asyncio.Event()
    counter = _CountingSink(max_frames, done, verbose=True)
    code = 0
    with RecordingWriter(out, config.encoding) as writer:
        feed = AlpacaFeed(config, RecordingSink(writer, counter))
        task = asyncio.create_task(feed.run())
        _stop_on_signals(done)
        waiter = asyncio.create_task(done.wait())
        await asyncio.wait({task, waiter}, timeout=duration, return_when=asyncio.FIRST_COMPLETED)
        feed.stop()
        waiter.cancel()
        try:
            await task
        except FeedFatalError as exc:
            print(f"record: {exc}", file=sys.stderr)
            code = 1
    print(f"recorded {writer.frames} frames, {writer.bytes} bytes to {out}")
    return code


def _stop_on_signals(event: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, event.set)


# ---- replay -------------------------------------------------------------------------------------


def _replay_command(args: argparse.Namespace) -> int:
    from relentless_fast.feeds.recording import RecordingFormatError, open_recording
    from relentless_fast.feeds.replay_server import ReplayServerConfig

    speed = None if args.fast else args.speed
    if speed is not None and speed <= 0:
        print("replay: --speed must be > 0", file=sys.stderr)
        return 2
    try:
        open_recording(args.recording).close()
    except (OSError, RecordingFormatError) as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    if args.serve:
        host, _, port = args.serve.rpartition(":")
        if not host or not port.isdigit():
            print("replay: --serve wants HOST:PORT", file=sys.stderr)
            return 2
        try:
            config = ReplayServerConfig.from_recording(
                args.recording,
                speed=speed,
                rate_fps=args.rate,
                repeat=args.repeat,
                stamp_send_time=args.stamp_send_time,
                max_sessions=1_000,
                log_sent=False,
            )
        except ValueError as exc:
            print(f"replay: {exc}", file=sys.stderr)
            return 2
        return _run(_serve(config, args.recording, host, int(port), args.duration))
    return _run(_summarise(args.recording, speed))


async def _summarise(path: Path, speed: float | None) -> int:
    from relentless_fast.feeds.recording import ReplayFeed

    sink = _CountingSink(None, asyncio.Event(), verbose=False)
    feed = ReplayFeed(path, sink, speed=speed)
    span_ns = feed.recording.last_ts_ns - feed.recording.first_ts_ns
    encoding = feed.recording.encoding.name
    start = time.perf_counter()
    await feed.run()
    wall = time.perf_counter() - start
    rate = sink.frames / wall if wall > 0 else float("inf")
    print(
        f"{path}: {sink.frames} frames, {sink.bytes} payload bytes, {encoding}, "
        f"recorded span {span_ns / 1e9:.3f} s, replayed in {wall:.3f} s ({rate:,.0f} frames/s)"
    )
    return 0


async def _serve(
    config: ReplayServerConfig, path: Path, host: str, port: int, duration: float | None
) -> int:
    from relentless_fast.feeds.replay_server import AlpacaReplayServer

    server = await AlpacaReplayServer(config).start(host, port)
    print(f"serving {path} ({len(config.frames)} frames) at {server.url}", flush=True)
    print("credentials: key 'test-key', secret 'test-secret'", flush=True)
    stop = asyncio.Event()
    _stop_on_signals(stop)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=duration)
    await server.stop()
    return 0
