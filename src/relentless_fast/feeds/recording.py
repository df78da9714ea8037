"""Frame recordings: raw payloads of any feed with their receive timestamps, and replay.

File format v1 (all integers little-endian)::

    header, 16 bytes
      0  8  magic            b"RFFRAMES"
      8  2  version          1
     10  1  encoding         FrameEncoding value (1 JSON, 2 MSGPACK, 3 BINARY)
     11  1  reserved         0
     12  4  reserved         0
    then records, back to back, until end of file
      0  8  recv_ts_ns       u64, CLOCK_REALTIME ns when the frame was received
      8  4  length           u32, payload bytes
     12  n  payload          the frame exactly as received (no decoding, no re-encoding)

12 bytes of overhead per frame. A file cut short (a crashed recorder) is refused with the offset of
the partial record; :func:`open_recording` checks the whole file before the first frame is
delivered. :class:`ReplayFeed` plays a file into any :class:`~relentless_fast.feeds.base.FrameSink`
at recorded pace, at a multiple of it, or as fast as possible.
"""

from __future__ import annotations

import asyncio
import mmap
import struct
import time
from collections.abc import Generator
from pathlib import Path
from typing import BinaryIO, Final, Literal

from relentless_fast.feeds.base import (
    BytesLike,
    Feed,
    FeedError,
    FeedState,
    FrameEncoding,
    FrameSink,
)

__all__ = [
    "MAGIC",
    "VERSION",
    "Recording",
    "RecordingFormatError",
    "RecordingSink",
    "RecordingWriter",
    "ReplayFeed",
    "open_recording",
    "read_recording",
]

MAGIC: Final = b"RFFRAMES"
VERSION: Final = 1
_HEADER: Final = struct.Struct("<8sHBBI")
_RECORD: Final = struct.Struct("<QI")
_MAX_PAYLOAD: Final = 0xFFFFFFFF


class RecordingFormatError(ValueError):
    """The file is not a valid frame recording; the message says where and why."""


class RecordingWriter:
    """Appends frames to a new recording file (buffered; call :meth:`close` or use ``with``)."""

    def __init__(
        self, path: str | Path, encoding: FrameEncoding, *, buffer_bytes: int = 1 << 20
    ) -> None:
        self.path = Path(path)
        self.encoding = FrameEncoding(encoding)
        self.frames = 0
        self.bytes = _HEADER.size
        self._file: BinaryIO = open(self.path, "wb", buffering=buffer_bytes)  # noqa: SIM115
        self._file.write(_HEADER.pack(MAGIC, VERSION, int(self.encoding), 0, 0))

    def write(self, payload: BytesLike, recv_ts_ns: int) -> None:
        """Append one frame (the payload is copied into the file buffer)."""
        size = len(payload) if not isinstance(payload, memoryview) else payload.nbytes
        if size > _MAX_PAYLOAD:
            raise ValueError(f"frame of {size} bytes exceeds the 4 GiB record limit")
        self._file.write(_RECORD.pack(recv_ts_ns, size))
        self._file.write(payload)
        self.frames += 1
        self.bytes += _RECORD.size + size

    def flush(self) -> None:
        """Push buffered records to the operating system."""
        self._file.flush()

    def close(self) -> None:
        """Flush and close (idempotent)."""
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RecordingSink:
    """A sink that records every frame and forwards frames and events to ``forward`` (if any)."""

    def __init__(self, writer: RecordingWriter, forward: FrameSink | None = None) -> None:
        self.writer = writer
        self.forward = forward

    def on_frame(self, payload: BytesLike, recv_ts_ns: int) -> None:
        """Record, then forward."""
        self.writer.write(payload, recv_ts_ns)
        if self.forward is not None:
            self.forward.on_frame(payload, recv_ts_ns)

    def on_state(self, state: FeedState, detail: str) -> None:
        """Forward."""
        if self.forward is not None:
            self.forward.on_state(state, detail)

    def on_error(self, error: FeedError) -> None:
        """Forward."""
        if self.forward is not None:
            self.forward.on_error(error)


