"""An Alpaca-protocol WebSocket server on picows, for tests, benchmarks and local runs.

It speaks the market-data v2 session (``../shared/reference/alpaca-stream.md``): greeting, auth by
message or upgrade headers (success, 402), 404 on auth timeout, 403 on a second auth, 401 on a
subscribe before auth, 400 on malformed requests, 405 over the symbol limit (state unchanged), 406
over the session limit, 410 for a channel the feed lacks, additive subscribe/unsubscribe answered
with the complete state, at any time, then data frames from a list or a recording, as a burst, at a
fixed interval (slow frames) or at recorded pace. JSON or msgpack per connection
(``Content-Type: application/msgpack``); fragmented client messages are reassembled. Tests drive
faults through :class:`ServerSession` (``send_error``, ``abort``), the ``on_request`` hook and the
scripted options of :class:`ReplayServerConfig`.

Not a market simulator: every subscribed session gets the same frames, whatever it subscribed to,
unless ``filter_by_subscription`` is set; then each session gets only the messages its current
subscription covers (so an unsubscribe stops a symbol and a later subscribe starts it).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson
from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

from relentless_fast.feeds.alpaca import CHANNELS, msgpack_loads
from relentless_fast.feeds.base import FrameEncoding
from relentless_fast.feeds.synthetic import SyntheticFeed, format_rfc3339, msgpack_dumps

__all__ = [
    "ERROR_MESSAGES",
    "AlpacaReplayServer",
    "ReplayServerConfig",
    "ServerSession",
    "json_frame_to_msgpack",
    "parse_rfc3339_ns",
    "stamp_timestamps",
]

log = logging.getLogger(__name__)

ERROR_MESSAGES: Final[dict[int, str]] = {
    400: "invalid syntax",
    401: "not authenticated",
    402: "auth failed",
    403: "already authenticated",
    404: "auth timeout",
    405: "symbol limit exceeded",
    406: "connection limit exceeded",
    407: "slow client",
    408: "v2 not enabled",
    409: "insufficient subscription",
    410: "invalid subscribe action for this feed",
    411: "insufficient scope",
    500: "internal error",
}

_SUB_KEYS: Final = CHANNELS  # the subscribe keys the protocol defines, in one place
_CHANNEL_OF_TYPE: Final[dict[str, str]] = {
    "t": "trades",
    "c": "trades",  # corrections follow trades
    "x": "trades",  # cancel/errors follow trades
    "q": "quotes",
    "b": "bars",
    "u": "updatedBars",
    "d": "dailyBars",
    "s": "statuses",
    "l": "lulds",
    "i": "imbalances",
}
"""The subscription channel that carries each data message type."""
_CLOSING_ERRORS: Final = frozenset((402, 404, 406, 407, 408, 409, 411))
"""Errors after which the server closes the connection."""


@dataclass(kw_only=True)
class ReplayServerConfig:
    """What the server accepts and sends. Frames are whole payloads in ``frames_encoding``."""

    key_id: str = "test-key"
    secret_key: str = "test-secret"
    auth_timeout_secs: float = 10.0
    max_sessions: int = 1
    """Authenticated sessions allowed at once; one more gets 406 and is closed."""
    symbol_limit: int | None = None
    """Distinct trade+quote symbols allowed per session; above it a subscribe gets 405."""
    unavailable_channels: tuple[str, ...] = ()
    """Subscribe keys this feed does not offer: a request naming one gets 410, state unchanged."""
    header_auth_confirms: bool = True
    """After a good header auth, send ``authenticated`` after ``connected`` (what the protocol
    documents for message auth; unverified for header auth). False: only ``connected``."""
    filter_by_subscription: bool = False
    """Send each session only the messages its current subscription covers (decodes every
    frame: for feed tests, not for throughput benchmarks). Frames it covers whole go out as is."""
    auth_errors: list[int] = field(default_factory=list)
    """Codes answered to successive auth attempts instead of success (consumed in order)."""
    frames: Sequence[bytes] = ()
    """Data frames sent to every session after its first subscription reply."""
    frames_encoding: FrameEncoding = FrameEncoding.JSON
    frame_times_ns: Sequence[int] | None = None
    """Receive times of ``frames`` (from a recording): enables pacing by ``speed``."""
    speed: float | None = None
    """None: burst (as fast as the socket takes). With ``frame_times_ns``: recorded pace x speed."""
    frame_interval_secs: float = 0.0
    """Fixed pause before each frame (slow frames); overrides ``rate_fps`` and ``speed``."""
    rate_fps: float | None = None
    """Offered rate in frames per second (frame i is due at start + i / rate; late frames go
    out at once, so the average rate holds even though the loop sleeps in ~1 ms steps)."""
    repeat: int = 1
    """Send ``frames`` this many times in a row (long benchmark runs from a short list)."""
    reject_upgrade_status: int | None = None
    """Refuse every WebSocket upgrade with this HTTP status (e.g. 401)."""
    stamp_send_time: bool = False
    """Rewrite every message's ``t`` to the CLOCK_REALTIME send time (benchmarks: a signal's
    ``event_ts_ns`` then is the frame's send time, so consumer receive - event = end to end)."""
    log_sent: bool = True
    """Keep ``sent_frames`` and ``sent_ts_ns`` per session (turn off for long runs)."""
    abort_after_frames: int | None = None
    """Abruptly drop the connection (no close frame) after this many data frames, once flushed."""
    abort_sessions: int = 1
    """How many sessions (the first ones) ``abort_after_frames`` applies to."""
    slow_client_after_frames: int | None = None
    """Send 407 slow client and drop the connection after this many frames (first session)."""

    def __post_init__(self) -> None:
        unknown = [c for c in self.unavailable_channels if c not in _SUB_KEYS]
        if unknown:
            raise ValueError(f"unavailable_channels: unknown channels {unknown}")
        if self.rate_fps is not None and not self.rate_fps > 0:
            raise ValueError(f"rate_fps: must be > 0, got {self.rate_fps}")
        if self.speed is not None and not self.speed > 0:
            raise ValueError(f"speed: must be > 0 or None, got {self.speed}")
        if self.repeat < 1:
            raise ValueError(f"repeat: must be >= 1, got {self.repeat}")
        if self.frame_times_ns is not None and len(self.frame_times_ns) != len(self.frames):
            raise ValueError("frame_times_ns: one time per frame")

    @classmethod
    def from_recording(cls, path: str | Path, **kwargs: Any) -> ReplayServerConfig:
        """A config that serves the frames of a recording (paced if ``speed`` is given)."""
        from relentless_fast.feeds.recording import read_recording

        encoding, records = read_recording(path)
        return cls(
            frames=[payload for _, payload in records],
            frame_times_ns=[ts for ts, _ in records],
            frames_encoding=encoding,
            **kwargs,
        )


