"""The Alpaca-protocol replay server, driven by a bare picows client (no AlpacaFeed involved)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgpack
import orjson
import pytest
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from relentless_fast.feeds.base import FrameEncoding
from relentless_fast.feeds.recording import RecordingWriter
from relentless_fast.feeds.replay_server import (
    AlpacaReplayServer,
    ReplayServerConfig,
    json_frame_to_msgpack,
    parse_rfc3339_ns,
    stamp_timestamps,
)
from tests.feeds.conftest import json_frames, wait_until

AUTH = {"action": "auth", "key": "test-key", "secret": "test-secret"}


class RawClient(WSListener):
    """Queues every text/binary payload; notes the close."""

    def __init__(self) -> None:
        self.payloads: asyncio.Queue[bytes] = asyncio.Queue()
        self.closed = asyncio.Event()
        self.transport: WSTransport | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY):
            self.payloads.put_nowait(frame.get_payload_as_bytes())
        elif frame.msg_type is WSMsgType.CLOSE:
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.closed.set()

    def send(self, message: Any, encoding: FrameEncoding = FrameEncoding.JSON) -> None:
        assert self.transport is not None
        if encoding is FrameEncoding.MSGPACK:
            self.transport.send(WSMsgType.BINARY, msgpack.packb(message))
        else:
            self.transport.send(WSMsgType.TEXT, orjson.dumps(message))

    async def recv(self, encoding: FrameEncoding = FrameEncoding.JSON) -> Any:
        payload = await asyncio.wait_for(self.payloads.get(), 2.0)
        if encoding is FrameEncoding.MSGPACK:
            return msgpack.unpackb(payload, timestamp=2)
        return orjson.loads(payload)


@asynccontextmanager
async def client(
    server: AlpacaReplayServer, headers: dict[str, str] | None = None
) -> AsyncIterator[RawClient]:
    transport, listener = await ws_connect(RawClient, server.url, extra_headers=headers)
    assert isinstance(listener, RawClient)
    try:
        yield listener
    finally:
        transport.disconnect(graceful=False)


def error(code: int, msg: str) -> list[dict[str, Any]]:
    return [{"T": "error", "code": code, "msg": msg}]


CONNECTED = [{"T": "success", "msg": "connected"}]
AUTHENTICATED = [{"T": "success", "msg": "authenticated"}]


async def test_session_sequence_and_complete_subscription_state() -> None:
    async with AlpacaReplayServer() as server, client(server) as c:
        assert await c.recv() == CONNECTED
        c.send({"action": "subscribe", "trades": ["AAPL"]})
        assert await c.recv() == error(401, "not authenticated")
        c.send(AUTH)
        assert await c.recv() == AUTHENTICATED
        c.send(AUTH)
        assert await c.recv() == error(403, "already authenticated")
        c.send({"action": "subscribe", "trades": ["AAPL"], "quotes": ["AMD", "CLDR"]})
        first = (await c.recv())[0]
        assert first["trades"] == ["AAPL"] and first["quotes"] == ["AMD", "CLDR"]
        assert first["corrections"] == first["cancelErrors"] == ["AAPL"]
        c.send({"action": "subscribe", "bars": ["*"], "quotes": ["AMD"]})  # additive
        second = (await c.recv())[0]
        assert second["quotes"] == ["AMD", "CLDR"] and second["bars"] == ["*"]
        assert second["trades"] == ["AAPL"]  # complete state, not the delta
        c.send({"action": "unsubscribe", "quotes": ["AMD"]})
        third = (await c.recv())[0]
        assert third["quotes"] == ["CLDR"] and third["bars"] == ["*"]
        assert set(third) == {"T", "trades", "quotes", "bars", "updatedBars", "dailyBars",
                              "statuses", "lulds", "corrections", "cancelErrors"}  # fmt: skip


async def test_malformed_requests_get_400() -> None:
    async with AlpacaReplayServer() as server, client(server) as c:
        await c.recv()
        assert c.transport is not None
        c.transport.send(WSMsgType.TEXT, b"{not json")
        assert await c.recv() == error(400, "invalid syntax")
        c.send({"action": "dance"})
        assert await c.recv() == error(400, "invalid syntax")
        c.send(AUTH)
        assert await c.recv() == AUTHENTICATED
        c.send({"action": "subscribe", "trades": "AAPL"})  # not a list
        assert await c.recv() == error(400, "invalid syntax")


async def test_wrong_credentials_get_402_and_close() -> None:
    async with AlpacaReplayServer() as server, client(server) as c:
        await c.recv()
        c.send({**AUTH, "secret": "nope"})
        assert await c.recv() == error(402, "auth failed")
        await asyncio.wait_for(c.closed.wait(), 2.0)


async def test_auth_timeout_gets_404_and_close() -> None:
    config = ReplayServerConfig(auth_timeout_secs=0.05)
    async with AlpacaReplayServer(config) as server, client(server) as c:
        assert await c.recv() == CONNECTED
        assert await c.recv() == error(404, "auth timeout")
        await asyncio.wait_for(c.closed.wait(), 2.0)


async def test_second_session_gets_406_and_405_keeps_state() -> None:
    config = ReplayServerConfig(symbol_limit=2)
    async with (
        AlpacaReplayServer(config) as server,
        client(server) as first,
        client(server) as second,
    ):
        await first.recv()
        first.send(AUTH)
        assert await first.recv() == AUTHENTICATED
        await second.recv()
        second.send(AUTH)
        assert await second.recv() == error(406, "connection limit exceeded")
        first.send({"action": "subscribe", "trades": ["A", "B"]})
        assert (await first.recv())[0]["trades"] == ["A", "B"]
        first.send({"action": "subscribe", "quotes": ["C"]})
        assert await first.recv() == error(405, "symbol limit exceeded")
        assert server.sessions[0].subscription["quotes"] == []


async def test_header_auth_and_msgpack_session_with_fragmented_request() -> None:
    frames = json_frames(3)
    headers = {
        "APCA-API-KEY-ID": "test-key",
        "APCA-API-SECRET-KEY": "test-secret",
        "Content-Type": "application/msgpack",
    }
    mp = FrameEncoding.MSGPACK
    config = ReplayServerConfig(frames=frames)
    async with AlpacaReplayServer(config) as server, client(server, headers) as c:
        assert await c.recv(mp) == CONNECTED
        assert await c.recv(mp) == AUTHENTICATED
        request = msgpack.packb({"action": "subscribe", "quotes": ["AAPL"] * 3000})
        assert c.transport is not None
        third = len(request) // 3  # three WebSocket frames: BINARY, CONTINUATION x2
        c.transport.send(WSMsgType.BINARY, request[:third], fin=False)
        c.transport.send(WSMsgType.CONTINUATION, request[third : 2 * third], fin=False)
        c.transport.send(WSMsgType.CONTINUATION, request[2 * third :], fin=True)
        reply = await c.recv(mp)
        assert reply[0]["T"] == "subscription" and reply[0]["quotes"] == ["AAPL"]
        for text in frames:
            expected = orjson.loads(text)
            for message in expected:
                message["t"] = parse_rfc3339_ns(message["t"])
            assert await c.recv(mp) == expected


async def test_serves_a_recording_at_its_pace(tmp_path: Path) -> None:
    frames = json_frames(5)
    with RecordingWriter(tmp_path / "r.rff", FrameEncoding.JSON) as writer:
        for i, frame in enumerate(frames):
            writer.write(frame, 1_000_000_000 + i * 30_000_000)  # 30 ms apart
    config = ReplayServerConfig.from_recording(tmp_path / "r.rff", speed=1.0)
    async with AlpacaReplayServer(config) as server, client(server) as c:
        await c.recv()
        c.send(AUTH)
        await c.recv()
        c.send({"action": "subscribe", "trades": ["AAPL"]})
        await c.recv()
        loop = asyncio.get_running_loop()
        start = loop.time()
        got = [await asyncio.wait_for(c.payloads.get(), 2.0) for _ in frames]
        assert got == frames
        assert loop.time() - start >= 0.09  # 4 gaps of 30 ms, loose bound


def test_json_to_msgpack_uses_the_documented_timestamp_bytes() -> None:
    frame = (
        b'[{"T":"t","S":"AAPL","i":96921,"x":"D","p":126.55,"s":1,"t":"2021-02-22T15:51:44.208Z"}]'
    )
    packed = json_frame_to_msgpack(frame)
    assert bytes.fromhex("d7ff3197500060 33d310".replace(" ", "")) in packed
    assert packed[:5] == b"\x91\x87\xa1T\xa1"  # T first, as the Go SDK requires


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("2021-02-22T19:15:00Z", 1_614_021_300_000_000_000),
        ("2021-02-22T15:51:44.208Z", 1_614_009_104_208_000_000),
        ("2023-04-06T11:54:26.83915973Z", 1_680_782_066_839_159_730),
        ("2021-02-22T10:51:44.5-05:00", 1_614_009_104_500_000_000),
    ],
)
def test_rfc3339_parsing(text: str, ns: int) -> None:
    assert parse_rfc3339_ns(text) == ns


async def test_server_stop_drops_clients() -> None:
    server = await AlpacaReplayServer().start()
    async with client(server) as c:
        await c.recv()
        await server.stop()
        await asyncio.wait_for(c.closed.wait(), 2.0)
    await wait_until(lambda: all(s.closed for s in server.sessions))


async def test_random_client_messages_get_400_and_the_session_survives() -> None:
    rng = random.Random(5)
    junk = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))) for _ in range(40)]
    junk += [orjson.dumps(v) for v in ([], {}, 1, "auth", {"action": 1}, {"action": None},
                                       {"action": "subscribe"}, [{"action": "auth"}])]  # fmt: skip
    async with AlpacaReplayServer() as server, client(server) as c:
        await c.recv()
        assert c.transport is not None
        for payload in junk:
            c.transport.send(WSMsgType.TEXT, payload)
        replies = [await c.recv() for _ in junk]
        assert all(r[0]["T"] == "error" and r[0]["code"] in (400, 401) for r in replies)
        c.send(AUTH)
        assert await c.recv() == AUTHENTICATED


@pytest.mark.parametrize("encoding", [FrameEncoding.JSON, FrameEncoding.MSGPACK])
def test_stamp_timestamps_rewrites_every_message(encoding: FrameEncoding) -> None:
    stamp = 1_764_000_000_123_456_789
    for frame in json_frames(30):
        source = frame if encoding is FrameEncoding.JSON else json_frame_to_msgpack(frame)
        stamped = stamp_timestamps(source, encoding, stamp)
        expected = orjson.loads(frame)
        for message in expected:
            message["t"] = stamp
        if encoding is FrameEncoding.JSON:
            got = orjson.loads(stamped)
            for message in got:
                message["t"] = parse_rfc3339_ns(message["t"])
        else:
            got = msgpack.unpackb(stamped, timestamp=2)
        assert got == expected


async def test_stamped_frames_carry_their_send_time() -> None:
    config = ReplayServerConfig(frames=json_frames(10), stamp_send_time=True)
    async with AlpacaReplayServer(config) as server, client(server) as c:
        await c.recv()
        c.send(AUTH)
        await c.recv()
        c.send({"action": "subscribe", "quotes": ["AAPL"]})
        await c.recv()
        for sent_ns in [await c.recv() for _ in range(10)]:
            assert {parse_rfc3339_ns(m["t"]) for m in sent_ns} <= set(server.sessions[0].sent_ts_ns)
        session = server.sessions[0]
        for frame, ts in zip(session.sent_frames, session.sent_ts_ns, strict=True):
            assert {parse_rfc3339_ns(m["t"]) for m in orjson.loads(frame)} == {ts}
