"""The feed interface: raw frame payloads plus state/health events, delivered to a sink.

A *feed* owns a transport (Alpaca WebSocket, a recording, a direct exchange-style binary feed) and
hands every **data** frame to a :class:`FrameSink` as raw bytes, undecoded, together with its
CLOCK_REALTIME receive timestamp in ns. Protocol chatter (auth, subscription, errors, pings) stays
inside the feed and surfaces only as :meth:`FrameSink.on_state` / :meth:`FrameSink.on_error` calls.

Payload lifetime
----------------
.. DANGER::
   The ``payload`` passed to :meth:`FrameSink.on_frame` may be a view into the transport's read
   buffer (picows ``WSFrame.get_payload_as_memoryview()``, a memory-mapped recording). It is valid
   **only for the duration of the call**: parse it, or copy it (``bytes(payload)``) if it must
   outlive the call. Never keep the view, never release it, never write to it.

Threading: every sink call happens on the feed's event loop thread, in frame order; a sink must
not block (it is the hot path) and must not raise. An exception from ``on_frame`` is counted in
:attr:`FeedCounters.sink_errors`, logged once per feed, and the frame is dropped.
"""

from __future__ import annotations

import abc
import enum
import logging
from dataclasses import dataclass, field
from typing import Protocol, TypeAlias, runtime_checkable

__all__ = [
    "BytesLike",
    "CollectingSink",
    "Feed",
    "FeedCounters",
    "FeedError",
    "FeedFatalError",
    "FeedState",
    "FrameEncoding",
    "FrameSink",
    "NullSink",
]

log = logging.getLogger(__name__)

BytesLike: TypeAlias = bytes | bytearray | memoryview
"""What a sink receives as ``payload``: usually a borrowed ``memoryview`` (see the module docs)."""


class FrameEncoding(enum.IntEnum):
    """How the payloads of a feed are encoded (stored in recordings: values are stable)."""

    JSON = 1
    """Alpaca JSON text frames: an array of objects."""
    MSGPACK = 2
    """Alpaca msgpack binary frames: an array of maps, ``t`` as a msgpack Timestamp ext."""
    BINARY = 3
    """An opaque exchange-style binary protocol; the sink's parser knows the layout."""


class FeedState(enum.IntEnum):
    """Lifecycle and health of a feed, reported through :meth:`FrameSink.on_state`."""

    IDLE = 0
    CONNECTING = 1
    CONNECTED = 2
    """Transport up and the server greeted us; not yet authenticated."""
    AUTHENTICATED = 3
    SUBSCRIBED = 4
    """Subscription confirmed; data flows. Re-entered when a stale feed delivers again."""
    STALE = 5
    """Subscribed, but no data frame for the configured time."""
    RECONNECTING = 6
    """Session lost; waiting the backoff delay before the next attempt."""
    STOPPED = 7
    """Stopped on request or at the end of a finite source (a replay)."""
    FAILED = 8
    """Stopped after a fatal error (see :class:`FeedError`); ``run()`` raises."""


@dataclass(frozen=True, slots=True)
class FeedError:
    """A protocol or transport error seen by a feed.

    ``code`` is the protocol's error code (Alpaca 400-411, 500) or ``None`` for transport and
    local errors (connect refused, ping timeout, reply timeout). ``fatal`` errors end the feed;
    the others lead to a reconnect (``retry``) or are only reported.
    """

    code: int | None
    message: str
    fatal: bool = False
    retry: bool = False


class FeedFatalError(RuntimeError):
    """Raised by :meth:`Feed.run` when the feed stops on an error that retrying cannot fix."""

    def __init__(self, error: FeedError) -> None:
        code = "" if error.code is None else f" {error.code}"
        super().__init__(f"feed failed:{code} {error.message}")
        self.error = error


@runtime_checkable
class FrameSink(Protocol):
    """Receives a feed's data frames and its state/health events (see the module docstring)."""

    def on_frame(self, payload: BytesLike, recv_ts_ns: int) -> None:
        """One raw data frame; ``payload`` is valid only during this call."""

    def on_state(self, state: FeedState, detail: str) -> None:
        """The feed entered ``state``; ``detail`` is a short human-readable reason."""

    def on_error(self, error: FeedError) -> None:
        """The feed saw ``error`` (it also changes state when the error is fatal or retried)."""


