"""Signal consumers: MoldUDP64 over UDP (with gap recovery) and SoupBinTCP over TCP.

Both decode with the Rust codec (``relentless_fast_signal``), check every signal (length, magic,
version, CRC-32C) and that its sequence field equals the framing sequence, and hand each good
signal to a callback as a one-element ``SIGNAL_RECORD_DTYPE`` array with its sequence.

UDP recovery follows the reference MoldUDP64 client logic (Nassau): the consumer tracks the next
expected sequence; a packet that starts later reveals a gap, is dropped (no reordering buffer) and
the missing range, up to the newest sequence seen, is requested from the re-request server; the
request is repeated every ``rerequest_interval_s`` until filled. Heartbeats and end of session
carry the next sequence, so a lost tail is found too. After ``max_rerequests`` unanswered requests
(the server no longer holds the range) the range is counted as lost and the stream resumes.
Without a re-request address a gap is counted as lost at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, cast

import numpy as np
import numpy.typing as npt

import relentless_fast_signal as codec
from relentless_fast.outputs._wire import MOLD_MAX_COUNT

SignalCallback = Callable[[int, npt.NDArray[np.void], int], None]
"""``(sequence, record, receive_time_ns)``; ``record`` is a 1-element ``SIGNAL_RECORD_DTYPE``
array (valid during the call) and the receive time is CLOCK_REALTIME ns."""

_LATENCY_SAMPLES: Final = 1 << 20


class ConsumerError(RuntimeError):
    """The stream could not be joined (connection refused, login rejected, timeout)."""


@dataclass(slots=True)
class ConsumerStats:
    """What a consumer saw."""

    signals: int = 0
    packets: int = 0
    heartbeats: int = 0
    gaps: int = 0
    """Times the stream was found discontinuous (not counting gaps found while recovering)."""
    recovered: int = 0
    """Signals delivered from a range that had been found missing."""
    lost: int = 0
    """Sequences given up on (no re-request server, or it never answered)."""
    rerequests_sent: int = 0
    duplicates: int = 0
    """Already-seen signals skipped (overlapping packets or answers)."""
    bad_signals: int = 0
    """Messages that are not a valid signal (length, magic, version, CRC)."""
    sequence_mismatches: int = 0
    """Valid signals whose sequence field differs from the framing sequence."""
    malformed_packets: int = 0
    foreign_session: int = 0
    session: str | None = None
    first_seq: int = 0
    last_seq: int = 0
    end_of_session: bool = False
    disconnected: bool = False
    """TCP: the server closed the connection before end of session (e.g. dropped as slow)."""
    actions: list[int] = field(default_factory=lambda: [0, 0, 0])
    debug_messages: list[str] = field(default_factory=list)
    _latency_ns: npt.NDArray[np.int64] = field(
        default_factory=lambda: np.empty(_LATENCY_SAMPLES, dtype=np.int64), repr=False
    )
    _latency_count: int = 0

    @property
    def clean(self) -> bool:
        """No bad, mismatched or lost signal."""
        return not (self.bad_signals or self.sequence_mismatches or self.lost)

    def latency_us(self) -> dict[str, float]:
        """Emit-to-receive latency percentiles in µs (CLOCK_REALTIME on both sides)."""
        n = min(self._latency_count, _LATENCY_SAMPLES)
        if n == 0:
            return {}
        lat = self._latency_ns[:n] / 1000.0
        p50, p99, p999 = np.percentile(lat, [50, 99, 99.9])
        return {"p50": float(p50), "p99": float(p99), "p99.9": float(p999), "max": float(lat.max())}

    def _deliver(self, seq: int, record: npt.NDArray[np.void], recv_ns: int) -> None:
        self.signals += 1
        if not self.first_seq:
            self.first_seq = seq
        self.last_seq = seq
        action = int(record["action"][0])
        if action < 3:
            self.actions[action] += 1
        self._latency_ns[self._latency_count % _LATENCY_SAMPLES] = recv_ns - int(
            record["emit_ts_ns"][0]
        )
        self._latency_count += 1


def _check_and_emit(
    stats: ConsumerStats, seq: int, payload: bytes, recv_ns: int, on_signal: SignalCallback | None
) -> None:
    try:
        record = codec.unpack(payload)
    except (codec.SignalFormatError, ValueError):
        stats.bad_signals += 1
        return
    if int(record["sequence"][0]) != seq:
        stats.sequence_mismatches += 1
    stats._deliver(seq, record, recv_ns)
    if on_signal is not None:
        on_signal(seq, record, recv_ns)


class MoldUDP64Tracker:
    """The sans-I/O MoldUDP64 client: sequence tracking, gap detection, request building.

    Feed every datagram (live or re-request answer) to :meth:`on_datagram`; send the requests it
    returns to the re-request server. Call :meth:`on_timer` every ``rerequest_interval_s``.
    """

    def __init__(
        self,
        *,
        on_signal: SignalCallback | None = None,
        start_seq: int = 0,
        can_rerequest: bool = True,
        max_rerequests: int = 10,
        session: str | None = None,
    ) -> None:
        self.stats = ConsumerStats(session=session)
        self.next_expected = start_seq
        """Next sequence wanted; 0 = take the first packet's sequence (join live)."""
        self.known_end = start_seq
        """One past the newest sequence known to exist."""
        self._on_signal = on_signal
        self._can_rerequest = can_rerequest
        self._max_rerequests = max_rerequests
        self._unanswered = 0
        self._eos_seq: int | None = None
        self.limit: int | None = None
        """Stop delivering after this many signals (``--count``)."""

    @property
    def recovering(self) -> bool:
        return self.next_expected < self.known_end

    @property
    def finished(self) -> bool:
        """End of session seen and nothing left to recover."""
        return self._eos_seq is not None and self.next_expected >= self._eos_seq

    def request(self) -> bytes | None:
        """The request for the missing range, or None when nothing is missing."""
        if not self.recovering or self.stats.session is None or not self._can_rerequest:
            return None
        count = min(self.known_end - self.next_expected, MOLD_MAX_COUNT)
        try:
            request = codec.moldudp64_request(self.stats.session, self.next_expected, count)
        except (codec.FramingError, ValueError, OverflowError):
            return None  # not a sequence range a server could hold (e.g. past 2**64 - 1)
        self.stats.rerequests_sent += 1
        return request

    def on_timer(self) -> bytes | None:
        """Re-request while a gap is open; give the range up after ``max_rerequests`` tries."""
        if not self.recovering:
            return None
        self._unanswered += 1
        if self._unanswered > self._max_rerequests:
            self._give_up()
            return None
        return self.request()

    def _give_up(self) -> None:
        self.stats.lost += self.known_end - self.next_expected
        self.next_expected = self.known_end
        self._unanswered = 0

    def _accept(self, data: bytes) -> codec.MoldUDP64Packet | None:
        """Decode a datagram of this session; count and drop anything else."""
        stats = self.stats
        try:
            packet = codec.moldudp64_decode(data)
        except (codec.FramingError, ValueError):
            stats.malformed_packets += 1
            return None
        if packet.kind == "request" or not (
            packet.session.isascii() and packet.session.isprintable()
        ):
            stats.malformed_packets += 1
            return None
        if stats.session is None:
            stats.session = packet.session
        elif packet.session != stats.session:
            stats.foreign_session += 1
            return None
        stats.packets += 1
        if packet.kind == "heartbeat":
            stats.heartbeats += 1
        elif packet.kind == "end_of_session":
            self._eos_seq = packet.sequence
            stats.end_of_session = True
        return packet

    def on_datagram(self, data: bytes, recv_ns: int) -> bytes | None:
        """Process one datagram; return a request to send, if one is due now."""
        packet = self._accept(data)
        if packet is None:
            return None
        stats = self.stats
        seq = packet.sequence
        kind = packet.kind
        messages = packet.messages if kind == "data" else []
        if self.next_expected == 0:
            self.next_expected = self.known_end = seq
        end = seq + len(messages)
        was_recovering = self.recovering
        self.known_end = max(self.known_end, end if kind == "data" else seq)
        if seq > self.next_expected:  # gap: drop this packet, ask for what is missing
            if not was_recovering:
                stats.gaps += 1
            if self._can_rerequest:
                return self.request() if not was_recovering else None
            stats.lost += seq - self.next_expected  # nobody to ask: take this packet and go on
            self.next_expected = seq
        skip = self.next_expected - seq
        stats.duplicates += min(skip, len(messages))
        delivered = 0
        for i in range(skip, len(messages)):
            if self.limit is not None and stats.signals >= self.limit:
                break
            _check_and_emit(stats, seq + i, messages[i], recv_ns, self._on_signal)
            delivered += 1
        if delivered:
            self.next_expected += delivered
            self._unanswered = 0
            if was_recovering:
                stats.recovered += delivered
                return self.request()  # ask for the rest at once
        return None


