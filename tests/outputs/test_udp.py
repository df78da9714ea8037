"""UDP publisher: MoldUDP64 packets on real loopback sockets."""

from __future__ import annotations

import asyncio
import socket
import struct

import numpy as np
import pytest

from relentless_fast.outputs._wire import check_signal
from relentless_fast.outputs.policy import EmissionPolicy
from relentless_fast.outputs.udp import UdpPublisher, UdpPublisherConfig
from tests.outputs.helpers import pack_batch, pack_signal, parse_mold, udp_receiver


def _config(port: int, **kw: object) -> UdpPublisherConfig:
    base: dict[str, object] = dict(
        host="127.0.0.1",
        port=port,
        session="TEST0001",
        rerequest_host="127.0.0.1",
        rerequest_port=0,
        heartbeat_interval_s=30.0,
    )
    base.update(kw)
    return UdpPublisherConfig(**base)  # type: ignore[arg-type]


async def _drain(rx: object, until_seq: int) -> list[tuple[bytes, int, int, list[bytes]]]:
    packets = []
    while True:
        pkt = parse_mold(await rx.get())  # type: ignore[attr-defined]
        packets.append(pkt)
        if pkt[2] not in (0, 0xFFFF) and pkt[1] + pkt[2] >= until_seq:
            return packets


