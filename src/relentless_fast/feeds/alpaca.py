"""Alpaca market-data v2 WebSocket client on picows (stocks; JSON or msgpack).

Protocol facts: ``../shared/reference/alpaca-stream.md``. The session is::

    connect (optional header auth, optional Content-Type: application/msgpack)
    <- [{"T":"success","msg":"connected"}]
    -> {"action":"auth",...}                 (skipped with header auth)
    <- [{"T":"success","msg":"authenticated"}]
    -> {"action":"subscribe","trades":[...],...}
    <- [{"T":"subscription",...complete state...}]
    <- data frames ...
    -> {"action":"subscribe"|"unsubscribe",...}   (runtime: AlpacaFeed.subscribe/unsubscribe)
    <- [{"T":"subscription",...complete state...}]

Data frames go to the sink undecoded (a borrowed memoryview of picows' read buffer). Control
messages always arrive alone in a one-element array, so one cheap look at the first element's
``T`` (a one-letter type means data) sends data straight on; only the rare rest is decoded.

Error codes (see :data:`ERROR_POLICY`): fatal ones end :meth:`AlpacaFeed.run` with
:class:`~relentless_fast.feeds.base.FeedFatalError`; retried ones close the session and reconnect
after a capped exponential backoff with jitter, then authenticate and resubscribe to the feed's
current channel set (the configured one, changed by every confirmed runtime change). 403 (already
authenticated) is only reported. An error that answers a runtime change (400, 405, 409, 410; see
:data:`CHANGE_REFUSALS`) refuses that change only: the session and its subscription go on.

Header auth: the server greets with ``connected`` on every connection; the client then waits for
``authenticated`` without sending an auth message. Whether the real server sends
``authenticated`` after header auth is unverified (the reference says so), so after
``header_auth_grace_secs`` without it the client subscribes anyway (counted in
:attr:`AlpacaCounters.header_auth_unconfirmed`); a 401 to that subscribe means the headers were not
accepted and is fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from picows import (
    WSCloseCode,
    WSFrame,
    WSHandshakeError,
    WSListener,
    WSMsgType,
    WSTransport,
    ws_connect,
)

from relentless_fast.feeds.base import (
    BytesLike,
    Feed,
    FeedError,
    FeedFatalError,
    FeedState,
    FrameEncoding,
    FrameSink,
)
from relentless_fast.feeds.synthetic import msgpack_dumps

__all__ = [
    "CHANGE_REFUSALS",
    "CHANNELS",
    "ERROR_POLICY",
    "AlpacaCounters",
    "AlpacaFeed",
    "AlpacaFeedConfig",
    "SubscriptionChangeError",
    "classify_error",
    "is_data_frame",
    "msgpack_loads",
]

log = logging.getLogger(__name__)

_time_ns = time.time_ns
_TEXT: Final = WSMsgType.TEXT
_BINARY: Final = WSMsgType.BINARY

CHANNELS: Final = (
    "trades",
    "quotes",
    "bars",
    "updatedBars",
    "dailyBars",
    "statuses",
    "lulds",
    "imbalances",
)
"""Subscribe-message keys, in the order the client sends them."""

ERROR_POLICY: Final[dict[int, str]] = {
    400: "fatal",  # invalid syntax: our message is malformed; resending it cannot help
    401: "retry",  # not authenticated: ordering race; a fresh session re-authenticates
    402: "fatal",  # auth failed: bad credentials
    403: "ignore",  # already authenticated: harmless (e.g. header auth plus an auth message)
    404: "retry",  # auth timeout
    405: "fatal",  # symbol limit exceeded: the configuration asks for more than the plan allows
    406: "retry",  # connection limit exceeded: another session may still be closing (bounded)
    407: "retry",  # slow client: the server disconnects; data in between is gone
    408: "fatal",  # v2 not enabled
    409: "fatal",  # insufficient subscription (feed not in plan)
    410: "fatal",  # invalid subscribe action for this feed
    411: "fatal",  # insufficient scope
    500: "retry",  # internal server error
}
"""What the client does on each documented error code; unknown codes are retried."""

_CONTROL_TYPES: Final = frozenset(("success", "error", "subscription"))

CHANGE_REFUSALS: Final = frozenset((400, 405, 409, 410))
"""Error codes that, arriving while a runtime subscription change waits for its reply, refuse
that change and nothing else (405: "your symbol subscriptions are the same as they were before";
400 also answers a badly formatted symbol; 409 and 410 name a feed or channel the plan or stream
lacks). The session keeps its subscription; the caller gets :class:`SubscriptionChangeError`."""


class SubscriptionChangeError(RuntimeError):
    """A runtime subscribe/unsubscribe that did not take effect.

    ``reason`` is ``"refused"`` (an error frame answered it; ``code`` is the protocol code),
    ``"timeout"`` (no subscription reply in time), ``"interrupted"`` (the session ended first;
    the change is not in the set a reconnect subscribes to) or ``"not running"``.
    """

    def __init__(self, reason: str, message: str, code: int | None = None) -> None:
        prefix = f"subscription change {reason}" + ("" if code is None else f" ({code})")
        super().__init__(f"{prefix}: {message}")
        self.reason = reason
        self.code = code


@dataclass(slots=True)
class AlpacaCounters:
    """Counters of the Alpaca client beyond :class:`~relentless_fast.feeds.base.FeedCounters`."""

    changes_requested: int = 0
    """Runtime subscribe/unsubscribe calls."""
    changes_confirmed: int = 0
    changes_refused: int = 0
    """Answered by an error frame (:data:`CHANGE_REFUSALS`)."""
    changes_timed_out: int = 0
    """No subscribed session, or no subscription reply, within the timeout."""
    changes_interrupted: int = 0
    """The session ended (or the feed stopped) before the reply."""
    header_auth_unconfirmed: int = 0
    """Header-auth sessions that got no ``authenticated`` within ``header_auth_grace_secs``."""


def classify_error(code: int, message: str) -> FeedError:
    """The :class:`FeedError` for an Alpaca error frame, with the policy of :data:`ERROR_POLICY`."""
    policy = ERROR_POLICY.get(code, "retry")
    return FeedError(code, message, fatal=policy == "fatal", retry=policy == "retry")


def is_data_frame(payload: BytesLike, encoding: FrameEncoding) -> bool:
    """Cheap check: does the first element of this frame have a one-letter ``T`` (data)?

    ``False`` means "possibly control": the caller decodes it to be sure. Control frames hold
    ``success``/``error``/``subscription``; every data type is one letter. Looks at <= 16 bytes.
    """
    if encoding is FrameEncoding.JSON:
        return _json_first_type_is_letter(payload)
    return _msgpack_first_type_is_letter(payload, len(payload))


def _json_first_type_is_letter(p: BytesLike) -> bool:
    # Compact server output starts [{"T":"x" and byte 8 closes a one-letter type; control types
    # have a letter there. Same test as _JsonSession.on_payload (kept in step by a test).
    return len(p) > 8 and p[8] == 0x22 and p[6] == 0x22 and p[3] == 0x54


def _msgpack_first_type_is_letter(p: BytesLike, n: int) -> bool:
    # array (fix/16/32) -> map (fix/16/32) -> key fixstr "T" (a1 54) -> value fixstr of length 1
    try:
        b0 = p[0]
        if 0x91 <= b0 <= 0x9F:
            i = 1
        elif b0 == 0xDC:
            i = 3
        elif b0 == 0xDD:
            i = 5
        else:
            return False
        m = p[i]
        if 0x81 <= m <= 0x8F:
            i += 1
        elif m == 0xDE:
            i += 3
        elif m == 0xDF:
            i += 5
        else:
            return False
        return p[i] == 0xA1 and p[i + 1] == 0x54 and p[i + 2] == 0xA1
    except IndexError:
        return False


@dataclass(frozen=True, kw_only=True, slots=True)
class AlpacaFeedConfig:
    """Connection, subscription and resilience settings of :class:`AlpacaFeed`.

    Credentials come from the environment in production (:meth:`with_env_credentials`); they
    are excluded from ``repr``. Times are seconds (floats); ``0`` disables ping and stale checks.
    """

    url: str = "wss://stream.data.alpaca.markets/v2/iex"
    key_id: str = field(default="", repr=False)
    secret_key: str = field(default="", repr=False)
    auth_in_headers: bool = False
    """Send APCA-API-KEY-ID/APCA-API-SECRET-KEY upgrade headers instead of an auth message."""
    header_auth_grace_secs: float = 2.0
    """With header auth: wait this long after ``connected`` for ``authenticated``, then
    subscribe anyway (whether the server sends it after header auth is unverified)."""
    encoding: FrameEncoding = FrameEncoding.JSON
    trades: tuple[str, ...] = ()
    quotes: tuple[str, ...] = ()
    bars: tuple[str, ...] = ()
    updated_bars: tuple[str, ...] = ()
    daily_bars: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    lulds: tuple[str, ...] = ()
    imbalances: tuple[str, ...] = ()
    connect_timeout_secs: float = 5.0
    reply_timeout_secs: float = 10.0
    """Longest wait for the ``authenticated`` and ``subscription`` replies before reconnecting;
    also the default timeout of a runtime subscribe/unsubscribe (which never reconnects)."""
    ping_interval_secs: float = 10.0
    """Ping after this long without incoming data (picows auto-ping, PING_WHEN_IDLE)."""
    pong_timeout_secs: float = 5.0
    stale_after_secs: float = 30.0
    """Report STALE after this long subscribed without a data frame."""
    reconnect_when_stale: bool = False
    """Also reconnect on STALE (off by default: quiet symbols and closed markets are normal)."""
    backoff_initial_secs: float = 0.25
    backoff_max_secs: float = 30.0
    backoff_jitter: float = 0.5
    """Each delay is scaled by a uniform factor in [1 - jitter, 1]."""
    max_consecutive_failures: int | None = None
    """Give up (fatal) after this many sessions in a row that never reached SUBSCRIBED."""
    max_406_retries: int = 15
    """Consecutive 406 (connection limit) errors tolerated before giving up (Go SDK: 15)."""
    max_frame_size: int = 16 * 1024 * 1024
    read_buffer_init_size: int = 256 * 1024

    def __post_init__(self) -> None:
        if not self.url.startswith(("ws://", "wss://")):
            raise ValueError(f"url: must start with ws:// or wss://, got {self.url!r}")
        if self.encoding not in (FrameEncoding.JSON, FrameEncoding.MSGPACK):
            raise ValueError(f"encoding: Alpaca speaks JSON or MSGPACK, not {self.encoding.name}")
        for name in (
            "connect_timeout_secs",
            "reply_timeout_secs",
            "backoff_initial_secs",
            "header_auth_grace_secs",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be > 0")
        for name in ("ping_interval_secs", "pong_timeout_secs", "stale_after_secs"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0 (0 disables)")
        if self.backoff_max_secs < self.backoff_initial_secs:
            raise ValueError("backoff_max_secs: must be >= backoff_initial_secs")
        if not 0.0 <= self.backoff_jitter <= 1.0:
            raise ValueError("backoff_jitter: must be within [0, 1]")
        for key, attr in zip(CHANNELS, _CHANNEL_ATTRS, strict=True):
            symbols = getattr(self, attr)
            if isinstance(symbols, str):
                raise ValueError(f"{attr}: a tuple of symbols, not the string {symbols!r}")
            if any(not s or not isinstance(s, str) for s in symbols):
                raise ValueError(f"{attr} ({key}): symbols must be non-empty strings")
        if not any(getattr(self, attr) for attr in _CHANNEL_ATTRS):
            raise ValueError("no channel subscribed: set trades, quotes, bars, ...")

    def with_env_credentials(self) -> AlpacaFeedConfig:
        """A copy with key and secret from ``APCA_API_KEY_ID`` / ``APCA_API_SECRET_KEY``."""
        try:
            key_id, secret = os.environ["APCA_API_KEY_ID"], os.environ["APCA_API_SECRET_KEY"]
        except KeyError as exc:
            raise ValueError(f"environment variable {exc.args[0]} is not set") from None
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        fields.update(key_id=key_id, secret_key=secret)
        return AlpacaFeedConfig(**fields)

    def subscribe_message(self) -> dict[str, Any]:
        """The subscribe request for the whole configured set (the first session's)."""
        return _subscribe_request(self.channels())

    def channels(self) -> dict[str, tuple[str, ...]]:
        """The configured symbols by protocol key (``updatedBars``, ...), every key present."""
        return {key: tuple(getattr(self, attr)) for key, attr in _CHANNEL_ATTRS_BY_KEY.items()}

    def auth_message(self) -> dict[str, Any]:
        """The auth request (message auth)."""
        return {"action": "auth", "key": self.key_id, "secret": self.secret_key}

    def upgrade_headers(self) -> dict[str, str]:
        """Extra headers of the WebSocket upgrade request."""
        headers: dict[str, str] = {}
        if self.auth_in_headers:
            headers["APCA-API-KEY-ID"] = self.key_id
            headers["APCA-API-SECRET-KEY"] = self.secret_key
        if self.encoding is FrameEncoding.MSGPACK:
            headers["Content-Type"] = "application/msgpack"
        return headers


_CHANNEL_ATTRS: Final = (
    "trades",
    "quotes",
    "bars",
    "updated_bars",
    "daily_bars",
    "statuses",
    "lulds",
    "imbalances",
)
_CHANNEL_ATTRS_BY_KEY: Final = dict(zip(CHANNELS, _CHANNEL_ATTRS, strict=True))
_KEY_BY_ATTR: Final = dict(zip(_CHANNEL_ATTRS, CHANNELS, strict=True))


def _subscribe_request(channels: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    """``{"action": "subscribe", key: [symbols]}`` for the non-empty channels, in CHANNELS order."""
    msg: dict[str, Any] = {"action": "subscribe"}
    for key in CHANNELS:
        symbols = channels.get(key, ())
        if symbols:
            msg[key] = list(symbols)
    return msg


def _change_request(action: str, delta: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    msg: dict[str, Any] = {"action": action}
    msg.update((key, list(symbols)) for key, symbols in delta.items())
    return msg


@dataclass(slots=True)
class _PendingChange:
    """A runtime change sent on ``session`` and not answered yet."""

    action: str
    delta: dict[str, tuple[str, ...]]
    session: _Session
    future: asyncio.Future[dict[str, list[str]]]

    def shown_in(self, state: dict[str, list[str]]) -> bool:
        """Whether a complete subscription state reflects this change."""
        for key, symbols in self.delta.items():
            granted = state.get(key, [])
            if self.action == "subscribe":
                if "*" not in granted and any(s not in granted for s in symbols):
                    return False
            elif any(s in granted for s in symbols):
                return False
        return True


class _Session(WSListener):
    """One WebSocket connection. Data frames are delivered here (the hot path); the rest goes
    to the feed."""

    def __init__(self, feed: AlpacaFeed) -> None:
        self.feed = feed
        self.transport: WSTransport | None = None
        self.fragments: bytearray | None = None
        self.phase = FeedState.CONNECTING
        self.active = True
        self.header_auth_assumed = False
        """Subscribed after header auth without an ``authenticated`` frame (grace expired)."""
        # Resolved once: the hot path only calls these.
        self.counters = feed.counters
        self.sink_on_frame = feed.sink.on_frame

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        recv_ts_ns = _time_ns()
        msg_type = frame.msg_type
        if frame.fin and (msg_type is _TEXT or msg_type is _BINARY):
            self.on_payload(frame.get_payload_as_memoryview(), recv_ts_ns)
        elif msg_type is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
        elif msg_type is _TEXT or msg_type is _BINARY:
            self.fragments = bytearray(frame.get_payload_as_memoryview())
        elif msg_type is WSMsgType.CONTINUATION and self.fragments is not None:
            self.fragments += frame.get_payload_as_memoryview()
            if frame.fin:
                whole, self.fragments = self.fragments, None
                self.on_payload(memoryview(whole), recv_ts_ns)

    def on_payload(self, payload: memoryview, recv_ts_ns: int) -> None:
        """Data straight to the sink; anything else to the feed's slow path."""
        if not self.active:
            return
        try:  # msgpack: fixarray or array16, fixmap, key "T" (a1 54), one-letter value (a1 ..)
            b0 = payload[0]
            i = 1 if 0x91 <= b0 <= 0x9F else 3 if b0 == 0xDC else 0
            is_data = (
                i > 0
                and 0x81 <= payload[i] <= 0x8F
                and payload[i + 1] == 0xA1
                and payload[i + 2] == 0x54
                and payload[i + 3] == 0xA1
            )
        except IndexError:
            is_data = False
        if is_data or _msgpack_first_type_is_letter(payload, len(payload)):
            self.deliver(payload, recv_ts_ns)
        else:
            self.feed._on_other(self, payload, recv_ts_ns, len(payload))

    def deliver(self, payload: memoryview, recv_ts_ns: int) -> None:
        """Count and hand a data frame to the sink (a sink exception drops only the frame)."""
        feed = self.feed
        if feed._stale:
            feed._resume()
        counters = self.counters
        counters.data_frames += 1
        counters.data_bytes += len(payload)
        try:
            self.sink_on_frame(payload, recv_ts_ns)
        except Exception:
            feed._sink_failed()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.feed._on_disconnected(self)

    def send(self, message: dict[str, Any], encoding: FrameEncoding) -> None:
        if self.transport is None:
            return
        if encoding is FrameEncoding.MSGPACK:
            self.transport.send(WSMsgType.BINARY, msgpack_dumps(message))
        else:
            self.transport.send(WSMsgType.TEXT, orjson.dumps(message))

    def close(self) -> None:
        """Close with a WebSocket close frame, so the server frees the session at once (with
        one connection per plan, a half-dead old session would answer the next one with 406)."""
        self.active = False
        transport = self.transport
        if transport is not None and not transport.is_disconnected:
            if not transport.is_close_frame_sent:
                transport.send_close(WSCloseCode.OK)
            transport.disconnect(graceful=True)


class _JsonSession(_Session):
    """JSON specialisation of the data check (the common case)."""

    def on_payload(self, payload: memoryview, recv_ts_ns: int) -> None:
        """Data straight to the sink; anything else to the feed's slow path."""
        if not self.active:
            return
        try:  # compact server output: [{"T":"x"  (bytes 3, 6 and 8 decide)
            is_data = payload[8] == 0x22 and payload[6] == 0x22 and payload[3] == 0x54
        except IndexError:
            is_data = False
        if is_data:
            self.deliver(payload, recv_ts_ns)
        else:
            self.feed._on_other(self, payload, recv_ts_ns, len(payload))


_U8: Final = struct.Struct(">B")
_FIXED: Final[dict[int, tuple[struct.Struct, object]]] = {
    0xCC: (struct.Struct(">B"), None),
    0xCD: (struct.Struct(">H"), None),
    0xCE: (struct.Struct(">I"), None),
    0xCF: (struct.Struct(">Q"), None),
    0xD0: (struct.Struct(">b"), None),
    0xD1: (struct.Struct(">h"), None),
    0xD2: (struct.Struct(">i"), None),
    0xD3: (struct.Struct(">q"), None),
    0xCA: (struct.Struct(">f"), None),
    0xCB: (struct.Struct(">d"), None),
}
_LENGTHS: Final[dict[int, tuple[struct.Struct, str]]] = {
    0xD9: (struct.Struct(">B"), "str"),
    0xDA: (struct.Struct(">H"), "str"),
    0xDB: (struct.Struct(">I"), "str"),
    0xC4: (struct.Struct(">B"), "bin"),
    0xC5: (struct.Struct(">H"), "bin"),
    0xC6: (struct.Struct(">I"), "bin"),
    0xDC: (struct.Struct(">H"), "array"),
    0xDD: (struct.Struct(">I"), "array"),
    0xDE: (struct.Struct(">H"), "map"),
    0xDF: (struct.Struct(">I"), "map"),
    0xC7: (struct.Struct(">B"), "ext"),
    0xC8: (struct.Struct(">H"), "ext"),
    0xC9: (struct.Struct(">I"), "ext"),
}
_FIXEXT: Final = {0xD4: 1, 0xD5: 2, 0xD6: 4, 0xD7: 8, 0xD8: 16}


def msgpack_loads(data: BytesLike) -> Any:
    """Decode one msgpack value (control frames, client requests; not for the data path).

    Timestamps (ext -1, all three forms) become int ns since the epoch; other extensions become
    ``(type, bytes)``. Raises ``ValueError`` on truncated or trailing input.
    """
    view = memoryview(data).cast("B") if isinstance(data, memoryview) else memoryview(data)
    try:
        value, end = _unpack(view, 0)
    except (IndexError, struct.error) as exc:
        raise ValueError(f"truncated msgpack: {exc}") from None
    if end != len(view):
        raise ValueError(f"msgpack: {len(view) - end} trailing bytes")
    return value


def _unpack(b: memoryview, i: int) -> tuple[Any, int]:
    c = b[i]
    i += 1
    if c <= 0x7F:
        return c, i
    if c >= 0xE0:
        return c - 0x100, i
    if 0xA0 <= c <= 0xBF:
        return _take(b, i, c & 0x1F, "str")
    if 0x90 <= c <= 0x9F:
        return _take(b, i, c & 0x0F, "array")
    if 0x80 <= c <= 0x8F:
        return _take(b, i, c & 0x0F, "map")
    if c == 0xC0:
        return None, i
    if c in (0xC2, 0xC3):
        return c == 0xC3, i
    fixed = _FIXED.get(c)
    if fixed is not None:
        return fixed[0].unpack_from(b, i)[0], i + fixed[0].size
    sized = _LENGTHS.get(c)
    if sized is not None:
        (n,) = sized[0].unpack_from(b, i)
        return _take(b, i + sized[0].size, n, sized[1])
    if c in _FIXEXT:
        return _ext(b, i + 1, _FIXEXT[c], b[i])
    raise ValueError(f"msgpack: unsupported type byte 0x{c:02x}")


def _take(b: memoryview, i: int, n: int, kind: str) -> tuple[Any, int]:
    if kind == "array":
        items = []
        for _ in range(n):
            item, i = _unpack(b, i)
            items.append(item)
        return items, i
    if kind == "map":
        mapping = {}
        for _ in range(n):
            key, i = _unpack(b, i)
            value, i = _unpack(b, i)
            mapping[key] = value
        return mapping, i
    if kind == "ext":
        return _ext(b, i + 1, n, b[i])
    if i + n > len(b):
        raise ValueError(f"msgpack: {kind} of {n} bytes runs past the end")
    raw = bytes(b[i : i + n])
    return (raw.decode("utf-8") if kind == "str" else raw), i + n


def _ext(b: memoryview, i: int, n: int, ext_type: int) -> tuple[Any, int]:
    if i + n > len(b):
        raise ValueError(f"msgpack: ext of {n} bytes runs past the end")
    raw = bytes(b[i : i + n])
    if ext_type == 0xFF:  # -1: Timestamp
        if n == 4:
            return int.from_bytes(raw, "big") * 1_000_000_000, i + n
        if n == 8:
            packed = int.from_bytes(raw, "big")
            return (packed & 0x3_FFFF_FFFF) * 1_000_000_000 + (packed >> 34), i + n
        if n == 12:
            nsec = int.from_bytes(raw[:4], "big")
            sec = int.from_bytes(raw[4:], "big", signed=True)
            return sec * 1_000_000_000 + nsec, i + n
    return (ext_type - 256 if ext_type > 127 else ext_type, raw), i + n


def _close_when_connected(session: _Session) -> Callable[[asyncio.Future[Any]], None]:
    """A done-callback for an abandoned connect: close what it opened, retrieve its error."""

    def callback(future: asyncio.Future[Any]) -> None:
        if not future.cancelled():
            future.exception()
        session.close()

    return callback


def _connect_error(url: str, exc: Exception) -> FeedError:
    """A failed connect is retried, except an upgrade the server refuses as unauthorised."""
    response = getattr(exc, "response", None) if isinstance(exc, WSHandshakeError) else None
    status = getattr(response, "status", None)
    if status is not None and int(status) in (401, 403):
        return FeedError(None, f"{url} refused the upgrade: HTTP {int(status)}", fatal=True)
    return FeedError(None, f"connect to {url} failed: {exc!r}", retry=True)


class AlpacaFeed(Feed):
    """Alpaca market-data v2 stream as a :class:`~relentless_fast.feeds.base.Feed`.

    Usage::

        feed = AlpacaFeed(AlpacaFeedConfig(quotes=("AAPL",), ...).with_env_credentials(), sink)
        task = asyncio.create_task(feed.run())
        ...
        feed.stop(); await task

    ``subscription`` holds the server's last complete subscription state (lists by channel);
    :attr:`channels` the set every (re)connect subscribes to. :meth:`subscribe` and
    :meth:`unsubscribe` change it at run time, once the server confirms.
    """

    def __init__(self, config: AlpacaFeedConfig, sink: FrameSink, *, seed: int | None = None):
        super().__init__(sink, config.encoding)
        self.config = config
        self.subscription: dict[str, list[str]] = {}
        self.alpaca_counters = AlpacaCounters()
        self._channels: dict[str, tuple[str, ...]] = config.channels()
        self._running = False
        self._subscribed: asyncio.Event | None = None
        self._change_lock = asyncio.Lock()
        self._pending: _PendingChange | None = None
        self._late_answers = 0
        self._grace_timer: asyncio.TimerHandle | None = None
        self._rng = random.Random(seed)
        self._session: _Session | None = None
        self._done: asyncio.Future[FeedError | None] | None = None
        self._stopping = False
        self._stale = False
        self._reply_timer: asyncio.TimerHandle | None = None
        self._stale_timer: asyncio.TimerHandle | None = None
        self._seen_frames = 0
        self._last_data_mono = 0.0
        self._wake: asyncio.Event | None = None

    # ---- public API -------------------------------------------------------------------------

    @property
    def channels(self) -> dict[str, tuple[str, ...]]:
        """Symbols by protocol key (``trades``, ``updatedBars``, ...) that every (re)connect
        subscribes to: the configured set with every confirmed runtime change applied."""
        return {key: symbols for key, symbols in self._channels.items() if symbols}

    async def subscribe(
        self,
        *,
        trades: tuple[str, ...] | list[str] = (),
        quotes: tuple[str, ...] | list[str] = (),
        bars: tuple[str, ...] | list[str] = (),
        updated_bars: tuple[str, ...] | list[str] = (),
        daily_bars: tuple[str, ...] | list[str] = (),
        statuses: tuple[str, ...] | list[str] = (),
        lulds: tuple[str, ...] | list[str] = (),
        imbalances: tuple[str, ...] | list[str] = (),
        timeout: float | None = None,
    ) -> dict[str, list[str]]:
        """Add symbols to the running subscription; return the server's complete state.

        Waits (within ``timeout``, default ``reply_timeout_secs``) for a subscribed session,
        sends one ``subscribe`` request with these symbols and waits for the ``subscription``
        reply; then the symbols join :attr:`channels`, so every later reconnect subscribes to
        them too. Changes are sent one at a time, in call order. Raises
        :class:`SubscriptionChangeError` (refused, timeout, interrupted, not running; counted
        in :attr:`alpaca_counters`, reported to the sink) and ``ValueError`` for bad arguments.
        """
        changes = dict(trades=trades, quotes=quotes, bars=bars, updated_bars=updated_bars,
                       daily_bars=daily_bars, statuses=statuses, lulds=lulds,
                       imbalances=imbalances)  # fmt: skip
        return await self._change("subscribe", changes, timeout)

    async def unsubscribe(
        self,
        *,
        trades: tuple[str, ...] | list[str] = (),
        quotes: tuple[str, ...] | list[str] = (),
        bars: tuple[str, ...] | list[str] = (),
        updated_bars: tuple[str, ...] | list[str] = (),
        daily_bars: tuple[str, ...] | list[str] = (),
        statuses: tuple[str, ...] | list[str] = (),
        lulds: tuple[str, ...] | list[str] = (),
        imbalances: tuple[str, ...] | list[str] = (),
        timeout: float | None = None,
    ) -> dict[str, list[str]]:
        """Remove symbols from the running subscription (as :meth:`subscribe`, subtracting).

        Refused with ``ValueError`` when it would leave no channel subscribed (``stop()`` the
        feed instead: the protocol needs at least one key in a subscribe).
        """
        changes = dict(trades=trades, quotes=quotes, bars=bars, updated_bars=updated_bars,
                       daily_bars=daily_bars, statuses=statuses, lulds=lulds,
                       imbalances=imbalances)  # fmt: skip
        return await self._change("unsubscribe", changes, timeout)

    async def run(self) -> None:
        """Connect, authenticate, subscribe, deliver; reconnect on retriable errors."""
        cfg = self.config
        self._wake = asyncio.Event()
        self._subscribed = asyncio.Event()
        self._running = True
        attempt = failures = n406 = 0
        try:
            while not self._stopping:
                error, subscribed = await self._run_session()
                if self._stopping:
                    break
                if error is not None and error.fatal:
                    raise FeedFatalError(error)  # already reported
                if subscribed:
                    attempt = failures = 0
                else:
                    failures += 1
                n406 = n406 + 1 if error is not None and error.code == 406 else 0
                if n406 > cfg.max_406_retries:
                    message = f"connection limit exceeded (406) {n406} times in a row"
                    raise FeedFatalError(FeedError(None, message, fatal=True))
                limit = cfg.max_consecutive_failures
                if limit is not None and failures >= limit:
                    raise FeedFatalError(
                        FeedError(None, f"gave up after {failures} failed sessions", fatal=True)
                    )
                delay = self.backoff_delay(attempt)
                attempt += 1
                self.counters.reconnects += 1
                reason = error.message if error is not None else "connection closed"
                self._set_state(FeedState.RECONNECTING, f"in {delay:.3f}s after: {reason}")
                await self._sleep(delay)
        except FeedFatalError as exc:
            if exc.error.code is None:  # protocol errors were reported when they arrived
                self._report_error(exc.error)
            self._set_state(FeedState.FAILED, str(exc))
            raise
        finally:
            self._running = False
            self._cancel_timers()
            if self._session is not None:
                self._session_over(self._session)
                self._session.close()
                self._session = None
            self._subscribed.set()  # wake change requests waiting for a session: none will come
        self._set_state(FeedState.STOPPED, "stopped")

    def stop(self) -> None:
        """End the session and make :meth:`run` return (idempotent)."""
        self._stopping = True
        if self._done is not None and not self._done.done():
            self._done.set_result(None)
        if self._wake is not None:
            self._wake.set()
        if self._subscribed is not None:
            self._subscribed.set()
        if self._session is not None:
            self._session.close()

    def backoff_delay(self, attempt: int) -> float:
        """Delay before reconnect ``attempt`` (0-based): capped exponential, jittered."""
        cfg = self.config
        base = min(cfg.backoff_max_secs, cfg.backoff_initial_secs * 2.0 ** min(attempt, 62))
        return base * (1.0 - cfg.backoff_jitter * self._rng.random())

    # ---- session ----------------------------------------------------------------------------

    async def _run_session(self) -> tuple[FeedError | None, bool]:
        cfg = self.config
        loop = asyncio.get_running_loop()
        self._done = done = loop.create_future()
        self._stale = False
        self._set_state(FeedState.CONNECTING, cfg.url)
        session = _JsonSession(self) if self.encoding is FrameEncoding.JSON else _Session(self)
        self._session = session
        connect = asyncio.ensure_future(
            asyncio.wait_for(
                ws_connect(
                    lambda: session,
                    cfg.url,
                    extra_headers=cfg.upgrade_headers(),
                    websocket_handshake_timeout=cfg.connect_timeout_secs,
                    enable_auto_ping=cfg.ping_interval_secs > 0,
                    auto_ping_idle_timeout=cfg.ping_interval_secs or 10.0,
                    auto_ping_reply_timeout=cfg.pong_timeout_secs or 10.0,
                    max_frame_size=cfg.max_frame_size,
                    read_buffer_init_size=cfg.read_buffer_init_size,
                    logger_name="relentless_fast.feeds.alpaca.ws",
                ),
                # Backstop for the TCP connect; picows times the handshake itself (and closes
                # the socket, which cancelling it mid-handshake would not).
                timeout=2 * cfg.connect_timeout_secs,
            )
        )
        try:
            await asyncio.wait({connect, done}, return_when=asyncio.FIRST_COMPLETED)
            if not connect.done():
                if self._stopping:  # stop() during the connect: let it finish in the background
                    connect.add_done_callback(_close_when_connected(session))
                    self._session = None
                    return None, False
                await asyncio.wait({connect})  # frames read with the handshake ended the session
            connect.result()
        except asyncio.CancelledError:
            connect.add_done_callback(_close_when_connected(session))
            self._session = None
            raise
        except Exception as exc:  # OSError, WSError, TimeoutError: all mean "try again later"
            self._session = None
            error = _connect_error(cfg.url, exc)
            self._report_error(error)
            return error, False
        self.counters.connects += 1
        if session.phase is FeedState.CONNECTING or session.phase is FeedState.CONNECTED:
            # Frames read with the handshake may already have moved the session further on.
            self._arm_reply_timer("authenticated")
        try:
            error = await done
        finally:
            self._cancel_timers()
            self._session_over(session)
            session.close()
            self._session = None
        return error, session.phase is FeedState.SUBSCRIBED

    def _session_over(self, session: _Session) -> None:
        """The session ends: no subscribed session now; its unanswered change is interrupted."""
        if self._subscribed is not None and not self._stopping:
            self._subscribed.clear()
        self._late_answers = 0
        pending = self._pending
        if pending is not None and pending.session is session:
            self._pending = None
            self.alpaca_counters.changes_interrupted += 1
            if not pending.future.done():
                pending.future.set_exception(
                    SubscriptionChangeError(
                        "interrupted",
                        f"the session ended before the server answered {pending.action} "
                        f"{pending.delta}; not applied, not resubscribed on reconnect",
                    )
                )

    def _end_session(self, error: FeedError | None) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_result(error)

    def _on_disconnected(self, session: _Session) -> None:
        if session is self._session and self._done is not None and not self._done.done():
            if self._stopping:
                self._end_session(None)
                return
            message = "connection lost (closed by peer, network or ping timeout)"
            error = FeedError(None, message, retry=True)
            self._report_error(error)
            self._end_session(error)

    # ---- frames ----------------------------------------------------------------------------

    def _on_other(self, session: _Session, payload: memoryview, recv_ts_ns: int, size: int) -> None:
        try:
            if self.encoding is FrameEncoding.MSGPACK:
                decoded = msgpack_loads(payload)
            else:
                decoded = orjson.loads(payload)
        except Exception:
            decoded = None
        if (
            isinstance(decoded, list)
            and len(decoded) == 1
            and isinstance(decoded[0], dict)
            and decoded[0].get("T") in _CONTROL_TYPES
        ):
            self.counters.control_frames += 1
            self._on_control(session, decoded[0])
            return
        # Data in an unusual layout, or garbage: the parser decides (and counts drops).
        if self._stale:
            self._resume()
        self._deliver(payload, recv_ts_ns, size)

    def _on_control(self, session: _Session, msg: dict[str, Any]) -> None:
        kind = msg["T"]
        if kind == "success":
            text = msg.get("msg")
            if text == "connected" and session.phase is FeedState.CONNECTING:
                session.phase = FeedState.CONNECTED
                self._set_state(FeedState.CONNECTED, self.config.url)
                if not self.config.auth_in_headers:
                    session.send(self.config.auth_message(), self.encoding)
                else:
                    self._grace_timer = asyncio.get_running_loop().call_later(
                        self.config.header_auth_grace_secs, self._on_header_auth_grace, session
                    )
            elif text == "authenticated":
                self._on_authenticated(session)
            else:
                self.counters.unknown_control += 1
        elif kind == "subscription":
            self._on_subscription(session, msg)
        else:  # error
            code = msg.get("code")
            text = str(msg.get("msg", ""))
            if not isinstance(code, int):
                self.counters.unknown_control += 1
                code = 0
            if code in CHANGE_REFUSALS and self._on_change_refused(session, code, text):
                return
            error = classify_error(code, text)
            if code == 401 and session.header_auth_assumed:
                message = (
                    f"{text} (401) to the subscribe after header auth that the server never "
                    "confirmed: it did not accept the upgrade headers; use message auth"
                )
                error = FeedError(401, message, fatal=True)
            self._report_error(error)
            if error.fatal or error.retry:
                self._end_session(error)

    def _on_change_refused(self, session: _Session, code: int, text: str) -> bool:
        """An error frame that answers a runtime change refuses only that change. True when
        the error was such an answer (reported, counted, never fatal)."""
        pending = self._pending
        if pending is not None and pending.session is session:
            self._pending = None
            self.alpaca_counters.changes_refused += 1
            self._report_error(
                FeedError(code, f"{text} (refused {pending.action} {pending.delta})")
            )
            if not pending.future.done():
                pending.future.set_exception(
                    SubscriptionChangeError("refused", f"{text}; subscription unchanged", code)
                )
            return True
        if self._late_answers and session.phase is FeedState.SUBSCRIBED:
            self._late_answers -= 1  # the late answer to a change that already timed out
            self._report_error(FeedError(code, f"{text} (late answer to a timed-out change)"))
            return True
        return False

    def _on_header_auth_grace(self, session: _Session) -> None:
        self._grace_timer = None
        if session is not self._session or session.phase is not FeedState.CONNECTED:
            return
        self.alpaca_counters.header_auth_unconfirmed += 1
        log.warning(
            "no 'authenticated' within %ss of 'connected' with header auth: subscribing anyway",
            self.config.header_auth_grace_secs,
        )
        session.header_auth_assumed = True
        self._on_authenticated(session)

    def _on_authenticated(self, session: _Session) -> None:
        if session.phase is FeedState.AUTHENTICATED or session.phase is FeedState.SUBSCRIBED:
            return
        session.phase = FeedState.AUTHENTICATED
        if self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None
        detail = "by upgrade headers, unconfirmed" if session.header_auth_assumed else ""
        self._set_state(FeedState.AUTHENTICATED, detail)
        session.send(_subscribe_request(self._channels), self.encoding)
        self._arm_reply_timer("subscription")

    def _on_subscription(self, session: _Session, msg: dict[str, Any]) -> None:
        state = {
            key: list(value) for key, value in msg.items() if key != "T" and isinstance(value, list)
        }
        self.subscription = state
        self.counters.subscriptions += 1
        pending = self._pending
        answered = pending is not None and pending.session is session
        if answered and pending is not None and (not self._late_answers or pending.shown_in(state)):
            self._pending = None
            self._apply(pending)
            self.alpaca_counters.changes_confirmed += 1
            if not pending.future.done():
                pending.future.set_result({k: list(v) for k, v in state.items()})
        elif self._late_answers and session.phase is FeedState.SUBSCRIBED:
            self._late_answers -= 1  # the late reply to a change that already timed out
        missing = self._missing_from(state)
        if missing:
            self._report_error(FeedError(None, f"server did not subscribe: {missing}"))
        if session.phase is not FeedState.SUBSCRIBED:
            session.phase = FeedState.SUBSCRIBED
            self._cancel_reply_timer()
            self._set_state(FeedState.SUBSCRIBED, "subscribed")
            self._start_stale_checks()
            if self._subscribed is not None:
                self._subscribed.set()

    def _apply(self, change: _PendingChange) -> None:
        """A confirmed change joins (or leaves) the set every reconnect subscribes to."""
        for key, symbols in change.delta.items():
            current = list(self._channels.get(key, ()))
            for symbol in symbols:
                if change.action == "subscribe" and symbol not in current:
                    current.append(symbol)
                elif change.action == "unsubscribe" and symbol in current:
                    current.remove(symbol)
            self._channels[key] = tuple(current)

    def _missing_from(self, state: dict[str, list[str]]) -> dict[str, list[str]]:
        """Symbols of :attr:`channels` absent from the server's reply (``*`` covers a channel)."""
        missing = {}
        for key, symbols in self.channels.items():
            granted = set(state.get(key, ()))
            if "*" in granted:
                continue
            lacking = [s for s in symbols if s not in granted]
            if lacking:
                missing[key] = lacking
        return missing

    # ---- runtime subscription changes --------------------------------------------------------

    def _delta(self, action: str, changes: dict[str, Any]) -> dict[str, tuple[str, ...]]:
        """Validated symbols by protocol key; ``ValueError`` naming the argument otherwise."""
        delta: dict[str, tuple[str, ...]] = {}
        for attr, symbols in changes.items():
            if isinstance(symbols, str):
                raise ValueError(f"{attr}: a list of symbols, not the string {symbols!r}")
            symbols = tuple(symbols)
            if any(not isinstance(s, str) or not s for s in symbols):
                raise ValueError(f"{attr}: symbols must be non-empty strings")
            if symbols:
                delta[_KEY_BY_ATTR[attr]] = tuple(dict.fromkeys(symbols))
        if not delta:
            raise ValueError(f"{action}: no symbols given")
        if action == "unsubscribe":
            left = {
                key: [s for s in current if s not in delta.get(key, ())]
                for key, current in self._channels.items()
            }
            if not any(left.values()):
                raise ValueError("unsubscribe: would leave no channel subscribed; stop() instead")
        return delta

    async def _change(
        self, action: str, changes: dict[str, Any], timeout: float | None
    ) -> dict[str, list[str]]:
        delta = self._delta(action, changes)
        if not self._running or self._stopping:
            message = "the feed is not running (set the first channels in AlpacaFeedConfig)"
            raise SubscriptionChangeError("not running", message)
        counters = self.alpaca_counters
        counters.changes_requested += 1
        wait = self.config.reply_timeout_secs if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        async with self._change_lock:  # one change in flight: replies carry no request id
            session = await self._subscribed_session(deadline, wait)
            pending = _PendingChange(action, delta, session, loop.create_future())
            self._pending = pending
            session.send(_change_request(action, delta), self.encoding)
            done, _ = await asyncio.wait({pending.future}, timeout=deadline - loop.time())
            if not done:
                if self._pending is pending:
                    self._pending = None
                    self._late_answers += 1
                counters.changes_timed_out += 1
                message = f"no subscription reply to {action} {delta} within {wait}s"
                self._report_error(FeedError(None, message))
                pending.future.cancel()
                raise SubscriptionChangeError("timeout", message)
            return pending.future.result()

    async def _subscribed_session(self, deadline: float, wait: float) -> _Session:
        """The current session once it is subscribed (waits through a reconnect)."""
        loop = asyncio.get_running_loop()
        while True:
            session = self._session
            if self._stopping or not self._running:
                self.alpaca_counters.changes_interrupted += 1
                raise SubscriptionChangeError("interrupted", "the feed stopped")
            if session is not None and session.phase is FeedState.SUBSCRIBED:
                return session
            subscribed = self._subscribed
            assert subscribed is not None  # set by run(); cleared while no session is subscribed
            remaining = deadline - loop.time()
            if remaining <= 0:
                self.alpaca_counters.changes_timed_out += 1
                message = f"no subscribed session within {wait}s (feed {self.state.name})"
                self._report_error(FeedError(None, message))
                raise SubscriptionChangeError("timeout", message)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(subscribed.wait(), remaining)

    # ---- timers -----------------------------------------------------------------------------

    def _arm_reply_timer(self, waiting_for: str) -> None:
        self._cancel_reply_timer()
        loop = asyncio.get_running_loop()
        self._reply_timer = loop.call_later(
            self.config.reply_timeout_secs, self._on_reply_timeout, waiting_for
        )

    def _on_reply_timeout(self, waiting_for: str) -> None:
        self._reply_timer = None
        error = FeedError(
            None, f"no {waiting_for} reply within {self.config.reply_timeout_secs}s", retry=True
        )
        self._report_error(error)
        self._end_session(error)

    def _cancel_reply_timer(self) -> None:
        if self._reply_timer is not None:
            self._reply_timer.cancel()
            self._reply_timer = None

    def _start_stale_checks(self) -> None:
        if self.config.stale_after_secs <= 0:
            return
        self._seen_frames = self.counters.data_frames
        self._last_data_mono = time.monotonic()
        self._schedule_stale_check()

    def _schedule_stale_check(self) -> None:
        interval = max(0.005, self.config.stale_after_secs / 4)
        self._stale_timer = asyncio.get_running_loop().call_later(interval, self._check_stale)

    def _check_stale(self) -> None:
        now = time.monotonic()
        frames = self.counters.data_frames
        if frames != self._seen_frames:
            self._seen_frames = frames
            self._last_data_mono = now
        elif not self._stale and now - self._last_data_mono >= self.config.stale_after_secs:
            self._stale = True
            self.counters.stale_events += 1
            quiet = now - self._last_data_mono
            self._set_state(FeedState.STALE, f"no data for {quiet:.3f}s")
            if self.config.reconnect_when_stale:
                error = FeedError(None, f"stale: no data for {quiet:.3f}s", retry=True)
                self._report_error(error)
                self._end_session(error)
                return
        self._schedule_stale_check()

    def _resume(self) -> None:
        self._stale = False
        self._set_state(FeedState.SUBSCRIBED, "data resumed")

    def _cancel_timers(self) -> None:
        self._cancel_reply_timer()
        if self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None
        if self._stale_timer is not None:
            self._stale_timer.cancel()
            self._stale_timer = None

    async def _sleep(self, delay: float) -> None:
        wake = self._wake
        if wake is None:
            await asyncio.sleep(delay)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=delay)
