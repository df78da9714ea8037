"""Consumers: the MoldUDP64 tracker (sans I/O), UDP recovery end to end, the TCP consumer."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import relentless_fast_signal as codec
from relentless_fast.outputs.consumer import (
    ConsumerError,
    MoldUDP64Tracker,
    TcpConsumer,
    UdpConsumer,
    UdpSource,
)
from relentless_fast.outputs.tcp import TcpPublisher, TcpPublisherConfig
from relentless_fast.outputs.udp import UdpPublisher, UdpPublisherConfig
from tests.outputs.helpers import free_udp_port, pack_batch, pack_signal


def _packets(first: int, n: int, per: int = 3) -> list[bytes]:
    """MoldUDP64 packets of ``per`` signals each, built by the codec (not the publisher)."""
    enc = codec.MoldUDP64Encoder("S1", next_sequence=first, max_datagram=20 + per * 66)
    out = bytearray(enc.framed_size(n))
    spans = enc.encode_signals(pack_batch(first, n), out)
    return [bytes(out[o : o + ln]) for o, ln in spans]


def _tracker(**kw: object) -> tuple[MoldUDP64Tracker, list[int]]:
    seen: list[int] = []
    tracker = MoldUDP64Tracker(on_signal=lambda seq, rec, ns: seen.append(seq), **kw)  # type: ignore[arg-type]
    return tracker, seen


def test_tracker_in_order_stream() -> None:
    tracker, seen = _tracker()
    for p in _packets(5, 9):
        assert tracker.on_datagram(p, 0) is None
    assert seen == list(range(5, 14))
    assert tracker.stats.gaps == 0 and tracker.stats.clean


def test_tracker_gap_request_partial_answers_and_recovery() -> None:
    tracker, seen = _tracker()
    p = _packets(1, 12)  # 4 packets: 1-3, 4-6, 7-9, 10-12
    tracker.on_datagram(p[0], 0)
    request = tracker.on_datagram(p[2], 0)  # 4-6 lost: 7-9 dropped, 4..9 requested
    assert request == codec.moldudp64_request("S1", 4, 6)
    assert tracker.on_datagram(p[3], 0) is None  # still recovering: dropped, no request flood
    assert tracker.known_end == 13
    again = tracker.on_datagram(p[1], 0)  # a partial answer (4-6): asks for the rest at once
    assert again == codec.moldudp64_request("S1", 7, 6)
    tracker.on_datagram(_packets(7, 6, per=6)[0], 0)
    assert seen == list(range(1, 13))
    s = tracker.stats
    assert (s.gaps, s.recovered, s.lost, s.rerequests_sent) == (1, 9, 0, 2)


def test_tracker_finds_tail_loss_through_heartbeat_and_gives_up() -> None:
    tracker, seen = _tracker(max_rerequests=2)
    p = _packets(1, 6)
    tracker.on_datagram(p[0], 0)
    heartbeat = struct.pack(">10sQH", b"S1        ", 7, 0)
    assert tracker.on_datagram(heartbeat, 0) == codec.moldudp64_request("S1", 4, 3)
    assert tracker.on_timer() is not None
    assert tracker.on_timer() is not None
    assert tracker.on_timer() is None  # third try: given up
    assert (tracker.stats.lost, tracker.next_expected) == (3, 7)
    assert not tracker.stats.clean
    eos = struct.pack(">10sQH", b"S1        ", 7, 0xFFFF)
    tracker.on_datagram(eos, 0)
    assert tracker.finished and seen == [1, 2, 3]


def test_tracker_without_rerequest_counts_loss_and_goes_on() -> None:
    tracker, seen = _tracker(can_rerequest=False)
    p = _packets(1, 9)
    tracker.on_datagram(p[0], 0)
    assert tracker.on_datagram(p[2], 0) is None
    assert seen == [1, 2, 3, 7, 8, 9]
    assert (tracker.stats.gaps, tracker.stats.lost) == (1, 3)


def test_tracker_skips_duplicates_and_checks_each_signal() -> None:
    tracker, seen = _tracker()
    p = _packets(1, 6)
    tracker.on_datagram(p[0], 0)
    tracker.on_datagram(p[0], 0)  # duplicate packet
    corrupt = bytearray(p[1])
    corrupt[20 + 2 + 30] ^= 0xFF  # first signal of packet 2: CRC now wrong
    tracker.on_datagram(bytes(corrupt), 0)
    assert seen == [1, 2, 3, 5, 6]
    s = tracker.stats
    assert (s.duplicates, s.bad_signals) == (3, 1)
    mismatched = codec.MoldUDP64Encoder("S1", next_sequence=7).encode_messages([pack_signal(99)])
    tracker.on_datagram(mismatched[0], 0)
    assert (s.sequence_mismatches, seen[-1]) == (1, 7)
    tracker.on_datagram(b"garbage", 0)
    tracker.on_datagram(codec.moldudp64_request("S1", 1, 1), 0)
    other = codec.MoldUDP64Encoder("OTHER", next_sequence=8).encode_messages([pack_signal(8)])
    tracker.on_datagram(other[0], 0)
    assert (s.malformed_packets, s.foreign_session) == (2, 1)
    assert not s.clean


async def test_udp_gaps_recovered_through_the_rerequest_server() -> None:
    port = free_udp_port()
    cfg = UdpPublisherConfig(
        host="127.0.0.1",
        port=port,
        session="REC1",
        rerequest_host="127.0.0.1",
        rerequest_port=0,
        heartbeat_interval_s=0.05,
        max_datagram_bytes=20 + 4 * 66,
    )
    async with UdpPublisher(cfg) as pub:
        assert pub.rerequest_address is not None
        dropped: set[int] = set()

        def drop(datagram: bytes) -> bool:  # lose every packet starting at 9..20, and the tail
            seq = struct.unpack_from(">Q", datagram, 10)[0]
            count = struct.unpack_from(">H", datagram, 18)[0]
            if count not in (0, 0xFFFF) and (9 <= seq <= 20 or seq >= 37):
                dropped.add(seq)
                return True
            return False

        seen: list[int] = []
        consumer = UdpConsumer(
            UdpSource(host="127.0.0.1", port=port, rerequest=pub.rerequest_address),
            on_signal=lambda seq, rec, ns: seen.append(seq),
            start_seq=1,
            rerequest_interval_s=0.05,
            drop=drop,
        )
        await consumer.start()
        for i in range(10):
            pub.publish(pack_batch(1 + 4 * i, 4), 4)
            await asyncio.sleep(0)
        await asyncio.wait_for(consumer.run(count=40), 10)
        consumer.close()
    assert seen == list(range(1, 41))
    assert dropped >= {9, 13, 17, 37}
    s = consumer.stats
    assert s.gaps >= 1 and s.recovered >= 16 and s.clean
    assert pub.counters.rerequests_answered >= 2


async def test_udp_consumer_joins_multicast() -> None:
    port = free_udp_port()
    source = UdpSource(host="239.255.86.10", port=port, interface="127.0.0.1")
    seen: list[int] = []
    consumer = UdpConsumer(source, on_signal=lambda seq, rec, ns: seen.append(seq))
    try:
        await consumer.start()
    except OSError as exc:
        pytest.skip(f"kernel refuses multicast on loopback: {exc}")
    cfg = UdpPublisherConfig(
        host="239.255.86.10", port=port, multicast_interface="127.0.0.1", rerequest_port=None
    )
    async with UdpPublisher(cfg) as pub:
        pub.publish(pack_batch(1, 5), 5)
    await asyncio.wait_for(consumer.run(), 10)  # until the end of session sent on close
    consumer.close()
    assert seen == [1, 2, 3, 4, 5] and consumer.stats.end_of_session


async def test_tcp_consumer_replays_then_reads_live_until_end_of_session() -> None:
    pub = TcpPublisher(TcpPublisherConfig(host="127.0.0.1", port=0, session="T1"))
    await pub.start()
    pub.publish(pack_batch(1, 5), 5)
    seen: list[int] = []
    consumer = TcpConsumer(*pub.address, on_signal=lambda s, r, n: seen.append(s), start_seq=2)
    task = asyncio.create_task(consumer.run())
    while len(seen) < 4:
        await asyncio.sleep(0.01)
    pub.publish(pack_batch(6, 3), 3)
    while len(seen) < 7:
        await asyncio.sleep(0.01)
    await pub.aclose()
    await asyncio.wait_for(task, 5)
    assert seen == list(range(2, 9))
    assert consumer.stats.end_of_session and consumer.stats.session == "T1"
    assert consumer.stats.clean


async def test_tcp_consumer_reports_a_rejected_login_and_a_refused_connection() -> None:
    cfg = TcpPublisherConfig(host="127.0.0.1", port=0, username="u", password="p", window_signals=4)
    async with TcpPublisher(cfg) as pub:
        with pytest.raises(ConsumerError, match=r"login rejected \(A\)"):
            await TcpConsumer(*pub.address, username="u", password="x").run()
        pub.publish(pack_batch(1, 8), 8)
        with pytest.raises(ConsumerError, match="older than the replay window"):
            await TcpConsumer(*pub.address, username="u", password="p", start_seq=1).run()
        consumer = TcpConsumer(*pub.address, username="u", password="p", start_seq=5)
        await consumer.run(count=4)
        assert consumer.stats.signals == 4
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    with pytest.raises(ConsumerError, match="cannot connect"):
        await TcpConsumer("127.0.0.1", closed_port, timeout_s=2).run()


@settings(max_examples=60, deadline=None)
@given(
    lost=st.sets(st.integers(0, 39), max_size=25),
    answer_cap=st.integers(1, 8),
    per=st.integers(1, 5),
)
def test_tracker_recovers_any_loss_pattern(lost: set[int], answer_cap: int, per: int) -> None:
    """Whatever data packets are lost, answers (at most ``answer_cap`` signals each) from a
    window holding everything restore the exact sequence, once each, in order."""
    signals = {s: pack_signal(s) for s in range(1, 40 * per + 1)}
    tracker, seen = _tracker(start_seq=1)
    live = _packets(1, 40 * per, per=per)
    live.append(struct.pack(">10sQH", b"S1        ", 40 * per + 1, 0xFFFF))

    def answer(request: bytes) -> bytes:
        _, seq, count = struct.unpack(">10sQH", request)
        n = min(count, answer_cap)
        enc = codec.MoldUDP64Encoder("S1", next_sequence=seq, max_datagram=20 + 66 * n)
        return enc.encode_messages([signals[s] for s in range(seq, seq + n)])[0]

    pending: list[bytes] = []
    for i, packet in enumerate(live):
        if i in lost:
            continue
        request = tracker.on_datagram(packet, 0)
        while request is not None:  # answers arrive before the next live packet
            pending.append(request)
            request = tracker.on_datagram(answer(pending[-1]), 0)
    for _ in range(200):  # the timer asks again for whatever is still missing
        if tracker.finished:
            break
        request = tracker.on_timer()
        while request is not None:
            request = tracker.on_datagram(answer(request), 0)
    assert tracker.finished  # the end of session (never lost here) reveals a lost tail
    assert seen == list(range(1, 40 * per + 1))
    assert tracker.stats.lost == 0 and tracker.stats.clean


async def test_tcp_consumer_notices_a_hang_up_before_end_of_session() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(49)  # the login request
        writer.write(codec.SoupBinTCPPacket.login_accepted("X1", 7).encode())
        writer.write(codec.SoupBinTCPPacket.sequenced_data(pack_signal(7)).encode())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    seen: list[int] = []
    consumer = TcpConsumer("127.0.0.1", port, on_signal=lambda s, r, n: seen.append(s))
    await asyncio.wait_for(consumer.run(), 10)
    server.close()
    assert seen == [7]
    assert consumer.stats.disconnected and not consumer.stats.end_of_session