async def test_packets_carry_batches_with_continuous_sequences() -> None:
    transport, rx, port = await udp_receiver()
    async with UdpPublisher(_config(port)) as pub:
        sent = [pack_batch(1, 1), pack_batch(2, 5), pack_batch(7, 30)]
        for batch in sent:
            assert pub.publish(batch, len(batch) // 64) == len(batch) // 64
        packets = await _drain(rx, 37)
    transport.close()
    expected_seq = 1
    payloads = []
    for session, seq, count, msgs in packets:
        assert session == b"TEST0001  "
        assert seq == expected_seq
        assert count == len(msgs) > 0
        expected_seq += count
        payloads.extend(msgs)
    assert b"".join(payloads) == b"".join(sent)
    assert pub.counters.signals_sent == 36 and pub.counters.restamped == 0


@pytest.mark.parametrize("cap", [86, 151, 1400, 1472, 9000])
async def test_datagrams_are_filled_up_to_the_cap(cap: int) -> None:
    transport, rx, port = await udp_receiver()
    per = (cap - 20) // 66
    total = 3 * per + 1
    async with UdpPublisher(_config(port, max_datagram_bytes=cap)) as pub:
        assert pub.signals_per_packet == per
        pub.publish(pack_batch(1, total), total)
        raw = [await rx.get() for _ in range(4)]
    transport.close()
    assert all(len(p) <= cap for p in raw)
    assert [parse_mold(p)[2] for p in raw] == [per, per, per, 1]
    assert [parse_mold(p)[1] for p in raw] == [1, 1 + per, 1 + 2 * per, 1 + 3 * per]


def test_config_refuses_a_cap_below_one_signal() -> None:
    with pytest.raises(ValueError, match="max_datagram_bytes"):
        UdpPublisherConfig(max_datagram_bytes=85)
    with pytest.raises(ValueError, match="session"):
        UdpPublisherConfig(session="ELEVENCHARS")


async def test_heartbeat_when_idle_and_end_of_session_on_close() -> None:
    transport, rx, port = await udp_receiver()
    pub = UdpPublisher(_config(port, heartbeat_interval_s=0.05))
    await pub.start()
    pub.publish(pack_batch(1, 3), 3)
    assert parse_mold(await rx.get())[1:3] == (1, 3)
    hb = parse_mold(await rx.get())
    assert hb[1:] == (4, 0, [])
    hb2 = parse_mold(await rx.get())
    assert hb2[1:] == (4, 0, [])
    await pub.aclose()
    while True:
        pkt = parse_mold(await rx.get())
        if pkt[2] != 0:
            break
    transport.close()
    assert pkt[1:] == (4, 0xFFFF, [])
    assert pub.counters.heartbeats_sent >= 2
    with pytest.raises(RuntimeError):
        pub.publish(pack_batch(4, 1), 1)


async def test_rerequest_server_answers_from_the_window() -> None:
    transport, _, port = await udp_receiver()
    async with UdpPublisher(_config(port, window_signals=50)) as pub:
        pub.publish(pack_batch(1, 80), 80)  # window keeps 31..80
        addr = pub.rerequest_address
        assert addr is not None
        req_t, req_rx, _ = await udp_receiver()

        def ask(session: bytes, seq: int, count: int) -> None:
            req_t.sendto(struct.pack(">10sQH", session, seq, count), ("127.0.0.1", addr[1]))

        ask(b"TEST0001  ", 40, 5)
        session, seq, count, msgs = parse_mold(await req_rx.get())
        assert (session, seq, count) == (b"TEST0001  ", 40, 5)
        assert msgs == [pack_signal(s) for s in range(40, 45)]
        ask(b"TEST0001  ", 75, 100)  # more than held: answers what exists
        assert parse_mold(await req_rx.get())[1:3] == (75, 6)
        ask(b"TEST0001  ", 10, 5)  # older than the window: no answer, counted
        ask(b"OTHER     ", 40, 5)  # another session
        req_t.sendto(b"short", ("127.0.0.1", addr[1]))
        ask(b"TEST0001  ", 41, 1)  # marker: answered after the three above were handled
        assert parse_mold(await req_rx.get())[1:3] == (41, 1)
        assert req_rx.queue.empty()
        c = pub.counters
        assert (c.rerequests, c.rerequests_answered) == (6, 3)
        assert (c.rerequests_unavailable, c.rerequests_malformed) == (1, 2)
        req_t.close()
    transport.close()


async def test_wrong_sequences_are_restamped_with_a_valid_crc() -> None:
    transport, rx, port = await udp_receiver()
    async with UdpPublisher(_config(port)) as pub:
        pub.publish(pack_batch(100, 3), 3)
        _, seq, count, msgs = parse_mold(await rx.get())
    transport.close()
    assert (seq, count) == (1, 3)
    for i, msg in enumerate(msgs, start=1):
        assert struct.unpack_from(">Q", msg, 8)[0] == i
        assert check_signal(msg) is None
    assert pub.counters.restamped == 3


async def test_emission_policy_actions_only() -> None:
    transport, rx, port = await udp_receiver()
    batch = b"".join(pack_signal(i + 1, action=a) for i, a in enumerate([0, 1, 0, 2, 0]))
    async with UdpPublisher(_config(port, emission=EmissionPolicy.ACTIONS)) as pub:
        assert pub.publish(batch, 5) == 2
        _, seq, count, msgs = parse_mold(await rx.get())
    transport.close()
    assert (seq, count) == (1, 2)
    assert [m[3] for m in msgs] == [1, 2]
    assert [struct.unpack_from(">Q", m, 8)[0] for m in msgs] == [1, 2]
    assert all(check_signal(m) is None for m in msgs)


async def test_eagain_is_counted_and_never_blocks() -> None:
    # Loopback UDP never reports EAGAIN on Linux; a full AF_UNIX datagram queue does.
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    try:
        pub = UdpPublisher(_config(0, rerequest_port=None), sock=ours)
        await pub.start()
        for i in range(200):
            pub.publish(pack_batch(1 + 22 * i, 22), 22)
        c = pub.counters
        assert c.eagain_drops > 0
        assert c.packets_sent + c.eagain_drops == 200
        assert pub.window.next_seq == 22 * 200 + 1  # dropped signals stay re-requestable
        answer = pub.answer(struct.pack(">10sQH", b"TEST0001  ", 4400, 1))
        assert answer is not None and parse_mold(answer)[3] == [pack_signal(4400)]
        await pub.aclose()
    finally:
        ours.close()
        peer.close()


async def test_multicast_on_loopback() -> None:
    group, port = "239.255.86.10", 0
    rx_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        rx_sock.bind((group, port))
        mreq = socket.inet_aton(group) + socket.inet_aton("127.0.0.1")
        rx_sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    except OSError as exc:
        rx_sock.close()
        pytest.skip(f"kernel refuses multicast on loopback: {exc}")
    port = rx_sock.getsockname()[1]
    rx_sock.setblocking(False)
    loop = asyncio.get_running_loop()
    cfg = _config(port, host=group, multicast_interface="127.0.0.1")
    try:
        async with UdpPublisher(cfg) as pub:
            pub.publish(pack_batch(1, 4), 4)
            data = await asyncio.wait_for(loop.sock_recv(rx_sock, 65536), 5)
    finally:
        rx_sock.close()
    assert parse_mold(data)[1:3] == (1, 4)


async def test_publish_accepts_arrays_and_partial_buffers_and_refuses_short_ones() -> None:
    transport, rx, port = await udp_receiver()
    async with UdpPublisher(_config(port)) as pub:
        arr = np.frombuffer(bytes(pack_batch(1, 4)), dtype=np.uint8).reshape(4, 64).copy()
        assert pub.publish(arr, 4) == 4
        reused = bytearray(64 * 100)  # a pack_into buffer larger than this batch
        reused[: 64 * 2] = pack_batch(5, 2)
        assert pub.publish(reused, 2) == 2
        with pytest.raises(ValueError, match="3 signals need 192"):
            pub.publish(pack_batch(7, 2), 3)
        got = [parse_mold(await rx.get()) for _ in range(2)]
    transport.close()
    assert [(p[1], p[2]) for p in got] == [(1, 4), (5, 2)]
    assert got[1][3] == [pack_signal(5), pack_signal(6)]


async def test_rerequest_answers_are_budgeted() -> None:
    async with UdpPublisher(_config(0, rerequest_port=None, rerequest_answers_per_s=5)) as pub:
        pub.publish(pack_batch(1, 3), 3)
        request = struct.pack(">10sQH", b"TEST0001  ", 1, 3)
        answers = [pub.answer(request) for _ in range(8)]  # within one instant: 5 allowed
        assert sum(a is not None for a in answers) == 5
        assert pub.counters.rerequests_throttled == 3
        await asyncio.sleep(0.25)  # refills about one token
        assert pub.answer(request) is not None


async def test_start_fails_cleanly_when_the_rerequest_port_is_taken() -> None:
    taken, _, port = await udp_receiver()
    pub = UdpPublisher(_config(port, rerequest_port=port))
    with pytest.raises(OSError):
        await pub.start()
    taken.close()
    assert pub.rerequest_address is None
