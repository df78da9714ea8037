"""The replay server's subscription handling, driven by a bare picows client: runtime subscribe
and unsubscribe, filtering by subscription, 410, the request hook and header-auth replies."""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack
import orjson
import pytest

from relentless_fast.feeds.base import FrameEncoding
from relentless_fast.feeds.replay_server import (
    AlpacaReplayServer,
    ReplayServerConfig,
    ServerSession,
    parse_rfc3339_ns,
)
from tests.feeds.test_replay_server import AUTH, AUTHENTICATED, CONNECTED, client, error

MSGPACK = {"Content-Type": "application/msgpack"}
TS = "2024-07-24T13:30:00.5Z"


def frame(*messages: tuple[str, str]) -> bytes:
    """A JSON data frame of (type, symbol) messages."""
    return orjson.dumps([{"T": kind, "S": sym, "p": 1.5, "t": TS} for kind, sym in messages])


FRAMES = [
    frame(("t", "AAPL"), ("q", "AAPL")),  # covered whole: sent as is
    frame(("t", "MSFT")),  # not covered: skipped
    frame(("q", "MSFT"), ("t", "AAPL"), ("c", "AAPL"), ("x", "MSFT")),  # cut to t + c AAPL
    frame(("s", "TSLA"), ("q", "TSLA")),  # statuses "*" covers any symbol
    b"not json",  # not decodable: passed through
]


@pytest.mark.parametrize("encoding", [FrameEncoding.JSON, FrameEncoding.MSGPACK])
async def test_each_session_gets_only_what_it_is_subscribed_to(encoding: FrameEncoding) -> None:
    frames = FRAMES if encoding is FrameEncoding.JSON else FRAMES[:-1]
    config = ReplayServerConfig(frames=frames, filter_by_subscription=True)
    headers = MSGPACK if encoding is FrameEncoding.MSGPACK else None
    async with AlpacaReplayServer(config) as server, client(server, headers) as c:
        assert await c.recv(encoding) == CONNECTED
        c.send(AUTH, encoding)
        assert await c.recv(encoding) == AUTHENTICATED
        c.send({"action": "subscribe", "trades": ["AAPL"], "quotes": ["AAPL"],
                "statuses": ["*"]}, encoding)  # fmt: skip
        assert (await c.recv(encoding))[0]["T"] == "subscription"
        raw = [await asyncio.wait_for(c.payloads.get(), 2.0) for _ in range(len(frames) - 1)]
        session = server.sessions[0]
        assert raw == session.sent_frames and session.sent_count == len(frames) - 1
        assert raw[0] == server.frames_for(encoding)[0]  # covered whole: untouched bytes
        decoded = [
            msgpack.unpackb(f, timestamp=0)
            if encoding is FrameEncoding.MSGPACK
            else orjson.loads(f)
            for f in raw[:3]
        ]
        assert [[(m["T"], m["S"]) for m in f] for f in decoded] == [
            [("t", "AAPL"), ("q", "AAPL")],
            [("t", "AAPL"), ("c", "AAPL")],
            [("s", "TSLA")],
        ]
        if encoding is FrameEncoding.MSGPACK:  # a cut frame keeps T first and the Timestamp
            stamp = msgpack.Timestamp.from_unix_nano(parse_rfc3339_ns(TS))
            assert all(next(iter(m)) == "T" and m["t"] == stamp for m in decoded[1])
        else:
            assert raw[3] == b"not json"


async def test_unsubscribe_then_subscribe_again_steers_a_running_stream() -> None:
    config = ReplayServerConfig(
        frames=[frame(("q", "AAPL"), ("q", "MSFT"))], repeat=2000, rate_fps=2000,
        filter_by_subscription=True,
    )  # fmt: skip
    async with AlpacaReplayServer(config) as server, client(server) as c:
        await c.recv()
        c.send(AUTH)
        await c.recv()
        c.send({"action": "subscribe", "quotes": ["AAPL", "MSFT"]})
        assert (await c.recv())[0]["quotes"] == ["AAPL", "MSFT"]

        async def next_symbols() -> list[str]:
            while True:
                payload = await c.recv()
                if payload[0]["T"] == "subscription":
                    continue
                return [m["S"] for m in payload]

        assert await next_symbols() == ["AAPL", "MSFT"]
        c.send({"action": "unsubscribe", "quotes": ["AAPL"]})
        while (reply := await c.recv())[0]["T"] != "subscription":
            pass
        assert reply[0]["quotes"] == ["MSFT"]
        assert await next_symbols() == ["MSFT"]
        c.send({"action": "subscribe", "quotes": ["AAPL"]})
        while (reply := await c.recv())[0]["T"] != "subscription":
            pass
        assert reply[0]["quotes"] == ["MSFT", "AAPL"]
        assert await next_symbols() == ["AAPL", "MSFT"]  # frame order, not subscription order


async def test_a_channel_the_feed_lacks_gets_410_and_keeps_the_state() -> None:
    config = ReplayServerConfig(unavailable_channels=("imbalances", "updatedBars"))
    async with AlpacaReplayServer(config) as server, client(server) as c:
        await c.recv()
        c.send(AUTH)
        await c.recv()
        c.send({"action": "subscribe", "trades": ["AAPL"]})
        await c.recv()
        c.send({"action": "subscribe", "trades": ["MSFT"], "imbalances": ["AAPL"]})
        assert await c.recv() == error(410, "invalid subscribe action for this feed")
        assert server.sessions[0].subscription["trades"] == ["AAPL"]
        assert not c.closed.is_set()


def test_an_unknown_unavailable_channel_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="unavailable_channels"):
        ReplayServerConfig(unavailable_channels=("news",))


async def test_the_request_hook_sees_every_request_and_can_take_it_over() -> None:
    async with AlpacaReplayServer() as server, client(server) as c:
        seen: list[tuple[int, str]] = []

        def hook(session: ServerSession, request: dict[str, Any]) -> bool:
            seen.append((session.index, request["action"]))
            return bool(request["action"] == "unsubscribe")  # swallowed: no reply

        server.on_request = hook
        await c.recv()
        c.send(AUTH)
        await c.recv()
        c.send({"action": "subscribe", "trades": ["AAPL"]})
        await c.recv()
        c.send({"action": "unsubscribe", "trades": ["AAPL"]})
        c.send({"action": "subscribe", "quotes": ["AAPL"]})
        reply = await c.recv()
        assert reply[0]["trades"] == ["AAPL"] and reply[0]["quotes"] == ["AAPL"]
        assert seen == [(0, "auth"), (0, "subscribe"), (0, "unsubscribe"), (0, "subscribe")]
        assert len(server.sessions[0].received) == 4


@pytest.mark.parametrize("confirms", [True, False])
async def test_header_auth_replies(confirms: bool) -> None:
    headers = {"APCA-API-KEY-ID": "test-key", "APCA-API-SECRET-KEY": "test-secret"}
    config = ReplayServerConfig(header_auth_confirms=confirms)
    async with AlpacaReplayServer(config) as server, client(server, headers) as c:
        assert await c.recv() == CONNECTED
        if confirms:
            assert await c.recv() == AUTHENTICATED
        assert server.sessions[0].authenticated  # by the headers, either way
        c.send({"action": "subscribe", "trades": ["AAPL"]})
        assert (await c.recv())[0]["T"] == "subscription"
        c.send(AUTH)
        assert await c.recv() == error(403, "already authenticated")
