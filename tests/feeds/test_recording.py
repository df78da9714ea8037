"""Recordings: byte-exact round trip, pacing modes (loose bounds), and clear errors on bad files."""

from __future__ import annotations

import asyncio
import struct
import time
from pathlib import Path

import pytest

from relentless_fast.feeds.base import (
    BytesLike,
    CollectingSink,
    Feed,
    FeedState,
    FrameEncoding,
    FrameSink,
)
from relentless_fast.feeds.recording import (
    MAGIC,
    RecordingFormatError,
    RecordingSink,
    RecordingWriter,
    ReplayFeed,
    open_recording,
    read_recording,
)
from tests.feeds.conftest import json_frames


def write_file(path: Path, frames: list[bytes], step_ns: int = 1_000_000) -> list[int]:
    """Record ``frames`` with timestamps ``step_ns`` apart; return the timestamps."""
    stamps = [1_700_000_000_000_000_000 + i * step_ns for i in range(len(frames))]
    with RecordingWriter(path, FrameEncoding.JSON) as writer:
        for ts, frame in zip(stamps, frames, strict=True):
            writer.write(frame, ts)
    return stamps


def test_round_trip_is_byte_exact(tmp_path: Path) -> None:
    frames = [*json_frames(50), b"", b"\x00\xff binary junk is kept as is"]
    stamps = write_file(tmp_path / "a.rff", frames)
    encoding, records = read_recording(tmp_path / "a.rff")
    assert encoding is FrameEncoding.JSON
    assert [p for _, p in records] == frames
    assert [t for t, _ in records] == stamps
    size = (tmp_path / "a.rff").stat().st_size
    assert size == 16 + sum(12 + len(f) for f in frames)  # compact: 12 bytes per frame
    with open_recording(tmp_path / "a.rff") as rec:
        assert (rec.frames, rec.first_ts_ns, rec.last_ts_ns) == (len(frames), stamps[0], stamps[-1])


def test_empty_recording_is_valid(tmp_path: Path) -> None:
    RecordingWriter(tmp_path / "e.rff", FrameEncoding.MSGPACK).close()
    assert read_recording(tmp_path / "e.rff") == (FrameEncoding.MSGPACK, [])


async def test_record_sink_then_replay_gives_same_frames(tmp_path: Path) -> None:
    frames = json_frames(200, seed=3)
    forward = CollectingSink()
    with RecordingWriter(tmp_path / "r.rff", FrameEncoding.JSON) as writer:
        sink = RecordingSink(writer, forward)
        for i, frame in enumerate(frames):
            sink.on_frame(memoryview(frame), 1_000 + i)
    assert forward.frames == frames
    replayed = CollectingSink()
    feed = ReplayFeed(tmp_path / "r.rff", replayed, speed=None, timestamps="recorded")
    await feed.run()
    assert replayed.frames == frames
    assert replayed.recv_ts_ns == [1_000 + i for i in range(len(frames))]
    assert feed.counters.data_frames == len(frames)
    assert [s for s, _ in replayed.states] == [FeedState.SUBSCRIBED, FeedState.STOPPED]


async def test_replay_views_are_released_after_each_frame(tmp_path: Path) -> None:
    write_file(tmp_path / "v.rff", json_frames(3))
    kept: list[memoryview] = []

    class Keeper(CollectingSink):
        def on_frame(self, payload: bytes | bytearray | memoryview, recv_ts_ns: int) -> None:
            assert isinstance(payload, memoryview)
            kept.append(payload)

    await ReplayFeed(tmp_path / "v.rff", Keeper(), speed=None).run()
    with pytest.raises(ValueError, match="released"):
        bytes(kept[0])  # the lifetime contract is enforced, not just documented


async def test_replay_pacing_modes(tmp_path: Path) -> None:
    # 21 frames 10 ms apart: 200 ms of recorded time.
    write_file(tmp_path / "p.rff", json_frames(21), step_ns=10_000_000)

    async def timed(speed: float | None) -> float:
        sink = CollectingSink()
        start = time.monotonic()
        await ReplayFeed(tmp_path / "p.rff", sink, speed=speed).run()
        assert len(sink.frames) == 21
        return time.monotonic() - start

    recorded = await timed(1.0)
    doubled = await timed(4.0)
    fastest = await timed(None)
    assert recorded >= 0.18  # never faster than recorded pace
    assert doubled >= 0.045  # 200 ms / 4
    assert fastest < recorded
    assert doubled < recorded