@dataclass(frozen=True, kw_only=True, slots=True)
class UdpSource:
    """Where a UDP consumer listens: ``udp://HOST:PORT?rerequest=H:P&group=G&interface=IP``."""

    host: str
    port: int
    group: str | None = None
    interface: str = "0.0.0.0"
    rerequest: tuple[str, int] | None = None


class UdpConsumer:
    """Receives a MoldUDP64 signal stream on the running loop and recovers gaps."""

    def __init__(
        self,
        source: UdpSource,
        *,
        on_signal: SignalCallback | None = None,
        start_seq: int = 0,
        rerequest_interval_s: float = 1.0,
        max_rerequests: int = 10,
        drop: Callable[[bytes], bool] | None = None,
    ) -> None:
        """``drop`` (tests) discards chosen live datagrams as if the network had lost them."""
        self.source = source
        self.tracker = MoldUDP64Tracker(
            on_signal=on_signal,
            start_seq=start_seq,
            can_rerequest=source.rerequest is not None,
            max_rerequests=max_rerequests,
        )
        self._interval = rerequest_interval_s
        self._drop = drop
        self._live: asyncio.DatagramTransport | None = None
        self._requests: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._wake = asyncio.Event()

    @property
    def stats(self) -> ConsumerStats:
        return self.tracker.stats

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        sock = _listen_socket(self.source)
        self._live, _ = await loop.create_datagram_endpoint(
            lambda: _Datagrams(self, live=True), sock=sock
        )
        if self.source.rerequest is not None:
            self._requests, _ = await loop.create_datagram_endpoint(
                lambda: _Datagrams(self, live=False), remote_addr=self.source.rerequest
            )
        self._timer = loop.call_later(self._interval, self._on_timer)

    @property
    def address(self) -> tuple[str, int]:
        assert self._live is not None
        host, port = self._live.get_extra_info("sockname")[:2]
        return host, port

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for transport in (self._live, self._requests):
            if transport is not None:
                transport.close()

    async def run(self, *, count: int | None = None, seconds: float | None = None) -> None:
        """Receive until end of session, ``count`` signals, or ``seconds``, whichever is first."""
        loop = asyncio.get_running_loop()
        deadline = None if seconds is None else loop.time() + seconds
        self.tracker.limit = count
        while not self.tracker.finished and (count is None or self.stats.signals < count):
            timeout = None if deadline is None else deadline - loop.time()
            if timeout is not None and timeout <= 0:
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def _on_datagram(self, data: bytes, live: bool) -> None:
        if live and self._drop is not None and self._drop(data):
            return
        request = self.tracker.on_datagram(data, time.time_ns())
        if request is not None:
            self._send_request(request)
        self._wake.set()

    def _send_request(self, request: bytes) -> None:
        if self._requests is not None:
            self._requests.sendto(request)

    def _on_timer(self) -> None:
        request = self.tracker.on_timer()
        if request is not None:
            self._send_request(request)
        self._wake.set()
        self._timer = asyncio.get_running_loop().call_later(self._interval, self._on_timer)


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, consumer: UdpConsumer, *, live: bool) -> None:
        self._consumer = consumer
        self._live = live

    def datagram_received(self, data: bytes, addr: object) -> None:
        self._consumer._on_datagram(data, self._live)

    def error_received(self, exc: Exception) -> None:  # e.g. re-request server not running
        pass


