"""UDP signal publisher: MoldUDP64 packets, unicast or multicast, with a re-request server.

Hot path: :meth:`UdpPublisher.publish` takes one packed batch, copies it into the window (one
buffer copy; sequence numbers checked, restamped only when they differ) and the Rust encoder frames
the window's copy into as few datagrams as the size cap allows, in one reused buffer; each datagram
is one ``sendto`` on a non-blocking socket, straight from the caller's event loop.

Drop policy: a datagram the kernel refuses (``EAGAIN`` when the socket buffer is full,
``ENOBUFS``, ...) is counted and dropped, never queued or retried. Its signals stay in the window,
so a consumer sees the gap on the next packet or heartbeat and fetches the missing range from the
re-request server; retrying in the publisher would delay every later signal behind it.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import time
from dataclasses import dataclass, field
from typing import Self, cast

import relentless_fast_signal as codec
from relentless_fast.outputs._wire import (
    MOLD_BLOCK_SIZE,
    MOLD_END_OF_SESSION,
    MOLD_HEADER,
    MOLD_HEADER_SIZE,
    MOLD_REQUEST_SIZE,
    SIGNAL_SIZE,
    SignalBuffer,
    session_bytes,
)
from relentless_fast.outputs.policy import EmissionFilter, EmissionPolicy
from relentless_fast.outputs.window import SignalWindow

DEFAULT_GROUP = "239.255.86.10"
DEFAULT_PORT = 8610
DEFAULT_REREQUEST_PORT = 8611
DEFAULT_MAX_DATAGRAM_BYTES = 1472
"""A 1500-byte Ethernet MTU less 28 bytes of IPv4 and UDP headers: 22 signals per packet."""


def default_session() -> str:
    """A 10-character session name from the UTC start time (``YYMMDDHHMM``)."""
    return time.strftime("%y%m%d%H%M", time.gmtime())


@dataclass(frozen=True, kw_only=True, slots=True)
class UdpPublisherConfig:
    """Where and how the UDP publisher sends (all fields have working defaults)."""

    host: str = DEFAULT_GROUP
    """Destination: a unicast address or a multicast group (IPv4)."""
    port: int = DEFAULT_PORT
    session: str = field(default_factory=default_session)
    """MoldUDP64 session (1..10 ASCII characters); share it with the TCP output."""
    max_datagram_bytes: int = DEFAULT_MAX_DATAGRAM_BYTES
    """UDP payload cap; packets hold ``(cap - 20) // 66`` signals (at least one)."""
    heartbeat_interval_s: float = 1.0
    """Send a heartbeat after this long without any packet."""
    window_signals: int = 65536
    """Signals kept for re-requests (64 bytes each)."""
    rerequest_host: str = "0.0.0.0"
    rerequest_port: int | None = DEFAULT_REREQUEST_PORT
    """Re-request server port (0 picks a free one, None disables the server)."""
    multicast_interface: str | None = None
    """Local IPv4 address multicast leaves through (``IP_MULTICAST_IF``); None lets routing pick."""
    multicast_ttl: int = 1
    multicast_loop: bool = True
    send_buffer_bytes: int | None = None
    """``SO_SNDBUF``; None keeps the kernel default."""
    emission: EmissionPolicy = EmissionPolicy.ALL
    rerequest_answers_per_s: float = 20000.0
    """Budget of re-request answers per second (a burst of one second's worth is allowed); a
    request over budget is counted and not answered, and the client asks again a second later.
    Keeps a request flood from taking the event loop away from live publishing."""

    def __post_init__(self) -> None:
        session_bytes(self.session)
        if self.max_datagram_bytes < MOLD_HEADER_SIZE + MOLD_BLOCK_SIZE:
            raise ValueError(
                f"max_datagram_bytes={self.max_datagram_bytes}: must hold one signal "
                f"(>= {MOLD_HEADER_SIZE + MOLD_BLOCK_SIZE})"
            )
        if self.max_datagram_bytes > 65507:
            raise ValueError(f"max_datagram_bytes={self.max_datagram_bytes}: above UDP's 65507")
        if not self.heartbeat_interval_s > 0:
            raise ValueError(f"heartbeat_interval_s={self.heartbeat_interval_s}: must be > 0")
        if not self.rerequest_answers_per_s >= 1:
            raise ValueError(
                f"rerequest_answers_per_s={self.rerequest_answers_per_s}: must be >= 1"
            )
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port={self.port}: out of range")
        EmissionPolicy(self.emission)