class NullSink:
    """A sink that ignores everything; subclass it and override what you need."""

    def on_frame(self, payload: BytesLike, recv_ts_ns: int) -> None:
        """Drop the frame."""

    def on_state(self, state: FeedState, detail: str) -> None:
        """Ignore the state change."""

    def on_error(self, error: FeedError) -> None:
        """Ignore the error."""


class CollectingSink(NullSink):
    """Copies every frame and event into lists (tests, tools; not for the hot path)."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.recv_ts_ns: list[int] = []
        self.states: list[tuple[FeedState, str]] = []
        self.errors: list[FeedError] = []

    def on_frame(self, payload: BytesLike, recv_ts_ns: int) -> None:
        """Keep a copy of the payload and its timestamp."""
        self.frames.append(bytes(payload))
        self.recv_ts_ns.append(recv_ts_ns)

    def on_state(self, state: FeedState, detail: str) -> None:
        """Keep the state change."""
        self.states.append((state, detail))

    def on_error(self, error: FeedError) -> None:
        """Keep the error."""
        self.errors.append(error)


@dataclass(slots=True)
class FeedCounters:
    """Monotonic counters of a feed (read them any time; the feed mutates them in place)."""

    data_frames: int = 0
    data_bytes: int = 0
    control_frames: int = 0
    connects: int = 0
    """Successful transport connections (the first one included)."""
    reconnects: int = 0
    """Reconnect attempts scheduled after a lost or failed session."""
    subscriptions: int = 0
    """Subscription confirmations received."""
    stale_events: int = 0
    sink_errors: int = 0
    unknown_control: int = 0
    errors_by_code: dict[int, int] = field(default_factory=dict)
    """Protocol error frames received, by code."""


class Feed(abc.ABC):
    """A source of raw frames. Subclasses implement :meth:`run` and :meth:`stop`.

    Contract: ``run()`` delivers frames to ``sink`` until ``stop()`` is called (then returns), the
    source ends (returns, state ``STOPPED``) or a fatal error happens (state ``FAILED``, raises
    :class:`FeedFatalError`). It is called at most once per instance, on a running event loop.
    """

    encoding: FrameEncoding
    replays_recording: bool = False
    """True for a feed that plays recorded frames: the engine then answers each frame before
    the next (batch boundaries depend only on the frames), so a replay is byte-identical."""

    def __init__(self, sink: FrameSink, encoding: FrameEncoding) -> None:
        self.sink = sink
        self.encoding = encoding
        self.counters = FeedCounters()
        self.state = FeedState.IDLE
        self._sink_error_logged = False

    @abc.abstractmethod
    async def run(self) -> None:
        """Deliver frames until stopped, ended or failed (see the class docstring)."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Ask ``run()`` to return soon; idempotent, safe from any callback on the loop."""

    def _set_state(self, state: FeedState, detail: str = "") -> None:
        if state is self.state:
            return
        self.state = state
        try:
            self.sink.on_state(state, detail)
        except Exception:
            self._sink_failed()

    def _report_error(self, error: FeedError) -> None:
        if error.code is not None:
            by_code = self.counters.errors_by_code
            by_code[error.code] = by_code.get(error.code, 0) + 1
        log.log(logging.ERROR if error.fatal else logging.WARNING, "feed error: %s", error)
        try:
            self.sink.on_error(error)
        except Exception:
            self._sink_failed()

    def _deliver(self, payload: BytesLike, recv_ts_ns: int, size: int) -> None:
        counters = self.counters
        counters.data_frames += 1
        counters.data_bytes += size
        try:
            self.sink.on_frame(payload, recv_ts_ns)
        except Exception:
            self._sink_failed()

    def _sink_failed(self) -> None:
        self.counters.sink_errors += 1
        if not self._sink_error_logged:
            self._sink_error_logged = True
            log.exception("feed sink raised; frame or event dropped (logged once per feed)")
