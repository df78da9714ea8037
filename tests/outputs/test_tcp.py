"""TCP publisher: SoupBinTCP 3.00 server on real loopback sockets."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from relentless_fast.outputs.tcp import TcpPublisher, TcpPublisherConfig
from tests.outputs.helpers import pack_batch, pack_signal, read_soup, soup_login


def _config(**kw: object) -> TcpPublisherConfig:
    base: dict[str, object] = dict(host="127.0.0.1", port=0, session="TCP001")
    base.update(kw)
    return TcpPublisherConfig(**base)  # type: ignore[arg-type]


async def _connect(
    pub: TcpPublisher, login: bytes | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(*pub.address)
    if login is not None:
        writer.write(login)
        await writer.drain()
    return reader, writer


async def _sequenced(reader: asyncio.StreamReader, n: int) -> list[bytes]:
    out: list[bytes] = []
    while len(out) < n:
        ptype, payload = await read_soup(reader)
        assert ptype in ("S", "H"), (ptype, payload)
        if ptype == "S":
            out.append(payload)
    return out


async def _until_eof(reader: asyncio.StreamReader) -> list[tuple[str, bytes]]:
    packets: list[tuple[str, bytes]] = []
    while True:
        packet = await read_soup(reader)
        if packet == ("", b""):
            return packets
        packets.append(packet)


async def test_login_live_heartbeat_and_logout() -> None:
    async with TcpPublisher(_config(heartbeat_interval_s=0.05)) as pub:
        pub.publish(pack_batch(1, 2), 2)  # before login: not sent to a "live" login
        reader, writer = await _connect(pub, soup_login("bob", "pw", seq=0))
        ptype, payload = await read_soup(reader)
        assert ptype == "A"
        assert payload == b"    TCP001" + b"3".rjust(20)
        pub.publish(pack_batch(3, 3), 3)
        assert await _sequenced(reader, 3) == [pack_signal(s) for s in (3, 4, 5)]
        assert await read_soup(reader) == ("H", b"")  # idle: server heartbeat
        writer.write(b"\x00\x01O")
        await writer.drain()
        rest = await _until_eof(reader)
        assert all(p == ("H", b"") for p in rest)
        writer.close()
        assert pub.counters.logouts == 1 and pub.counters.heartbeats_sent >= 1


async def test_credentials_are_checked() -> None:
    async with TcpPublisher(_config(username="alice", password="secret")) as pub:
        reader, writer = await _connect(pub, soup_login("alice", "wrong"))
        assert await _until_eof(reader) == [
            ("+", b"login refused for user 'alice'"),
            ("J", b"A"),
        ]
        writer.close()
        reader, writer = await _connect(pub, soup_login("alice", "secret"))
        assert (await read_soup(reader))[0] == "A"
        writer.close()
        assert (pub.counters.logins_rejected, pub.counters.logins_accepted) == (1, 1)


async def test_replay_from_a_sequence_then_live() -> None:
    async with TcpPublisher(_config(replay_burst_signals=3)) as pub:
        pub.publish(pack_batch(1, 10), 10)
        reader, writer = await _connect(pub, soup_login(seq=4))
        assert await read_soup(reader) == ("A", b"    TCP001" + b"4".rjust(20))
        assert await _sequenced(reader, 7) == [pack_signal(s) for s in range(4, 11)]
        pub.publish(pack_batch(11, 2), 2)
        assert await _sequenced(reader, 2) == [pack_signal(11), pack_signal(12)]
        writer.close()
        assert pub.counters.signals_replayed == 7


async def test_clear_rejects_for_old_future_sequences_and_other_sessions() -> None:
    async with TcpPublisher(_config(window_signals=5)) as pub:
        pub.publish(pack_batch(1, 10), 10)  # window holds 6..10
        reader, writer = await _connect(pub, soup_login(seq=2))
        packets = await _until_eof(reader)
        writer.close()
        assert packets[-1] == ("J", b"S")
        assert packets[0][0] == "+"
        assert b"older than the replay window (oldest held 6, next 11)" in packets[0][1]
        reader, writer = await _connect(pub, soup_login(seq=12))
        packets = await _until_eof(reader)
        writer.close()
        assert packets[-1] == ("J", b"S") and b"beyond the next sequence 11" in packets[0][1]
        reader, writer = await _connect(pub, soup_login(session="OTHER", seq=6))
        packets = await _until_eof(reader)
        writer.close()
        assert packets[-1] == ("J", b"S") and b"unknown session" in packets[0][1]
        reader, writer = await _connect(pub, soup_login(session="TCP001", seq=6))
        assert (await read_soup(reader))[0] == "A"
        assert await _sequenced(reader, 5) == [pack_signal(s) for s in range(6, 11)]
        writer.close()


async def test_several_clients_and_end_of_session_on_close() -> None:
    pub = TcpPublisher(_config())
    await pub.start()
    clients = [await _connect(pub, soup_login(seq=1)) for _ in range(3)]
    for reader, _ in clients:
        assert (await read_soup(reader))[0] == "A"
    for i in range(5):
        pub.publish(pack_batch(1 + 4 * i, 4), 4)
    await pub.aclose()
    for reader, writer in clients:
        packets = [p for p in await _until_eof(reader) if p[0] != "H"]
        assert packets[-1] == ("Z", b"")
        assert [p for t, p in packets[:-1]] == [pack_signal(s) for s in range(1, 21)]
        writer.close()
    assert pub.counters.clients == 0
    with pytest.raises(RuntimeError):
        pub.publish(pack_batch(21, 1), 1)


async def test_client_heartbeat_timeout() -> None:
    async with TcpPublisher(_config(client_timeout_s=0.3, heartbeat_interval_s=0.1)) as pub:
        quiet_r, quiet_w = await _connect(pub, soup_login())
        chatty_r, chatty_w = await _connect(pub, soup_login())
        assert (await read_soup(quiet_r))[0] == "A"
        assert (await read_soup(chatty_r))[0] == "A"

        async def chat() -> None:
            for _ in range(12):
                chatty_w.write(b"\x00\x01R")
                await asyncio.sleep(0.05)

        chatter = asyncio.create_task(chat())
        quiet = [p for p in await _until_eof(quiet_r) if p[0] != "H"]
        assert quiet == [("+", b"heartbeat timeout")]
        await chatter
        pub.publish(pack_batch(1, 1), 1)
        assert await _sequenced(chatty_r, 1) == [pack_signal(1)]
        quiet_w.close()
        chatty_w.close()
        assert pub.counters.client_timeouts == 1


async def test_slow_client_is_dropped_while_others_keep_receiving() -> None:
    cfg = _config(max_client_buffer_bytes=64 * 1024, send_buffer_bytes=4096)
    async with TcpPublisher(cfg) as pub:
        slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(slow, pub.address)
        await loop.sock_sendall(slow, soup_login())
        fast_r, fast_w = await _connect(pub, soup_login())
        assert (await read_soup(fast_r))[0] == "A"
        total = 0
        for i in range(60):  # 60 x 100 signals = 402 kB, never read by the slow client
            pub.publish(pack_batch(1 + 100 * i, 100), 100)
            total += 100
            got = await _sequenced(fast_r, 100)
            assert got[-1] == pack_signal(total)
        assert pub.counters.slow_clients_dropped == 1
        assert pub.counters.clients == 1
        slow.close()
        fast_w.close()


@pytest.mark.parametrize(
    ("logged_in", "packet", "reason"),
    [
        (False, b"\x00\x00", b"malformed packet: length 0"),
        (False, b"\x00\x01U", b"protocol error: packet type 'U' before login"),
        (False, b"\x00\x05Lxxxx", b"malformed login request: packet length 5, expected 47"),
        (True, b"\x00\x01X", b"protocol error: unknown packet type 0x58"),
        (True, soup_login(), b"protocol error: second login request"),
    ],
)
async def test_malformed_client_packets_get_a_debug_reason_and_close(
    logged_in: bool, packet: bytes, reason: bytes
) -> None:
    async with TcpPublisher(_config()) as pub:
        reader, writer = await _connect(pub, None)
        if logged_in:
            writer.write(soup_login())
            assert (await read_soup(reader))[0] == "A"
        writer.write(packet)
        packets = [p for p in await _until_eof(reader) if p[0] != "H"]
        writer.close()
        assert packets == [("+", reason)]
        assert pub.counters.malformed_packets == 1


async def test_non_numeric_sequence_and_unsequenced_data() -> None:
    async with TcpPublisher(_config()) as pub:
        bad = bytearray(soup_login())
        bad[-1:] = b"x"
        reader, writer = await _connect(pub, bytes(bad))
        packets = await _until_eof(reader)
        writer.close()
        assert packets[-1] == ("J", b"S") and b"not a number" in packets[0][1]
        reader, writer = await _connect(pub, soup_login() + struct.pack(">H", 4) + b"Uabc")
        assert (await read_soup(reader))[0] == "A"
        pub.publish(pack_batch(1, 1), 1)
        assert await _sequenced(reader, 1) == [pack_signal(1)]
        writer.close()
        assert pub.counters.unsequenced_ignored == 1


async def test_shutdown_during_replay_sends_the_rest_then_end_of_session() -> None:
    pub = TcpPublisher(_config(replay_burst_signals=2))
    await pub.start()
    pub.publish(pack_batch(1, 50), 50)
    reader, writer = await _connect(pub, soup_login(seq=1))
    while pub.counters.logins_accepted == 0:
        await asyncio.sleep(0.001)
    await pub.aclose()  # at most a burst or two replayed so far
    packets = [p for p in await _until_eof(reader) if p[0] != "H"]
    writer.close()
    assert packets[0][0] == "A" and packets[-1] == ("Z", b"")
    assert [p for _, p in packets[1:-1]] == [pack_signal(s) for s in range(1, 51)]
