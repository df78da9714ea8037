"""Feeds the engine builds from ``[feed]``: the synthetic generator, a recording, Alpaca.

:class:`SyntheticSource` plays frames rendered up front from the seeded generator
(:class:`relentless_fast.feeds.synthetic.SyntheticFeed`) as a
:class:`~relentless_fast.feeds.base.Feed`, so the engine sees it exactly as it sees a WebSocket
or a recording.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Final

from relentless_fast.config import Config
from relentless_fast.feeds.base import Feed, FeedState, FrameEncoding, FrameSink
from relentless_fast.feeds.synthetic import SyntheticFeed

ENGINE_MIX: Final[Mapping[str, float]] = {
    "t": 0.45, "q": 0.47, "b": 0.01, "c": 0.01, "x": 0.01, "s": 0.01, "l": 0.02, "i": 0.02,
}  # fmt: skip
"""Mostly trades and quotes, with every other kind (halts and LULD bands included) now and then."""

SAMPLE_RECORDING: Final = "sample-synthetic.rfframes"
"""Bundled sample recording (``relentless_fast/data``): SYNTHETIC frames from the generator."""


def sample_recording_path() -> Path:
    """Path of the bundled synthetic sample recording."""
    return Path(str(resources.files("relentless_fast") / "data" / SAMPLE_RECORDING))


def render_frames(
    symbols: Sequence[str],
    *,
    n_frames: int,
    seed: int,
    max_messages: int,
    encoding: FrameEncoding = FrameEncoding.JSON,
    mix: Mapping[str, float] = ENGINE_MIX,
) -> list[bytes]:
    """``n_frames`` Alpaca frames of 1..``max_messages`` messages from the seeded generator."""
    gen = SyntheticFeed(symbols, seed=seed, mix=dict(mix))
    render = gen.json_frame if encoding is FrameEncoding.JSON else gen.msgpack_frame
    return [render(msgs) for msgs in gen.frames(n_frames, 1, max_messages)]


class SyntheticSource(Feed):
    """Delivers pre-rendered frames at ``rate_fps`` (0: as fast as the sink takes them)."""

    def __init__(
        self,
        frames: Sequence[bytes],
        sink: FrameSink,
        *,
        encoding: FrameEncoding = FrameEncoding.JSON,
        rate_fps: float = 0.0,
        yield_every: int = 64,
    ) -> None:
        super().__init__(sink, encoding)
        self.frames = frames
        self.rate_fps = rate_fps
        self.yield_every = max(1, yield_every)
        self._stopping = False

    async def run(self) -> None:
        """Deliver every frame, then return (state STOPPED)."""
        self._set_state(FeedState.SUBSCRIBED, f"synthetic: {len(self.frames)} frames")
        rate = self.rate_fps
        start = time.monotonic()
        every = self.yield_every
        for i, frame in enumerate(self.frames):
            if self._stopping:
                break
            if rate > 0:
                delay = start + i / rate - time.monotonic()
                if delay > 0.0005:
                    await asyncio.sleep(delay)
                elif i % every == every - 1:
                    await asyncio.sleep(0)
            elif i % every == every - 1:
                await asyncio.sleep(0)
            self._deliver(frame, time.time_ns(), len(frame))
        self._set_state(FeedState.STOPPED, "synthetic stream ended")

    def stop(self) -> None:
        """Stop after the current frame."""
        self._stopping = True


def build_feed(config: Config, sink: FrameSink) -> Feed:
    """The feed ``[feed]`` describes, delivering to ``sink``."""
    fc = config.feed
    encoding = FrameEncoding.JSON if fc.encoding == "json" else FrameEncoding.MSGPACK
    if fc.source == "synthetic":
        frames = render_frames(
            _symbols(config),
            n_frames=fc.synthetic_frames,
            seed=fc.synthetic_seed,
            max_messages=fc.synthetic_max_messages,
            encoding=encoding,
        )
        return SyntheticSource(frames, sink, encoding=encoding, rate_fps=fc.synthetic_rate_fps)
    if fc.source == "replay":
        from relentless_fast.feeds.recording import ReplayFeed

        path = fc.recording_path or sample_recording_path()
        return ReplayFeed(path, sink, speed=fc.replay_speed or None, timestamps="now")
    from relentless_fast.feeds.alpaca import AlpacaFeed, AlpacaFeedConfig

    symbols = tuple(_symbols(config))
    channels: dict[str, Any] = {ch: symbols for ch in fc.channels}
    alpaca = AlpacaFeedConfig(
        url=fc.url,
        encoding=encoding,
        auth_in_headers=fc.auth_in_headers,
        header_auth_grace_secs=fc.header_auth_grace_secs,
        stale_after_secs=fc.stale_after_secs,
        **channels,
    ).with_env_credentials()
    return AlpacaFeed(alpaca, sink)


def _symbols(config: Config) -> Sequence[str]:
    from relentless_fast.engine.core import symbol_table

    return symbol_table(config).symbols


SAMPLE_FRAMES: Final = 300
SAMPLE_SEED: Final = 20240724
SAMPLE_START_NS: Final = 1_721_827_800_000_000_000  # 2024-07-24T13:30:00Z, the open
SAMPLE_GAP_NS: Final = 2_000_000


def build_sample_recording(path: str | Path) -> int:
    """Write the bundled sample: SYNTHETIC frames from the seeded generator (no real market
    data), JSON, one frame every 2 ms from the 2024-07-24 open. Returns the frame count."""
    from relentless_fast.config import DEFAULT_SYMBOLS
    from relentless_fast.feeds.recording import RecordingWriter

    frames = render_frames(
        DEFAULT_SYMBOLS, n_frames=SAMPLE_FRAMES, seed=SAMPLE_SEED, max_messages=8
    )
    with RecordingWriter(path, FrameEncoding.JSON) as writer:
        for i, frame in enumerate(frames):
            writer.write(frame, SAMPLE_START_NS + i * SAMPLE_GAP_NS)
    return len(frames)