@dataclass(slots=True)
class UdpCounters:
    """What the publisher did (monotonic counts since start)."""

    signals_in: int = 0
    signals_sent: int = 0
    packets_sent: int = 0
    heartbeats_sent: int = 0
    eagain_drops: int = 0
    """Datagrams dropped because the socket buffer was full (their signals stay re-requestable)."""
    send_errors: int = 0
    """Datagrams dropped on any other socket error (ENOBUFS, ICMP unreachable, ...)."""
    rerequests: int = 0
    rerequests_answered: int = 0
    rerequests_unavailable: int = 0
    """Requests for sequences outside the window (too old or not yet sent): no answer."""
    rerequests_malformed: int = 0
    rerequests_throttled: int = 0
    """Requests not answered because the answer budget was spent."""
    """Datagrams on the re-request port that are not a 20-byte request of this session."""
    restamped: int = 0


class _Framer:
    """Frames window rows into MoldUDP64 packets with the Rust encoder, into one reused buffer."""

    __slots__ = ("_buf", "encoder")

    def __init__(self, session: str, max_datagram_bytes: int, capacity: int) -> None:
        self.encoder = codec.MoldUDP64Encoder(session, max_datagram=max_datagram_bytes)
        self._buf = bytearray(self.encoder.framed_size(capacity))

    def frame(self, seq: int, signals: memoryview) -> tuple[memoryview, list[tuple[int, int]]]:
        """Packets for ``signals`` (carrying sequences ``seq``..): the buffer and the spans."""
        need = self.encoder.framed_size(len(signals) // SIGNAL_SIZE)
        if need > len(self._buf):
            self._buf = bytearray(max(need, 2 * len(self._buf)))
        self.encoder.next_sequence = seq
        return memoryview(self._buf), self.encoder.encode_signals(signals, self._buf)

    def empty(self, seq: int, count: int) -> bytes:
        """A heartbeat (count 0) or end-of-session (count 0xFFFF) packet announcing ``seq``."""
        self.encoder.next_sequence = seq
        return self.encoder.heartbeat() if count == 0 else self.encoder.end_of_session()


class UdpPublisher:
    """Publishes packed signals as MoldUDP64 on the running event loop.

    Use as ``async with UdpPublisher(config) as pub: pub.publish(buf, count)``. ``sock`` may be a
    ready, connected datagram socket (tests inject an ``AF_UNIX`` pair to exercise ``EAGAIN``);
    by default an unconnected IPv4 UDP socket sends to ``config.host:config.port``.
    """

    def __init__(
        self, config: UdpPublisherConfig | None = None, *, sock: socket.socket | None = None
    ) -> None:
        self.config = config or UdpPublisherConfig()
        self.counters = UdpCounters()
        self.window = SignalWindow(self.config.window_signals)
        self._filter = EmissionFilter(self.config.emission)
        self._session = session_bytes(self.config.session)
        cfg = self.config
        self._packet = _Framer(cfg.session, cfg.max_datagram_bytes, min(cfg.window_signals, 4096))
        self._answer = _Framer(cfg.session, cfg.max_datagram_bytes, 1)
        self._per_packet = self._packet.encoder.signals_per_packet
        self._sock = sock
        self._owns_sock = sock is None
        # Our own socket stays unconnected: a connected UDP socket turns the ICMP "port
        # unreachable" of a consumer that is not up yet into an error on the next send.
        self._dest = None if sock is not None else (self.config.host, self.config.port)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rerequest: asyncio.DatagramTransport | None = None
        self._heartbeat: asyncio.TimerHandle | None = None
        self._last_send = 0.0
        self._closed = False
        self._tokens = self.config.rerequest_answers_per_s
        self._tokens_at = 0.0

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the socket, the re-request server and the heartbeat timer."""
        self._loop = asyncio.get_running_loop()
        if self._sock is None:
            self._sock = _open_socket(self.config)
        self._sock.setblocking(False)
        if self.config.rerequest_port is not None:
            # Bound here, not by create_datagram_endpoint: uvloop leaks its transport when the
            # bind fails.
            server_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                server_sock.bind((self.config.rerequest_host, self.config.rerequest_port))
                server_sock.setblocking(False)
            except BaseException:
                server_sock.close()
                if self._owns_sock:
                    self._sock.close()
                    self._sock = None
                raise
            transport, _ = await self._loop.create_datagram_endpoint(
                lambda: _RerequestProtocol(self), sock=server_sock
            )
            self._rerequest = transport
        self._last_send = self._loop.time()
        self._heartbeat = self._loop.call_at(
            self._last_send + self.config.heartbeat_interval_s, self._on_heartbeat_timer
        )

    async def aclose(self) -> None:
        """Send end of session, stop the timer and the re-request server, close the socket."""
        if self._closed:
            return
        self._closed = True
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        if self._sock is not None:
            self._send(self._packet.empty(self.window.next_seq, MOLD_END_OF_SESSION))
            if self._owns_sock:
                self._sock.close()
        if self._rerequest is not None:
            self._rerequest.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def session(self) -> str:
        """The MoldUDP64 session name."""
        return self.config.session

    @property
    def rerequest_address(self) -> tuple[str, int] | None:
        """Where the re-request server listens (None when disabled or not started)."""
        if self._rerequest is None:
            return None
        host, port = self._rerequest.get_extra_info("sockname")[:2]
        return host, port

    @property
    def signals_per_packet(self) -> int:
        """Signals one full packet carries under the datagram cap."""
        return self._per_packet

    # -- hot path ----------------------------------------------------------------------------

    def publish(self, signals: SignalBuffer, count: int) -> int:
        """Publish ``count`` packed signals from ``signals``; return how many passed the policy.

        One call per batch, from the event loop's thread; never blocks. ``signals`` is only read
        during the call (the window keeps its own copy).
        """
        if self._closed or self._sock is None:
            raise RuntimeError("publisher is not running")
        if count <= 0:
            return 0
        src, n = self._filter.select_bytes(signals, count)
        self.counters.signals_in += count
        cap = self.window.capacity
        for lo in range(0, n, cap):  # a batch larger than the window goes in window-sized parts
            hi = min(n, lo + cap)
            self._append_and_send(src[lo * SIGNAL_SIZE : hi * SIGNAL_SIZE], hi - lo)
        return n

    def _append_and_send(self, src: memoryview, n: int) -> None:
        window = self.window
        restamped = window.restamped
        seq = window.append_bytes(src, n)
        self.counters.restamped += window.restamped - restamped
        end = window.next_seq
        while seq < end:  # one pass, or two when the batch wraps around the ring
            segment = window.segment(seq, end - seq)
            buf, spans = self._packet.frame(seq, segment)
            for offset, length in spans:
                if self._send(buf[offset : offset + length]):
                    self.counters.packets_sent += 1
                    self.counters.signals_sent += (length - MOLD_HEADER_SIZE) // MOLD_BLOCK_SIZE
            seq += len(segment) // SIGNAL_SIZE

    def _send(self, packet: bytes | memoryview) -> bool:
        assert self._sock is not None
        try:
            if self._dest is None:
                self._sock.send(packet)
            else:
                self._sock.sendto(packet, self._dest)
        except BlockingIOError:
            self.counters.eagain_drops += 1
            return False
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                self.counters.eagain_drops += 1
            else:
                self.counters.send_errors += 1
            return False
        if self._loop is not None:
            self._last_send = self._loop.time()
        return True

    # -- heartbeats and re-requests ----------------------------------------------------------

    def _on_heartbeat_timer(self) -> None:
        assert self._loop is not None
        interval = self.config.heartbeat_interval_s
        now = self._loop.time()
        if now - self._last_send >= interval * 0.999:
            if self._send(self._packet.empty(self.window.next_seq, 0)):
                self.counters.heartbeats_sent += 1
            else:
                self._last_send = now
        self._heartbeat = self._loop.call_at(self._last_send + interval, self._on_heartbeat_timer)

    def answer(self, request: bytes) -> bytes | None:
        """The packet answering one 20-byte MoldUDP64 request, or None (counted) when none is due.

        The answer starts at the requested sequence and holds as many of the requested signals as
        the window has and one datagram fits (fewer than asked is normal; the client asks again).
        """
        self.counters.rerequests += 1
        if len(request) != MOLD_REQUEST_SIZE:
            self.counters.rerequests_malformed += 1
            return None
        session, seq, count = MOLD_HEADER.unpack(request)
        if session != self._session or count == 0 or count == MOLD_END_OF_SESSION or seq < 1:
            self.counters.rerequests_malformed += 1
            return None
        segment = self.window.segment(seq, min(count, self._per_packet))
        if not segment:
            self.counters.rerequests_unavailable += 1
            return None
        if not self._take_token():
            self.counters.rerequests_throttled += 1
            return None
        self.counters.rerequests_answered += 1
        buf, spans = self._answer.frame(seq, segment)
        offset, length = spans[0]
        return bytes(buf[offset : offset + length])

    def _take_token(self) -> bool:
        rate = self.config.rerequest_answers_per_s
        now = self._loop.time() if self._loop is not None else time.monotonic()
        self._tokens = min(rate, self._tokens + (now - self._tokens_at) * rate)
        self._tokens_at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class _RerequestProtocol(asyncio.DatagramProtocol):
    def __init__(self, publisher: UdpPublisher) -> None:
        self._publisher = publisher
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        packet = self._publisher.answer(data)
        if packet is not None and self._transport is not None:
            self._transport.sendto(packet, addr)

    def error_received(self, exc: Exception) -> None:  # ICMP for an earlier answer: ignore
        self._publisher.counters.send_errors += 1


def _open_socket(config: UdpPublisherConfig) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        if config.send_buffer_bytes is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, config.send_buffer_bytes)
        if ipaddress.IPv4Address(config.host).is_multicast:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, config.multicast_ttl)
            sock.setsockopt(
                socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1 if config.multicast_loop else 0
            )
            if config.multicast_interface is not None:
                sock.setsockopt(
                    socket.IPPROTO_IP,
                    socket.IP_MULTICAST_IF,
                    socket.inet_aton(config.multicast_interface),
                )
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