class Recording:
    """A validated, memory-mapped recording; iterate for ``(recv_ts_ns, payload view)``.

    The views point into the mapping and are released after each step of the iteration (see the
    payload lifetime in :mod:`relentless_fast.feeds.base`): copy what must be kept.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as f:
            size = f.seek(0, 2)
            if size < _HEADER.size:
                raise RecordingFormatError(
                    f"{self.path}: {size} bytes, shorter than the {_HEADER.size}-byte header:"
                    " not a frame recording"
                )
            self._map: mmap.mmap | None = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self._view = memoryview(self._map)
        magic, version, encoding, _, _ = _HEADER.unpack_from(self._view, 0)
        if magic != MAGIC:
            self.close()
            raise RecordingFormatError(
                f"{self.path}: bad magic {bytes(magic)!r} (expected {MAGIC!r}):"
                " not a frame recording"
            )
        if version != VERSION:
            self.close()
            raise RecordingFormatError(
                f"{self.path}: format version {version} is not supported (this reader: {VERSION})"
            )
        try:
            self.encoding = FrameEncoding(encoding)
        except ValueError:
            self.close()
            raise RecordingFormatError(f"{self.path}: unknown encoding {encoding}") from None
        self.frames, self.first_ts_ns, self.last_ts_ns = self._scan(size)

    def _scan(self, size: int) -> tuple[int, int, int]:
        view = self._view
        offset = _HEADER.size
        count = first = last = 0
        unpack = _RECORD.unpack_from
        while offset < size:
            if offset + _RECORD.size > size:
                self.close()
                raise RecordingFormatError(
                    f"{self.path}: truncated record header at offset {offset} (record {count}):"
                    f" {size - offset} of {_RECORD.size} bytes present"
                )
            ts, length = unpack(view, offset)
            end = offset + _RECORD.size + length
            if end > size:
                self.close()
                raise RecordingFormatError(
                    f"{self.path}: truncated record {count} at offset {offset}: header says"
                    f" {length} payload bytes, {size - offset - _RECORD.size} present"
                )
            if count == 0:
                first = ts
            last = ts
            count += 1
            offset = end
        return count, first, last

    def __iter__(self) -> Generator[tuple[int, memoryview], None, None]:
        view = self._view
        size = view.nbytes
        offset = _HEADER.size
        unpack = _RECORD.unpack_from
        header = _RECORD.size
        while offset < size:
            ts, length = unpack(view, offset)
            start = offset + header
            offset = start + length
            payload = view[start:offset]
            try:
                yield ts, payload
            finally:
                payload.release()

    def close(self) -> None:
        """Unmap the file (idempotent; fails if a payload view is still held)."""
        if self._map is not None:
            self._view.release()
            self._map.close()
            self._map = None

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_recording(path: str | Path) -> Recording:
    """Open and validate a recording (raises :class:`RecordingFormatError` with the reason)."""
    return Recording(path)


def read_recording(path: str | Path) -> tuple[FrameEncoding, list[tuple[int, bytes]]]:
    """The encoding and every ``(recv_ts_ns, payload)`` of a recording, copied into memory."""
    with Recording(path) as rec:
        return rec.encoding, [(ts, bytes(payload)) for ts, payload in rec]


class ReplayFeed(Feed):
    """Plays a recording into a sink, as a :class:`~relentless_fast.feeds.base.Feed`.

    ``speed``: ``1.0`` recorded pace, ``k`` k times faster, ``None`` as fast as possible.
    ``timestamps``: ``"now"`` gives each frame its delivery time (CLOCK_REALTIME, as a live feed
    would); ``"recorded"`` passes the recorded receive time. States: SUBSCRIBED while playing,
    STOPPED at the end or on :meth:`stop`.
    """

    replays_recording = True

    def __init__(
        self,
        source: str | Path | Recording,
        sink: FrameSink,
        *,
        speed: float | None = 1.0,
        timestamps: Literal["now", "recorded"] = "now",
        yield_every: int = 256,
    ) -> None:
        recording = source if isinstance(source, Recording) else Recording(source)
        super().__init__(sink, recording.encoding)
        if speed is not None and not speed > 0:
            raise ValueError(f"speed: must be > 0 or None (as fast as possible), got {speed}")
        if timestamps not in ("now", "recorded"):
            raise ValueError(f"timestamps: 'now' or 'recorded', got {timestamps!r}")
        self.recording = recording
        self.speed = speed
        self.timestamps = timestamps
        self.yield_every = max(1, yield_every)
        self._owns = not isinstance(source, Recording)
        self._stopping = False

    async def run(self) -> None:
        """Deliver every frame, then return (state STOPPED)."""
        self._set_state(FeedState.SUBSCRIBED, f"replaying {self.recording.path}")
        speed = self.speed
        recorded = self.timestamps == "recorded"
        start = time.monotonic()
        first = self.recording.first_ts_ns
        every = self.yield_every
        n = 0
        frames = iter(self.recording)
        try:
            for ts, payload in frames:
                if self._stopping:
                    break
                if speed is not None:
                    delay = start + (ts - first) / 1e9 / speed - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                        if self._stopping:
                            break
                n += 1
                if n % every == 0:
                    await asyncio.sleep(0)
                self._deliver(payload, ts if recorded else time.time_ns(), payload.nbytes)
        finally:
            frames.close()  # releases the last payload view before the file is unmapped
            if self._owns:
                self.recording.close()
        self._set_state(FeedState.STOPPED, f"replayed {n} frames")

    def stop(self) -> None:
        """Stop after the current frame."""
        self._stopping = True
