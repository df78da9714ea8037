"""TCP signal publisher: a SoupBinTCP 3.00 server with replay from the signal window.

Each published batch is framed once (one ``bytes`` of ``n`` 67-byte Sequenced Data packets) and
the same object is written to every client that is caught up. A client still replaying is fed from
the window in bounded bursts, paced by its transport's flow control, until it is caught up.

Outcomes a client can see:

* Login with a bad username/password: ``J`` ``A``, then the server closes.
* Login to another session, or from a sequence the window no longer holds, or past the next
  sequence, or while the server is full: a ``+`` Debug packet saying why, then ``J`` ``S``, then
  close. (SoupBinTCP has no code for "too old"; the Debug text names the oldest held sequence.)
* A client packet that breaks the protocol (unknown type, zero length, a second login, anything but
  a login before login): a ``+`` Debug packet naming the problem, then close.
* Nothing received for ``client_timeout_s``: Debug "heartbeat timeout", then close.
* A client whose unsent backlog goes above ``max_client_buffer_bytes`` is slow: it is dropped at
  once (connection aborted) so it never delays the others.
* Logout (``O``): the server flushes what is queued and closes. Shutdown: every logged-in client
  gets the rest of its stream, then ``Z`` (end of session), then the server closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass, field
from typing import Final, Self, cast

import relentless_fast_signal as codec
from relentless_fast.outputs._wire import (
    SIGNAL_SIZE,
    SOUP_LOGIN_LENGTH,
    SOUP_SEQUENCED_FRAME_SIZE,
    SignalBuffer,
    session_bytes,
)
from relentless_fast.outputs.policy import EmissionFilter, EmissionPolicy
from relentless_fast.outputs.udp import default_session
from relentless_fast.outputs.window import SignalWindow

DEFAULT_PORT = 8620

_HEARTBEAT: Final = b"\x00\x01H"
_END_OF_SESSION: Final = b"\x00\x01Z"
_REJECT_NOT_AUTHORIZED: Final = b"\x00\x02JA"
_REJECT_SESSION: Final = b"\x00\x02JS"


def debug_packet(text: str) -> bytes:
    """A ``+`` Debug packet carrying ``text`` (ASCII, truncated to fit)."""
    raw = text.encode("ascii", "replace")[:65534]
    return (len(raw) + 1).to_bytes(2, "big") + b"+" + raw


def login_accepted(session: str, next_seq: int) -> bytes:
    """An ``A`` packet: session right-justified in 10, sequence right-justified in 20."""
    return b"\x00\x1fA" + session.encode("ascii").rjust(10) + str(next_seq).encode().rjust(20)


@dataclass(frozen=True, kw_only=True, slots=True)
class TcpPublisherConfig:
    """The SoupBinTCP server's settings (all fields have working defaults)."""

    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    """Listening port (0 picks a free one)."""
    session: str = field(default_factory=default_session)
    """Session name (1..10 ASCII characters); share it with the UDP output."""
    username: str | None = None
    """Required login username (<= 6 characters); None accepts any login."""
    password: str | None = None
    """Required password (<= 10 characters), checked with ``username``."""
    window_signals: int = 65536
    """Signals kept for replay (64 bytes each)."""
    heartbeat_interval_s: float = 1.0
    """Send ``H`` to a client after this long without writing to it."""
    client_timeout_s: float = 15.0
    """Drop a client (or an unauthenticated connection) that sends nothing for this long."""
    max_client_buffer_bytes: int = 4 << 20
    """Unsent bytes queued for one live client above which it is dropped as slow."""
    replay_burst_signals: int = 4096
    """Signals written to a replaying client per loop iteration."""
    send_buffer_bytes: int | None = None
    """``SO_SNDBUF`` of accepted connections; None keeps the kernel default."""
    max_clients: int = 64
    emission: EmissionPolicy = EmissionPolicy.ALL

    def __post_init__(self) -> None:
        session_bytes(self.session)
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password: set both or neither")
        if self.username is not None and not 0 < len(self.username.encode("ascii")) <= 6:
            raise ValueError(f"username={self.username!r}: must be 1..6 ASCII characters")
        if self.password is not None and not len(self.password.encode("ascii")) <= 10:
            raise ValueError("password: must be at most 10 ASCII characters")
        for name in ("heartbeat_interval_s", "client_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)}: must be > 0")
        for name in ("max_client_buffer_bytes", "replay_burst_signals", "max_clients"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= 1")
        EmissionPolicy(self.emission)


@dataclass(slots=True)
class TcpCounters:
    """What the server did (monotonic counts since start, plus ``clients`` now connected)."""

    clients: int = 0
    connections: int = 0
    logins_accepted: int = 0
    logins_rejected: int = 0
    signals_in: int = 0
    signals_published: int = 0
    signals_replayed: int = 0
    heartbeats_sent: int = 0
    client_timeouts: int = 0
    slow_clients_dropped: int = 0
    malformed_packets: int = 0
    unsequenced_ignored: int = 0
    logouts: int = 0


class _FrameEncoder:
    """Frames signals as Sequenced Data packets (Rust encoder) in one reused buffer."""

    __slots__ = ("_buf",)

    def __init__(self, capacity: int) -> None:
        self._buf = bytearray(capacity * SOUP_SEQUENCED_FRAME_SIZE)

    def encode(self, *segments: memoryview) -> bytes:
        """The packets for the signals in ``segments``, in order, as one new ``bytes`` (a
        transport may keep a reference to what it is given, so the buffer itself never leaves)."""
        need = sum(len(seg) for seg in segments) // SIGNAL_SIZE * SOUP_SEQUENCED_FRAME_SIZE
        if need > len(self._buf):
            self._buf = bytearray(max(need, 2 * len(self._buf)))
        written = 0
        for seg in segments:
            written += codec.soupbintcp_encode_signals(seg, self._buf, written)
        return bytes(memoryview(self._buf)[:written])


class TcpPublisher:
    """Publishes packed signals to SoupBinTCP clients on the running event loop.

    Use as ``async with TcpPublisher(config) as pub: pub.publish(buf, count)``.
    """

    def __init__(self, config: TcpPublisherConfig | None = None) -> None:
        self.config = config or TcpPublisherConfig()
        self.counters = TcpCounters()
        self.window = SignalWindow(self.config.window_signals)
        self._filter = EmissionFilter(self.config.emission)
        self._encoder = _FrameEncoder(256)
        self._replay_encoder = _FrameEncoder(self.config.replay_burst_signals)
        self._clients: set[_ClientProtocol] = set()
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ticker: asyncio.TimerHandle | None = None
        self._closing = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen and start the heartbeat/timeout ticker."""
        self._loop = asyncio.get_running_loop()
        self._server = await self._loop.create_server(
            lambda: _ClientProtocol(self), self.config.host, self.config.port
        )
        self._schedule_tick()

    async def aclose(self, grace_s: float = 2.0) -> None:
        """Stop listening; send each logged-in client the rest of its stream and ``Z``; close."""
        if self._closing:
            return
        self._closing = True
        if self._ticker is not None:
            self._ticker.cancel()
        if self._server is not None:
            self._server.close()
        for client in list(self._clients):
            client.end_of_session()
        deadline = asyncio.get_running_loop().time() + grace_s
        while self._clients and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        for client in list(self._clients):
            client.abort()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def session(self) -> str:
        return self.config.session

    @property
    def address(self) -> tuple[str, int]:
        """Where the server listens (after :meth:`start`)."""
        assert self._server is not None, "not started"
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    # -- hot path ----------------------------------------------------------------------------

    def publish(self, signals: SignalBuffer, count: int) -> int:
        """Publish ``count`` packed signals; return how many passed the emission policy.

        One call per batch from the loop's thread; never blocks. ``signals`` is only read during
        the call.
        """
        if self._closing or self._server is None:
            raise RuntimeError("publisher is not running")
        if count <= 0:
            return 0
        src, n = self._filter.select_bytes(signals, count)
        self.counters.signals_in += count
        cap = self.window.capacity
        for lo in range(0, n, cap):
            hi = min(n, lo + cap)
            first = self.window.append_bytes(src[lo * SIGNAL_SIZE : hi * SIGNAL_SIZE], hi - lo)
            if self._clients:
                self._fan_out(first, hi - lo)
        return n

    def _fan_out(self, first: int, n: int) -> None:
        frames: bytes | None = None
        for client in list(self._clients):
            if client.next_seq == first:
                if frames is None:  # frame the window's (possibly restamped) copy once
                    frames = self._encode_range(first, n)
                client.write_live(frames, first + n)
                self.counters.signals_published += n
            elif client.next_seq and client.next_seq < self.window.first_seq:
                client.fail(
                    f"replay fell behind the window (next {client.next_seq}, "
                    f"oldest {self.window.first_seq})"
                )

    def _encode_range(self, first: int, n: int) -> bytes:
        head = self.window.segment(first, n)
        got = len(head) // SIGNAL_SIZE
        if got == n:
            return self._encoder.encode(head)
        return self._encoder.encode(head, self.window.segment(first + got, n - got))

    def replay_frames(self, seq: int) -> tuple[bytes, int]:
        """Framed signals from ``seq`` (one burst, one ring segment) and the count."""
        segment = self.window.segment(seq, self.config.replay_burst_signals)
        return self._replay_encoder.encode(segment), len(segment) // SIGNAL_SIZE

    # -- timers --------------------------------------------------------------------------------

    def _schedule_tick(self) -> None:
        assert self._loop is not None
        period = min(self.config.heartbeat_interval_s, self.config.client_timeout_s) / 4
        self._ticker = self._loop.call_later(period, self._tick)

    def _tick(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        for client in list(self._clients):
            client.on_tick(now)
        self._schedule_tick()

    # -- logins -------------------------------------------------------------------------------

    def login(self, client: _ClientProtocol, payload: bytes) -> None:
        """Check one Login Request payload (46 bytes) and accept or reject the client."""
        cfg = self.config
        username = payload[0:6].strip(b" ").decode("ascii", "replace")
        password = payload[6:16].strip(b" ").decode("ascii", "replace")
        session = payload[16:26].strip(b" ").decode("ascii", "replace")
        raw_seq = payload[26:46].strip(b" ")
        if cfg.username is not None and (username != cfg.username or password != cfg.password):
            self.counters.logins_rejected += 1
            client.reject(_REJECT_NOT_AUTHORIZED, f"login refused for user {username!r}")
            return
        if session and session != cfg.session:
            self.counters.logins_rejected += 1
            client.reject(_REJECT_SESSION, f"unknown session {session!r}; current {cfg.session!r}")
            return
        if not raw_seq.isdigit():
            self.counters.logins_rejected += 1
            self.counters.malformed_packets += 1
            client.reject(_REJECT_SESSION, f"requested sequence {raw_seq!r} is not a number")
            return
        requested = int(raw_seq)
        if sum(1 for c in self._clients if c.next_seq) >= cfg.max_clients:
            self.counters.logins_rejected += 1
            client.reject(_REJECT_SESSION, f"server full ({cfg.max_clients} clients)")
            return
        start = self.window.next_seq if requested == 0 else requested
        if start < self.window.first_seq:
            self.counters.logins_rejected += 1
            client.reject(
                _REJECT_SESSION,
                f"requested sequence {start} is older than the replay window "
                f"(oldest held {self.window.first_seq}, next {self.window.next_seq})",
            )
            return
        if start > self.window.next_seq:
            self.counters.logins_rejected += 1
            client.reject(
                _REJECT_SESSION,
                f"requested sequence {start} is beyond the next sequence {self.window.next_seq}",
            )
            return
        self.counters.logins_accepted += 1
        client.accept(login_accepted(cfg.session, start), start)


class _ClientProtocol(asyncio.Protocol):
    """One SoupBinTCP connection."""

    def __init__(self, server: TcpPublisher) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop = server._loop or asyncio.get_running_loop()
        self._inbuf = bytearray()
        self.next_seq = 0
        """Next sequence this client gets; 0 until logged in."""
        self._last_recv = 0.0
        self._last_write = 0.0
        self._paused = False
        self._replay_scheduled = False
        self._done = False

    # -- asyncio callbacks -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        server = self._server
        sock = self._transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if server.config.send_buffer_bytes is not None:
                    sock.setsockopt(
                        socket.SOL_SOCKET, socket.SO_SNDBUF, server.config.send_buffer_bytes
                    )
        high = max(server.config.max_client_buffer_bytes // 4, SOUP_SEQUENCED_FRAME_SIZE)
        self._transport.set_write_buffer_limits(high=high, low=high // 2)
        now = self._loop.time()
        self._last_recv = self._last_write = now
        server._clients.add(self)
        server.counters.connections += 1
        server.counters.clients = len(server._clients)
        if server._closing:
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._done = True
        self._server._clients.discard(self)
        self._server.counters.clients = len(self._server._clients)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._schedule_replay()

    def data_received(self, data: bytes) -> None:
        self._last_recv = self._loop.time()
        buf = self._inbuf
        buf += data
        while len(buf) >= 2 and not self._done:
            length = int.from_bytes(buf[:2], "big")
            if length == 0:
                self.fail("malformed packet: length 0")
                return
            if len(buf) < 2 + length:
                return
            ptype = buf[2]
            payload = bytes(buf[3 : 2 + length])
            del buf[: 2 + length]
            self._on_packet(ptype, payload, length)

    # -- packets ---------------------------------------------------------------------------------

    def _on_packet(self, ptype: int, payload: bytes, length: int) -> None:
        counters = self._server.counters
        logged_in = self.next_seq != 0
        if ptype == ord("L"):
            if logged_in:
                self.fail("protocol error: second login request")
            elif length != SOUP_LOGIN_LENGTH:
                self.fail(f"malformed login request: packet length {length}, expected 47")
            else:
                self._server.login(self, payload)
        elif ptype in (ord("R"), ord("+")):
            pass  # traffic refreshes the timeout; client debug text is ignored
        elif not logged_in:
            self.fail(f"protocol error: packet type {chr(ptype)!r} before login")
        elif ptype == ord("O"):
            counters.logouts += 1
            self._close()
        elif ptype == ord("U"):
            counters.unsequenced_ignored += 1
        else:
            self.fail(f"protocol error: unknown packet type 0x{ptype:02x}")

    def accept(self, packet: bytes, start: int) -> None:
        self.next_seq = start
        self._write(packet)
        self._schedule_replay()

    def reject(self, packet: bytes, reason: str) -> None:
        self._write(debug_packet(reason))
        self._write(packet)
        self._close()

    def fail(self, reason: str) -> None:
        """Debug packet with ``reason``, then close (protocol errors, timeouts)."""
        if reason.startswith(("malformed", "protocol")):
            self._server.counters.malformed_packets += 1
        self._write(debug_packet(reason))
        self._close()

    # -- writing ---------------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._done:
            self._transport.write(data)
            self._last_write = self._loop.time()

    def write_live(self, frames: bytes, next_seq: int) -> None:
        assert self._transport is not None
        self._write(frames)
        self.next_seq = next_seq
        if self._transport.get_write_buffer_size() > self._server.config.max_client_buffer_bytes:
            self._server.counters.slow_clients_dropped += 1
            self.abort()

    def _schedule_replay(self) -> None:
        if not self._replay_scheduled and not self._done and self.next_seq:
            self._replay_scheduled = True
            self._loop.call_soon(self._replay)

    def _replay(self) -> None:
        """One burst from the window; reschedules itself until caught up or paused."""
        self._replay_scheduled = False
        server = self._server
        if self._done or self._paused or self.next_seq >= server.window.next_seq:
            return
        if self.next_seq < server.window.first_seq:
            self.fail(f"replay fell behind the window (oldest {server.window.first_seq})")
            return
        frames, n = server.replay_frames(self.next_seq)
        self._write(frames)
        self.next_seq += n
        server.counters.signals_replayed += n
        self._schedule_replay()

    def on_tick(self, now: float) -> None:
        cfg = self._server.config
        if self._done:
            return
        if now - self._last_recv >= cfg.client_timeout_s:
            self._server.counters.client_timeouts += 1
            self.fail("heartbeat timeout")
        elif self.next_seq and now - self._last_write >= cfg.heartbeat_interval_s:
            self._write(_HEARTBEAT)
            self._server.counters.heartbeats_sent += 1

    def end_of_session(self) -> None:
        """Send what the client has not had yet, then ``Z``, then close (shutdown)."""
        server = self._server
        if self.next_seq and not self._done:
            if self.next_seq < server.window.first_seq:
                self.fail(f"replay fell behind the window (oldest {server.window.first_seq})")
                return
            while self.next_seq < server.window.next_seq:
                frames, n = server.replay_frames(self.next_seq)
                self._write(frames)
                self.next_seq += n
            self._write(_END_OF_SESSION)
        self._close()

    def _close(self) -> None:
        if self._transport is not None and not self._done:
            self._done = True
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._done = True
            self._transport.abort()
