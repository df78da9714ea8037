"""The Engine end to end in one process: signals, sequence, context swap, halts, kill switch."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import numpy as np
import orjson
import pytest

from relentless_fast.context.publish import write_snapshot
from relentless_fast.context.store import ContextStore, LoadedContext
from relentless_fast.engine import Engine, FusedContext, SignalBatch
from relentless_fast.engine.sources import SyntheticSource
from relentless_fast.feeds.synthetic import format_rfc3339
from relentless_fast.inference.batch import FLAG_CONTEXT_STALE, FLAG_HALTED
from relentless_fast.inference.embedded import EmbeddedBackend
from relentless_fast.signals import unpack
from tests.engine.conftest import SYMBOLS, daily_context, make_config

T0 = 1_721_807_400_000_000_000


def trade(sym: str, price: float, ts: int) -> dict[str, Any]:
    return {"T": "t", "S": sym, "i": ts, "x": "V", "p": price, "s": 100, "c": ["@"], "z": "C",
            "t": ts}  # fmt: skip


def frame(*msgs: dict[str, Any]) -> bytes:
    """A JSON frame; integer ``t`` values become RFC 3339 text as Alpaca sends them."""
    return orjson.dumps([dict(m, t=format_rfc3339(m["t"])) for m in msgs])


class Collector:
    def __init__(self) -> None:
        self.batches: list[bytes] = []

    def __call__(self, batch: SignalBatch) -> None:
        assert batch.count * 64 == batch.packed.nbytes
        self.batches.append(bytes(batch.packed))

    def records(self) -> np.ndarray[Any, Any]:
        return unpack(b"".join(self.batches))


async def test_synthetic_stream_gives_contiguous_valid_signals(
    embedded: EmbeddedBackend, frames: list[bytes]
) -> None:
    got = Collector()
    config = make_config()
    engine = Engine(
        config,
        feed=lambda sink: SyntheticSource(frames, sink),
        embedded=embedded,
        on_signals=got,
        context_store=False,
    )
    async with engine:
        await engine.wait()
    rec = got.records()  # unpack checks magic, version and CRC of every signal
    assert rec.shape[0] == engine.counters.signals_emitted > 0
    assert (rec["sequence"] == np.arange(1, rec.shape[0] + 1)).all()
    assert engine.sequence == rec.shape[0]
    assert set(np.unique(rec["symbol_id"])) <= set(range(len(SYMBOLS)))
    # neutral context until one is published: version 0 and the stale flag on every signal
    assert (rec["context_version"] == 0).all()
    assert (rec["flags"] & FLAG_CONTEXT_STALE).all()
    assert (rec["model_version"] == 1).all()
    assert np.isfinite(rec["price_target"]).all() and (rec["price_target"] > 0).all()
    assert (rec["action"] <= 2).all()
    snap = engine.snapshot()
    assert snap["frames"] == len(frames) and snap["ticks"] > len(frames)
    assert snap["latency_us"]["p50"] > 0


async def test_frames_are_answered_when_the_loop_iteration_ends(
    embedded: EmbeddedBackend,
) -> None:
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    got = Collector()
    engine = Engine(make_config(), feed=False, embedded=embedded, on_signals=got,
                    context_store=False)  # fmt: skip
    async with engine:
        # three frames in one iteration, two for AAPL: one row per symbol, newest state
        engine.on_frame(frame(trade("AAPL", 100.0, T0)), 0)
        engine.on_frame(frame(trade("MSFT", 50.0, T0 + 1)), 0)
        engine.on_frame(frame(trade("AAPL", 101.0, T0 + 2)), 0)
        assert got.batches == []
        for _ in range(3):
            await asyncio.sleep(0)
    assert errors == []
    rec = got.records()
    assert sorted(rec["symbol_id"].tolist()) == [0, 1]
    aapl = rec[rec["symbol_id"] == 0][0]
    assert aapl["event_ts_ns"] == T0 + 2
    assert engine.emitter.merged == 1


async def test_context_swap_is_picked_up_on_the_next_batch(embedded: EmbeddedBackend) -> None:
    got = Collector()
    engine = Engine(make_config(), feed=False, embedded=embedded, on_signals=got,
                    context_store=False)  # fmt: skip
    async with engine:
        engine.on_frame(frame(trade("AAPL", 100.0, T0)), 0)
        engine.end_of_burst()
        first = got.records()
        assert first.shape[0] == 1 and first["context_version"][0] == 0
        assert first["flags"][0] & FLAG_CONTEXT_STALE
        loaded = LoadedContext.from_context(daily_context(7))
        engine.set_context(FusedContext.from_loaded(loaded, engine.table))
        engine.on_frame(frame(trade("AAPL", 100.0, T0 + 1)), 0)
        engine.end_of_burst()
        second = got.records()[-1]
        assert second["context_version"] == 7
        assert not second["flags"] & FLAG_CONTEXT_STALE
        assert engine.counters.context_swaps == 1


async def test_context_published_to_the_store_reaches_a_running_engine(
    embedded: EmbeddedBackend, tmp_path: Any
) -> None:
    snap = tmp_path / "context.pb"
    write_snapshot(snap, daily_context(1))
    store = ContextStore(snapshot_path=snap, poll_interval_s=0.02)
    got = Collector()
    engine = Engine(make_config(), feed=False, embedded=embedded, on_signals=got,
                    context_store=store)  # fmt: skip
    async with engine:
        assert engine.context.version == 1  # read at start
        write_snapshot(snap, daily_context(2))
        for _ in range(200):
            if engine.context.version == 2:
                break
            await asyncio.sleep(0.01)
        engine.on_frame(frame(trade("MSFT", 50.0, T0)), 0)
        engine.end_of_burst()
    assert got.records()["context_version"].tolist() == [2]


async def test_halt_suppresses_until_trade_resumption(embedded: EmbeddedBackend) -> None:
    got = Collector()
    engine = Engine(make_config(), feed=False, embedded=embedded, on_signals=got,
                    context_store=False)  # fmt: skip
    halt = {"T": "s", "S": "NVDA", "sc": "H", "sm": "Trading Halt", "rc": "T12", "rm": "x",
            "t": T0, "z": "C"}  # fmt: skip
    resume = dict(halt, sc="T", sm="Trading Resumption", t=T0 + 3)
    async with engine:
        engine.on_frame(frame(trade("NVDA", 10.0, T0 - 1), halt), 0)
        engine.on_frame(frame(trade("NVDA", 10.1, T0 + 1)), 0)
        engine.end_of_burst()
        assert got.batches == [] and engine.emitter.suppressed_halted >= 1
        engine.on_frame(frame(resume, trade("NVDA", 10.2, T0 + 4)), 0)
        engine.end_of_burst()
    rec = got.records()
    assert rec.shape[0] == 1 and rec["symbol_id"][0] == SYMBOLS.index("NVDA")
    assert not rec["flags"][0] & FLAG_HALTED


async def test_halt_policy_flag_and_luld_band_flag(embedded: EmbeddedBackend) -> None:
    got = Collector()
    config = make_config(**{"engine.halt_policy": "flag"})
    engine = Engine(config, feed=False, embedded=embedded, on_signals=got, context_store=False)
    band = {"T": "l", "S": "TSLA", "u": 105.0, "d": 95.0, "i": "B", "t": T0, "z": "C"}
    async with engine:
        engine.on_frame(frame(band, trade("TSLA", 100.0, T0 + 1)), 0)  # inside the band
        engine.end_of_burst()
        engine.on_frame(frame(trade("TSLA", 105.0, T0 + 2)), 0)  # at limit up
        engine.end_of_burst()
    rec = got.records()
    assert rec["flags"].tolist()[0] & FLAG_HALTED == 0
    assert rec["flags"].tolist()[1] & FLAG_HALTED


async def test_kill_switch_stops_emitting_but_keeps_consuming(embedded: EmbeddedBackend) -> None:
    got = Collector()
    engine = Engine(make_config(), feed=False, embedded=embedded, on_signals=got,
                    context_store=False)  # fmt: skip
    async with engine:
        engine.on_frame(frame(trade("AAPL", 100.0, T0)), 0)
        engine.end_of_burst()
        assert len(got.batches) == 1 and engine.serving
        engine.kill("test")
        assert not engine.serving and engine.killed
        engine.on_frame(frame(trade("AAPL", 101.0, T0 + 1)), 0)
        engine.end_of_burst()
        assert len(got.batches) == 1
        assert engine.counters.frames_while_killed == 1
        assert engine.kernel.last_price[0] == 101.0  # state stays current


async def test_kill_switch_by_posix_signal(embedded: EmbeddedBackend) -> None:
    config = make_config(**{"engine.kill_signal": "SIGUSR1"})
    engine = Engine(config, feed=False, embedded=embedded, context_store=False)
    async with engine:
        os.kill(os.getpid(), signal.SIGUSR1)
        for _ in range(100):
            if engine.killed:
                break
            await asyncio.sleep(0.01)
        assert engine.killed and "SIGUSR1" in engine.kill_reason
    # the handler is removed on stop: the default action must not be left pointing at us
    assert asyncio.get_running_loop() is not None


async def test_async_iterator_gets_every_batch_then_ends(
    embedded: EmbeddedBackend, frames: list[bytes]
) -> None:
    engine = Engine(make_config(), feed=lambda s: SyntheticSource(frames[:100], s),
                    embedded=embedded, context_store=False)  # fmt: skip
    received: list[bytes] = []
    stream = engine.signals()  # subscribed from here on

    async def consume() -> None:
        async for packed in stream:
            received.append(packed)  # noqa: PERF401 - a consumer loop, as users write it

    await engine.start()
    task = asyncio.create_task(consume())
    await asyncio.sleep(0)
    await engine.wait()
    await engine.stop()
    await asyncio.wait_for(task, 5)
    rec = unpack(b"".join(received))
    assert rec.shape[0] == engine.counters.signals_emitted
    assert (rec["sequence"] == np.arange(1, rec.shape[0] + 1)).all()


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
async def test_config_built_synthetic_feed(embedded: EmbeddedBackend, encoding: str) -> None:
    got = Collector()
    config = make_config(**{"feed.encoding": encoding, "feed.synthetic_frames": 50})
    async with Engine(config, embedded=embedded, on_signals=got, context_store=False) as engine:
        await engine.wait()
    assert engine.snapshot()["parser_drops"] == {}
    assert got.records().shape[0] == engine.counters.signals_emitted > 0


def _without_emit_time(packed: bytes) -> bytes:
    """Signals with emit_ts_ns (bytes 24..32) and the CRC that covers it (60..64) zeroed."""
    rows = np.frombuffer(packed, np.uint8).reshape(-1, 64).copy()
    rows[:, 24:32] = 0
    rows[:, 60:64] = 0
    return rows.tobytes()


async def test_replaying_a_recording_is_byte_identical(
    embedded: EmbeddedBackend, frames: list[bytes], tmp_path: Any
) -> None:
    from relentless_fast.feeds.base import FrameEncoding
    from relentless_fast.feeds.recording import RecordingWriter, ReplayFeed

    path = tmp_path / "day.rfframes"
    with RecordingWriter(path, FrameEncoding.JSON) as writer:
        for i, f in enumerate(frames):
            writer.write(f, T0 + i * 100_000)  # 100 us apart: 30 ms at recorded pace
    config = make_config()  # default batching: a replay feed answers each frame on its own
    runs = []
    for speed in (None, 1.0):  # as fast as possible, then at recorded pace: the same signals
        got = Collector()
        engine = Engine(config, feed=lambda s, v=speed: ReplayFeed(path, s, speed=v),
                        embedded=embedded, on_signals=got, context_store=False)  # fmt: skip
        async with engine:
            await engine.wait()
        runs.append(b"".join(got.batches))
    assert len(runs[0]) > 64 * 100
    assert runs[0] != runs[1]  # emit times differ ...
    assert _without_emit_time(runs[0]) == _without_emit_time(runs[1])  # ... nothing else


async def test_gc_is_frozen_while_running_and_unfrozen_after(embedded: EmbeddedBackend) -> None:
    import gc

    config = make_config(**{"engine.gc_freeze": "true"})
    before = gc.get_freeze_count()
    async with Engine(config, feed=False, embedded=embedded, context_store=False) as engine:
        assert gc.get_freeze_count() > before
        engine.on_frame(frame(trade("AAPL", 100.0, T0)), 0)
        engine.end_of_burst()
    assert gc.get_freeze_count() == 0


async def test_context_becomes_stale_when_the_trading_days_pass(
    embedded: EmbeddedBackend, tmp_path: Any
) -> None:
    import datetime as dt

    snap = tmp_path / "context.pb"
    write_snapshot(snap, daily_context(4))  # as of today
    store = ContextStore(snapshot_path=snap, poll_interval_s=0.05)
    engine = Engine(make_config(), feed=False, embedded=embedded, context_store=store)
    async with engine:
        assert engine.context.version == 4 and not engine.context.stale
        today = dt.date.today()
        assert not engine.refresh_staleness(today)
        assert engine.refresh_staleness(today + dt.timedelta(days=10))
        assert engine.context.stale and engine.context.version == 4
        assert engine.refresh_staleness(today) and not engine.context.stale


async def test_frames_outside_the_session_are_ignored(embedded: EmbeddedBackend) -> None:
    got = Collector()
    engine = Engine(make_config(), feed=False, embedded=embedded, on_signals=got,
                    context_store=False)  # fmt: skip
    engine.on_frame(frame(trade("AAPL", 100.0, T0)), 0)  # not started
    async with engine:
        engine.on_frame(frame(trade("AAPL", 100.0, T0 + 1)), 0)  # answered at stop at the latest
    engine.on_frame(frame(trade("AAPL", 100.0, T0 + 2)), 0)  # stopped
    assert engine.counters.frames_ignored == 2 and engine.counters.frames == 1
    assert got.records()["event_ts_ns"].tolist() == [T0 + 1]


async def test_a_failing_output_is_counted_and_the_others_still_get_the_batch(
    embedded: EmbeddedBackend,
) -> None:
    class Broken:
        counters = Collector()  # any object with attributes: the snapshot lists them

        def publish(self, packed: Any, m: int) -> int:
            raise OSError("output failed")

        async def aclose(self) -> None:
            return None

    got = Collector()
    engine = Engine(make_config(), feed=False, embedded=embedded, on_signals=got,
                    context_store=False)  # fmt: skip
    async with engine:
        engine.udp = Broken()
        engine.on_frame(frame(trade("AAPL", 100.0, T0)), 0)
        engine.end_of_burst()
    assert len(got.batches) == 1
    assert engine.snapshot()["errors"]["output"] == 1


@pytest.mark.parametrize("flush_each_frame", ["false", "true"])
async def test_a_listener_feeding_a_frame_during_publish_gets_it_answered_after(
    embedded: EmbeddedBackend, flush_each_frame: str
) -> None:
    """Re-entry from a listener must not overwrite the batch being published."""
    seen: list[tuple[int, list[int], bytes]] = []
    engine: Engine | None = None

    def listener(batch: SignalBatch) -> None:
        assert engine is not None
        before = bytes(batch.packed)
        if not seen:
            engine.on_frame(frame(trade("MSFT", 50.0, T0 + 1)), 0)  # a trading process's echo
        assert bytes(batch.packed) == before  # the batch in hand is intact
        seen.append((batch.first_sequence, batch.records["symbol_id"].tolist(), before))

    config = make_config(**{"inference.flush_each_frame": flush_each_frame})
    engine = Engine(config, feed=False, embedded=embedded, on_signals=listener,
                    context_store=False)  # fmt: skip
    async with engine:
        engine.on_frame(frame(trade("AAPL", 100.0, T0)), 0)
        engine.end_of_burst()
        for _ in range(3):
            await asyncio.sleep(0)
    assert [(s, ids) for s, ids, _ in seen] == [(1, [0]), (2, [1])]