async def test_replay_stop_ends_early(tmp_path: Path) -> None:
    write_file(tmp_path / "s.rff", json_frames(100), step_ns=50_000_000)  # 5 s long
    sink = CollectingSink()
    feed = ReplayFeed(tmp_path / "s.rff", sink, speed=1.0)
    task = asyncio.create_task(feed.run())
    await asyncio.sleep(0.12)
    feed.stop()
    await asyncio.wait_for(task, 2.0)
    assert 1 <= len(sink.frames) < 100
    assert sink.states[-1][0] is FeedState.STOPPED


def test_bad_speed_is_refused(tmp_path: Path) -> None:
    write_file(tmp_path / "b.rff", json_frames(1))
    with pytest.raises(ValueError, match="speed"):
        ReplayFeed(tmp_path / "b.rff", CollectingSink(), speed=0)


def test_malformed_files_give_clear_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.rff"
    write_file(good, json_frames(5))
    data = good.read_bytes()

    cases = {
        "short": (b"RFF", "shorter than the 16-byte header"),
        "magic": (b"NOTAREC!" + data[8:], "bad magic"),
        "version": (MAGIC + struct.pack("<H", 9) + data[10:], "version 9 is not supported"),
        "encoding": (data[:10] + b"\x07" + data[11:], "unknown encoding 7"),
        "cut_payload": (data[:-5], "truncated record 4 at offset"),
        "cut_header": (data + b"\x01\x02\x03", "truncated record header at offset"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / f"{name}.rff"
        path.write_bytes(content)
        with pytest.raises(RecordingFormatError, match=message):
            open_recording(path)
        with pytest.raises(RecordingFormatError):
            ReplayFeed(path, CollectingSink())


class ListBinaryFeed(Feed):
    """A stand-in for a direct exchange-style binary feed: only the base-class hooks are used."""

    def __init__(self, datagrams: list[bytes], sink: FrameSink) -> None:
        super().__init__(sink, FrameEncoding.BINARY)
        self.datagrams = datagrams
        self._stopping = False

    async def run(self) -> None:
        self._set_state(FeedState.SUBSCRIBED, "joined")
        for i, datagram in enumerate(self.datagrams):
            if self._stopping:
                break
            self._deliver(memoryview(datagram), 5_000 + i, len(datagram))
            await asyncio.sleep(0)
        self._set_state(FeedState.STOPPED, "end")

    def stop(self) -> None:
        self._stopping = True


async def test_a_binary_feed_is_a_drop_in_for_recording_and_replay(tmp_path: Path) -> None:
    datagrams = [bytes([i]) * (i + 1) for i in range(40)]
    live = CollectingSink()
    with RecordingWriter(tmp_path / "bin.rff", FrameEncoding.BINARY) as writer:
        feed = ListBinaryFeed(datagrams, RecordingSink(writer, live))
        await feed.run()
    assert live.frames == datagrams and feed.counters.data_frames == 40
    assert [s for s, _ in live.states] == [FeedState.SUBSCRIBED, FeedState.STOPPED]
    encoding, records = read_recording(tmp_path / "bin.rff")
    assert encoding is FrameEncoding.BINARY
    assert records == [(5_000 + i, d) for i, d in enumerate(datagrams)]


async def test_a_raising_sink_costs_only_the_frame(tmp_path: Path) -> None:
    class Flaky(CollectingSink):
        def on_frame(self, payload: BytesLike, recv_ts_ns: int) -> None:
            if payload[0] == 3:
                raise RuntimeError("sink bug")
            super().on_frame(payload, recv_ts_ns)

    sink = Flaky()
    feed = ListBinaryFeed([bytes([i]) for i in range(6)], sink)
    await feed.run()
    assert sink.frames == [bytes([i]) for i in (0, 1, 2, 4, 5)]
    assert feed.counters.sink_errors == 1 and feed.counters.data_frames == 6