class ServerSession(WSListener):
    """One client connection: protocol state plus what was sent and received (for tests)."""

    def __init__(self, server: AlpacaReplayServer, index: int, request: WSUpgradeRequest) -> None:
        self.server = server
        self.index = index
        headers = request.headers
        self.encoding = (
            FrameEncoding.MSGPACK
            if "msgpack" in headers.get("Content-Type", "").lower()
            else FrameEncoding.JSON
        )
        self.header_key: str | None = headers.get("APCA-API-KEY-ID")
        self.header_secret: str | None = headers.get("APCA-API-SECRET-KEY")
        self.transport: WSTransport | None = None
        self.authenticated = False
        self.closed = False
        self.subscription: dict[str, list[str]] = {key: [] for key in _SUB_KEYS}
        """The session's complete subscription state (what the last reply carried)."""
        self._covered: dict[str, frozenset[str]] = {key: frozenset() for key in _SUB_KEYS}
        self.received: list[dict[str, Any]] = []
        """Client requests, decoded, in arrival order."""
        self.sent_frames: list[bytes] = []
        """Data frames written to the socket, in order (if ``log_sent``)."""
        self.sent_ts_ns: list[int] = []
        """CLOCK_REALTIME ns just before each frame was written (if ``log_sent``)."""
        self.sent_count = 0
        self.subscribed = asyncio.Event()
        self.close_code_received: WSCloseCode | None = None
        """The code of the client's close frame; None if it never sent one (an abrupt drop)."""
        self._fragments: bytearray | None = None
        self._auth_timer: asyncio.TimerHandle | None = None
        self._stream_task: asyncio.Task[None] | None = None

    # ---- picows callbacks -------------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.send_control({"T": "success", "msg": "connected"})
        if self.header_key is not None or self.header_secret is not None:
            self._authenticate(
                self.header_key,
                self.header_secret,
                confirm=self.server.config.header_auth_confirms,
            )
        else:
            loop = asyncio.get_running_loop()
            self._auth_timer = loop.call_later(
                self.server.config.auth_timeout_secs, self._on_auth_timeout
            )

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        msg_type = frame.msg_type
        if msg_type is WSMsgType.CLOSE:
            self.close_code_received = frame.get_close_code()
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        if msg_type is WSMsgType.TEXT or msg_type is WSMsgType.BINARY:
            if frame.fin:
                self._on_request(frame.get_payload_as_bytes())
            else:
                self._fragments = bytearray(frame.get_payload_as_memoryview())
        elif msg_type is WSMsgType.CONTINUATION and self._fragments is not None:
            self._fragments += frame.get_payload_as_memoryview()
            if frame.fin:
                whole, self._fragments = bytes(self._fragments), None
                self._on_request(whole)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.closed = True
        if self._auth_timer is not None:
            self._auth_timer.cancel()
        if self._stream_task is not None:
            self._stream_task.cancel()

    # ---- test controls ----------------------------------------------------------------------

    def send_control(self, message: dict[str, Any]) -> None:
        """Send one control message, alone in a one-element array, in the session encoding."""
        if self.transport is None or self.closed:
            return
        if self.encoding is FrameEncoding.MSGPACK:
            self.transport.send(WSMsgType.BINARY, msgpack_dumps([message]))
        else:
            self.transport.send(WSMsgType.TEXT, orjson.dumps([message]))

    def send_error(self, code: int, *, close: bool | None = None) -> None:
        """Send an error frame; close afterwards when ``close`` (default: as the real server)."""
        self.send_control({"T": "error", "code": code, "msg": ERROR_MESSAGES.get(code, "error")})
        if close is None:
            close = code in _CLOSING_ERRORS
        if close:
            self.close()

    def send_data(self, payload: bytes) -> None:
        """Send one data frame as is (text for JSON, binary for msgpack)."""
        if self.transport is None or self.closed:
            return
        kind = WSMsgType.BINARY if self.encoding is FrameEncoding.MSGPACK else WSMsgType.TEXT
        config = self.server.config
        now_ns = time.time_ns()
        if config.stamp_send_time:
            payload = stamp_timestamps(payload, self.encoding, now_ns)
        if config.log_sent:
            self.sent_ts_ns.append(now_ns)
            self.sent_frames.append(payload)
        self.transport.send(kind, payload)
        self.sent_count += 1

    def close(self) -> None:
        """Close gracefully (WebSocket close frame)."""
        if self.transport is not None and not self.closed:
            self.transport.send_close(WSCloseCode.OK)
            self.transport.disconnect()

    def abort(self) -> None:
        """Drop the TCP connection at once: no close frame, unsent data discarded."""
        if self.transport is not None and not self.closed:
            self.transport.underlying_transport.abort()

    async def flush_then_abort(self, timeout_secs: float = 2.0) -> None:
        """Wait until the socket buffer is handed to the kernel, then :meth:`abort`."""
        if self.transport is None:
            return
        deadline = time.monotonic() + timeout_secs
        underlying = self.transport.underlying_transport
        while underlying.get_write_buffer_size() and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        self.abort()

    # ---- protocol ---------------------------------------------------------------------------

    def _on_request(self, payload: bytes) -> None:
        try:
            if self.encoding is FrameEncoding.MSGPACK:
                request = msgpack_loads(payload)
            else:
                request = orjson.loads(payload)
        except Exception:
            self.send_error(400)
            return
        if not isinstance(request, dict) or not isinstance(request.get("action"), str):
            self.send_error(400)
            return
        self.received.append(request)
        hook = self.server.on_request
        if hook is not None and hook(self, request):
            return
        action = request["action"]
        if action == "auth":
            self._authenticate(request.get("key"), request.get("secret"))
        elif action in ("subscribe", "unsubscribe"):
            self._subscribe(request, add=action == "subscribe")
        else:
            self.send_error(400)

    def _authenticate(self, key: object, secret: object, *, confirm: bool = True) -> None:
        if self._auth_timer is not None:
            self._auth_timer.cancel()
            self._auth_timer = None
        if self.authenticated:
            self.send_error(403)
            return
        config = self.server.config
        if config.auth_errors:
            self.send_error(config.auth_errors.pop(0))
            return
        if key != config.key_id or secret != config.secret_key:
            self.send_error(402)
            return
        if self.server.authenticated_sessions() >= config.max_sessions:
            self.send_error(406)
            return
        self.authenticated = True
        if confirm:
            self.send_control({"T": "success", "msg": "authenticated"})

    def _subscribe(self, request: dict[str, Any], *, add: bool) -> None:
        if not self.authenticated:
            self.send_error(401)
            return
        updates = {key: request[key] for key in _SUB_KEYS if key in request}
        if not updates or not all(
            isinstance(v, list) and all(isinstance(s, str) and s for s in v)
            for v in updates.values()
        ):
            self.send_error(400)
            return
        unavailable = self.server.config.unavailable_channels
        if any(key in unavailable for key in updates):
            self.send_error(410)
            return
        new_state = {key: list(value) for key, value in self.subscription.items()}
        for key, symbols in updates.items():
            current = new_state[key]
            for symbol in symbols:
                if add and symbol not in current:
                    current.append(symbol)
                elif not add and symbol in current:
                    current.remove(symbol)
        limit = self.server.config.symbol_limit
        if limit is not None and len({*new_state["trades"], *new_state["quotes"]}) > limit:
            self.send_error(405)
            return
        self.subscription = new_state
        self._covered = {key: frozenset(value) for key, value in new_state.items()}
        reply: dict[str, Any] = {"T": "subscription"}
        for key in _SUB_KEYS[:7]:
            reply[key] = list(new_state[key])
        reply["corrections"] = list(new_state["trades"])
        reply["cancelErrors"] = list(new_state["trades"])
        if new_state["imbalances"]:
            reply["imbalances"] = list(new_state["imbalances"])
        self.send_control(reply)
        if not self.subscribed.is_set():
            self.subscribed.set()
            self.server._on_subscribed(self)
            self._stream_task = asyncio.get_running_loop().create_task(self._stream())

    def covers(self, message: object) -> bool:
        """Whether the current subscription covers one data message (unknown types: yes)."""
        if not isinstance(message, dict):
            return True
        kind = message.get("T")
        channel = _CHANNEL_OF_TYPE.get(kind) if isinstance(kind, str) else None
        if channel is None:
            return True
        symbols = self._covered[channel]
        return "*" in symbols or message.get("S") in symbols

    def filtered(self, payload: bytes) -> bytes | None:
        """``payload`` cut to the messages the subscription covers: as is when it covers all of
        them, None when none, else re-encoded (``T`` first, msgpack Timestamps kept)."""
        try:
            if self.encoding is FrameEncoding.MSGPACK:
                items = msgpack_loads(payload)
            else:
                items = orjson.loads(payload)
        except Exception:
            return payload  # not decodable: not ours to judge
        if not isinstance(items, list):
            return payload
        kept = [m for m in items if self.covers(m)]
        if len(kept) == len(items):
            return payload
        if not kept:
            return None
        if self.encoding is FrameEncoding.JSON:
            return orjson.dumps(kept)
        if all(isinstance(m, dict) and isinstance(m.get("t"), int) for m in kept):
            return SyntheticFeed.msgpack_frame(kept)
        return msgpack_dumps(kept)

    def _on_auth_timeout(self) -> None:
        self._auth_timer = None
        if not self.authenticated:
            self.send_error(404)

    async def _stream(self) -> None:
        config = self.server.config
        frames = self.server.frames_for(self.encoding)
        abort_after = config.abort_after_frames if self.index < config.abort_sessions else None
        slow_after = config.slow_client_after_frames if self.index == 0 else None
        filtering = config.filter_by_subscription
        due = self._schedule(len(frames))
        start = time.monotonic()
        sent = 0
        for _ in range(config.repeat):
            for i, payload in enumerate(frames):
                if self.closed:
                    return
                if config.frame_interval_secs > 0:
                    await asyncio.sleep(config.frame_interval_secs)
                elif due is not None:
                    delay = start + due(sent, i) - time.monotonic()
                    if delay > 0.0005:
                        await asyncio.sleep(delay)
                    elif sent % 64 == 63:
                        await asyncio.sleep(0)
                elif sent % 64 == 63:
                    await asyncio.sleep(0)  # let the loop breathe during long bursts
                if filtering:
                    kept = self.filtered(payload)
                    if kept is None:
                        await asyncio.sleep(0)  # a long run of skipped frames still yields
                        continue
                    payload = kept
                self.send_data(payload)
                sent += 1
                if abort_after is not None and sent >= abort_after:
                    await self.flush_then_abort()
                    return
                if slow_after is not None and sent >= slow_after:
                    self.send_error(407, close=False)
                    await self.flush_then_abort()
                    return

    def _schedule(self, n_frames: int) -> Callable[[int, int], float] | None:
        """Seconds after the start at which frame (overall ``k``, index ``i``) is due."""
        config = self.server.config
        rate = config.rate_fps
        if rate is not None:
            return lambda k, i: k / rate
        times, speed = config.frame_times_ns, config.speed
        if speed is None or not times or n_frames == 0:
            return None
        first = times[0]
        span = (times[-1] - first) / 1e9 / speed
        lap = span + (span / max(1, n_frames - 1))  # a repeat starts one mean gap after the end
        return lambda k, i: (k // n_frames) * lap + (times[i] - first) / 1e9 / speed


class AlpacaReplayServer:
    """The server. ``async with AlpacaReplayServer(config) as server: server.url ...``."""

    def __init__(
        self,
        config: ReplayServerConfig | None = None,
        *,
        path: str = "/v2/test",
        auto_pong: bool = True,
    ) -> None:
        self.config = config if config is not None else ReplayServerConfig()
        self.path = path
        self.auto_pong = auto_pong
        """``False`` leaves client pings unanswered (tests the client's ping timeout)."""
        self.sessions: list[ServerSession] = []
        self.subscriptions = 0
        self.on_subscribed: Callable[[ServerSession], None] | None = None
        """Optional hook called after a session's first subscription reply."""
        self.on_request: Callable[[ServerSession, dict[str, Any]], bool] | None = None
        """Optional hook called with every well-formed client request (after it is logged in
        ``received``); returning True means "handled": the server does nothing more with it."""
        self._server: asyncio.Server | None = None
        self._frames: dict[FrameEncoding, list[bytes]] = {
            self.config.frames_encoding: list(self.config.frames)
        }
        self.host = ""
        self.port = 0

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> AlpacaReplayServer:
        """Listen (port 0: a free port, see :attr:`port`)."""
        self._server = await ws_create_server(
            self._factory,
            host,
            port,
            logger_name="relentless_fast.feeds.replay_server.ws",
            enable_auto_pong=self.auto_pong,
        )
        sockname = self._server.sockets[0].getsockname()
        self.host, self.port = sockname[0], sockname[1]
        return self

    async def stop(self) -> None:
        """Drop every connection and stop listening."""
        for session in self.sessions:
            session.abort()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    async def __aenter__(self) -> AlpacaReplayServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """The ``ws://`` URL a client connects to."""
        return f"ws://{self.host}:{self.port}{self.path}"

    def authenticated_sessions(self) -> int:
        """Open sessions that have authenticated."""
        return sum(1 for s in self.sessions if s.authenticated and not s.closed)

    def live_sessions(self) -> list[ServerSession]:
        """Sessions whose connection is still open."""
        return [s for s in self.sessions if not s.closed]

    def frames_for(self, encoding: FrameEncoding) -> list[bytes]:
        """The configured frames in ``encoding`` (JSON frames are converted for msgpack)."""
        frames = self._frames.get(encoding)
        if frames is None:
            if self.config.frames_encoding is not FrameEncoding.JSON:
                raise ValueError(
                    f"cannot serve {self.config.frames_encoding.name} frames as {encoding.name}"
                )
            frames = [json_frame_to_msgpack(f) for f in self.config.frames]
            self._frames[encoding] = frames
        return frames

    def _factory(self, request: WSUpgradeRequest) -> ServerSession | WSUpgradeResponseWithListener:
        status = self.config.reject_upgrade_status
        if status is not None:
            response = WSUpgradeResponse.create_error_response(status, b"upgrade refused")
            return WSUpgradeResponseWithListener(response, None)
        session = ServerSession(self, len(self.sessions), request)
        self.sessions.append(session)
        return session

    def _on_subscribed(self, session: ServerSession) -> None:
        self.subscriptions += 1
        if self.on_subscribed is not None:
            self.on_subscribed(session)


_JSON_TS: Final = re.compile(rb'"t":"[^"]*"')
_MSGPACK_TS: Final = re.compile(  # key "t", then a Timestamp ext in any of its three forms
    rb"\xa1t(?:\xd6\xff.{4}|\xd7\xff.{8}|\xc7\x0c\xff.{12})", re.DOTALL
)


@functools.lru_cache(maxsize=4)
def _second_text(sec: int) -> bytes:
    return format_rfc3339(sec * 1_000_000_000)[:-1].encode()  # without the "Z"


def stamp_timestamps(frame: bytes, encoding: FrameEncoding, ts_ns: int) -> bytes:
    """``frame`` with every message timestamp ``t`` replaced by ``ts_ns`` (bytes-level)."""
    sec, nsec = divmod(ts_ns, 1_000_000_000)
    if encoding is FrameEncoding.JSON:
        text = b'"t":"' + _second_text(sec)
        if nsec:
            text += b"." + f"{nsec:09d}".rstrip("0").encode()
        text += b'Z"'
        return _JSON_TS.sub(lambda _: text, frame)
    stamp = b"\xa1t\xd7\xff" + ((nsec << 34) | sec).to_bytes(8, "big")
    return _MSGPACK_TS.sub(lambda _: stamp, frame)


def json_frame_to_msgpack(frame: bytes) -> bytes:
    """Re-encode an Alpaca JSON data frame as the msgpack server would send it.

    Key order is kept (``T`` first), and the RFC 3339 ``t`` field becomes a msgpack Timestamp.
    """
    items = orjson.loads(frame)
    if not isinstance(items, list) or not all(isinstance(m, dict) for m in items):
        raise ValueError("an Alpaca frame is a JSON array of objects")
    messages = []
    for item in items:
        if "t" not in item:
            raise ValueError(f"data message without a timestamp: {item!r}")
        converted = dict(item)
        ts = converted["t"]
        if isinstance(ts, str):
            converted["t"] = parse_rfc3339_ns(ts)
        messages.append(converted)
    return SyntheticFeed.msgpack_frame(messages)


def parse_rfc3339_ns(text: str) -> int:
    """``2021-02-22T15:51:44.208Z`` -> int ns since the epoch (0-9 fraction digits, Z or offset)."""
    main, _, frac = text.partition(".")
    offset = ""
    nanos = 0
    if frac:
        digits = frac
        if digits[-1:] in ("Z", "z"):
            digits, offset = digits[:-1], "+00:00"
        else:
            for sign in "+-":
                if sign in digits:
                    digits, _, rest = digits.partition(sign)
                    offset = sign + rest
        if not digits.isdigit() or len(digits) > 9:
            raise ValueError(f"bad fractional seconds in {text!r}")
        nanos = int(digits.ljust(9, "0"))
    stamp = dt.datetime.fromisoformat(main + offset)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return int(stamp.timestamp()) * 1_000_000_000 + nanos