def _listen_socket(source: UdpSource) -> socket.socket:
    group = source.group
    if group is None and ipaddress.IPv4Address(source.host).is_multicast:
        group = source.host
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        sock.bind((group if group is not None else source.host, source.port))
        if group is not None:
            mreq = socket.inet_aton(group) + socket.inet_aton(source.interface)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class TcpConsumer:
    """Logs into a SoupBinTCP server and receives its signal stream."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        on_signal: SignalCallback | None = None,
        username: str = "",
        password: str = "",
        session: str = "",
        start_seq: int = 0,
        heartbeat_interval_s: float = 1.0,
        timeout_s: float = 15.0,
    ) -> None:
        self.host, self.port = host, port
        self.stats = ConsumerStats()
        self._on_signal = on_signal
        self._login = codec.SoupBinTCPPacket.login_request(username, password, session, start_seq)
        self._hb = heartbeat_interval_s
        self._timeout = timeout_s
        self.next_seq = 0

    async def run(self, *, count: int | None = None, seconds: float | None = None) -> None:
        """Log in, then receive until end of session, ``count`` signals or ``seconds``.

        Raises :class:`ConsumerError` when the connection or the login fails. Logs out when it
        stops before the end of session.
        """
        loop = asyncio.get_running_loop()
        deadline = None if seconds is None else loop.time() + seconds
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self._timeout
            )
        except (OSError, TimeoutError) as exc:
            raise ConsumerError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        heartbeats = asyncio.create_task(self._heartbeats(writer))
        try:
            writer.write(self._login.encode())
            await self._receive(reader, deadline, count)
            if not self.stats.end_of_session:
                writer.write(codec.SoupBinTCPPacket.logout_request().encode())
                with contextlib.suppress(OSError):
                    await writer.drain()
        finally:
            heartbeats.cancel()
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _heartbeats(self, writer: asyncio.StreamWriter) -> None:
        beat = codec.SoupBinTCPPacket.client_heartbeat().encode()
        while True:
            await asyncio.sleep(self._hb)
            writer.write(beat)

    async def _receive(
        self, reader: asyncio.StreamReader, deadline: float | None, count: int | None
    ) -> None:
        loop = asyncio.get_running_loop()
        decoder = codec.SoupBinTCPDecoder()
        logged_in = False
        while count is None or self.stats.signals < count:
            timeout = (
                self._timeout if deadline is None else min(self._timeout, deadline - loop.time())
            )
            if timeout <= 0:
                return
            try:
                data = await asyncio.wait_for(reader.read(1 << 16), timeout)
            except TimeoutError:
                if deadline is not None and loop.time() >= deadline:
                    return
                raise ConsumerError(f"nothing received for {self._timeout} s") from None
            if not data:
                if not logged_in:
                    raise ConsumerError("server closed the connection before accepting the login")
                self.stats.disconnected = True
                return
            recv_ns = time.time_ns()
            try:
                packets = decoder.feed(data)
            except codec.FramingError as exc:
                self.stats.malformed_packets += 1
                raise ConsumerError(f"malformed stream from server: {exc}") from exc
            for packet in packets:
                logged_in = self._on_packet(packet, recv_ns) or logged_in
                if self.stats.end_of_session or (count is not None and self.stats.signals >= count):
                    return

    def _on_packet(self, packet: codec.SoupBinTCPPacket, recv_ns: int) -> bool:
        stats = self.stats
        ptype = packet.packet_type
        if ptype == "S":
            seq = cast(int, packet.sequence)
            if self.next_seq and seq != self.next_seq:
                stats.gaps += 1
            self.next_seq = seq + 1
            stats.packets += 1
            _check_and_emit(stats, seq, packet.payload, recv_ns, self._on_signal)
        elif ptype == "H":
            stats.heartbeats += 1
        elif ptype == "A":
            stats.session = packet.session
            self.next_seq = cast(int, packet.sequence)
            return True
        elif ptype == "J":
            why = "; ".join(stats.debug_messages) or "no reason given"
            raise ConsumerError(f"login rejected ({packet.reject_reason}): {why}")
        elif ptype == "Z":
            stats.end_of_session = True
        elif ptype == "+":
            stats.debug_messages.append(packet.payload.decode("ascii", "replace"))
        else:
            stats.malformed_packets += 1
        return False
