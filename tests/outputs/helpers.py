"""Test helpers: a reference signal packer (struct + crc32c wheel) and socket receivers."""

from __future__ import annotations

import asyncio
import socket
import struct

import crc32c

_BODY = struct.Struct(">HBBIQQQffffBBHHHI")
assert _BODY.size == 60


def pack_signal(
    seq: int, *, symbol_id: int = 7, action: int = 1, emit_ts_ns: int = 1_700_000_000_000_000_000
) -> bytes:
    """One valid layout-v1 signal (independent of the code under test)."""
    body = _BODY.pack(
        0x5246,
        1,
        action,
        symbol_id,
        seq,
        emit_ts_ns - 1000,
        emit_ts_ns,
        0.75,
        101.25,
        99.5,
        0.5,
        64,
        200,
        3,
        2,
        0b10,
        9,
    )
    return body + struct.pack(">I", crc32c.crc32c(body))


def pack_batch(first_seq: int, n: int, **kw: int) -> bytearray:
    """``n`` signals with sequences ``first_seq..``, concatenated."""
    return bytearray(b"".join(pack_signal(first_seq + i, **kw) for i in range(n)))


def parse_mold(packet: bytes) -> tuple[bytes, int, int, list[bytes]]:
    """(session, sequence, count, payloads) of one MoldUDP64 packet, strictly checked."""
    session, seq, count = struct.unpack_from(">10sQH", packet)
    payloads = []
    off = 20
    if count not in (0, 0xFFFF):
        for _ in range(count):
            (length,) = struct.unpack_from(">H", packet, off)
            payloads.append(packet[off + 2 : off + 2 + length])
            off += 2 + length
    assert off == len(packet), "trailing or missing bytes in MoldUDP64 packet"
    return session, seq, count, payloads


class Receiver(asyncio.DatagramProtocol):
    """Collects datagrams into a queue."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.queue.put_nowait(data)

    async def get(self, timeout: float = 5.0) -> bytes:
        return await asyncio.wait_for(self.queue.get(), timeout)


async def udp_receiver(
    host: str = "127.0.0.1", port: int = 0
) -> tuple[asyncio.DatagramTransport, Receiver, int]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(Receiver, local_addr=(host, port))
    return transport, proto, transport.get_extra_info("sockname")[1]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def soup_login(username: str = "", password: str = "", session: str = "", seq: int = 0) -> bytes:
    """A SoupBinTCP 3.00 Login Request packet (written from the spec, not from the server)."""
    payload = (
        username.encode().ljust(6)
        + password.encode().ljust(10)
        + session.encode().rjust(10)
        + str(seq).encode().rjust(20)
    )
    return struct.pack(">H", len(payload) + 1) + b"L" + payload


async def read_soup(reader: asyncio.StreamReader, timeout: float = 5.0) -> tuple[str, bytes]:
    """One SoupBinTCP packet as (type, payload); ('', b'') at end of stream."""
    try:
        head = await asyncio.wait_for(reader.readexactly(2), timeout)
    except asyncio.IncompleteReadError:
        return "", b""
    (length,) = struct.unpack(">H", head)
    body = await asyncio.wait_for(reader.readexactly(length), timeout)
    return chr(body[0]), body[1:]
