"""AlpacaFeed against the real picows replay server on loopback: every client protocol path."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgpack
import orjson
import pytest
from picows import WSCloseCode, WSMsgType

from relentless_fast.feeds.alpaca import AlpacaFeed, AlpacaFeedConfig
from relentless_fast.feeds.base import (
    CollectingSink,
    FeedFatalError,
    FeedState,
    FrameEncoding,
    FrameSink,
)
from relentless_fast.feeds.recording import RecordingSink, RecordingWriter, ReplayFeed
from relentless_fast.feeds.replay_server import (
    AlpacaReplayServer,
    ReplayServerConfig,
    ServerSession,
    parse_rfc3339_ns,
)
from tests.feeds.conftest import json_frames, wait_until

FAST: dict[str, Any] = {
    "key_id": "test-key",
    "secret_key": "test-secret",
    "trades": ("AAPL",),
    "quotes": ("AAPL", "MSFT"),
    "statuses": ("*",),
    "lulds": ("AAPL",),
    "backoff_initial_secs": 0.01,
    "backoff_max_secs": 0.05,
    "reply_timeout_secs": 2.0,
    "connect_timeout_secs": 2.0,
}


def config_for(server: AlpacaReplayServer, **overrides: Any) -> AlpacaFeedConfig:
    return AlpacaFeedConfig(url=server.url, **{**FAST, **overrides})


@asynccontextmanager
async def running(
    config: AlpacaFeedConfig, sink: FrameSink
) -> AsyncIterator[tuple[AlpacaFeed, asyncio.Task[None]]]:
    """Run a feed in a task; stop it and wait for it on exit."""
    feed = AlpacaFeed(config, sink, seed=1)
    task = asyncio.create_task(feed.run())
    try:
        yield feed, task
    finally:
        feed.stop()
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 5.0)


def sent_by_server(server: AlpacaReplayServer) -> list[bytes]:
    return [frame for session in server.sessions for frame in session.sent_frames]


def states(sink: CollectingSink) -> list[FeedState]:
    return [state for state, _ in sink.states]


@pytest.mark.parametrize("encoding", [FrameEncoding.JSON, FrameEncoding.MSGPACK])
async def test_auth_subscribe_and_burst_exactly_once_in_order(encoding: FrameEncoding) -> None:
    frames = json_frames(400)
    async with AlpacaReplayServer(ReplayServerConfig(frames=frames)) as server:
        sink = CollectingSink()
        async with running(config_for(server, encoding=encoding), sink) as (feed, _):
            await wait_until(lambda: len(sink.frames) >= 400, what="the burst")
            await asyncio.sleep(0.05)  # nothing more may arrive
            assert feed.state is FeedState.SUBSCRIBED
        session = server.sessions[0]
        assert session.encoding is encoding
        assert sink.frames == session.sent_frames == server.frames_for(encoding)
        assert sink.recv_ts_ns == sorted(sink.recv_ts_ns)
        assert states(sink)[:4] == [
            FeedState.CONNECTING,
            FeedState.CONNECTED,
            FeedState.AUTHENTICATED,
            FeedState.SUBSCRIBED,
        ]
        assert states(sink)[-1] is FeedState.STOPPED
        assert session.received == [
            {"action": "auth", "key": "test-key", "secret": "test-secret"},
            {
                "action": "subscribe",
                "trades": ["AAPL"],
                "quotes": ["AAPL", "MSFT"],
                "statuses": ["*"],
                "lulds": ["AAPL"],
            },
        ]
        assert feed.subscription["quotes"] == ["AAPL", "MSFT"]
        assert feed.subscription["corrections"] == ["AAPL"]
        assert feed.counters.control_frames == 3  # connected, authenticated, subscription
        assert feed.counters.data_frames == 400
        assert feed.counters.data_bytes == sum(len(f) for f in sink.frames)
        if encoding is FrameEncoding.MSGPACK:  # same content; "t" as a msgpack Timestamp
            for packed, text in zip(sink.frames[:20], frames[:20], strict=True):
                expected = orjson.loads(text)
                for message in expected:
                    message["t"] = parse_rfc3339_ns(message["t"])
                assert msgpack.unpackb(packed, timestamp=2) == expected


async def test_header_auth_sends_no_auth_message() -> None:
    async with AlpacaReplayServer(ReplayServerConfig(frames=json_frames(5))) as server:
        sink = CollectingSink()
        async with running(config_for(server, auth_in_headers=True), sink):
            await wait_until(lambda: len(sink.frames) == 5)
        assert [r["action"] for r in server.sessions[0].received] == ["subscribe"]
        assert server.sessions[0].header_key == "test-key"


async def test_auth_failure_402_is_fatal_without_retry() -> None:
    async with AlpacaReplayServer() as server:
        sink = CollectingSink()
        feed = AlpacaFeed(config_for(server, secret_key="wrong"), sink)
        with pytest.raises(FeedFatalError, match="402 auth failed"):
            await asyncio.wait_for(feed.run(), 5.0)
        assert feed.state is FeedState.FAILED
        assert len(server.sessions) == 1
        assert [(e.code, e.fatal) for e in sink.errors] == [(402, True)]
        assert feed.counters.errors_by_code == {402: 1}


async def test_406_is_retried_with_backoff_then_succeeds() -> None:
    config = ReplayServerConfig(frames=json_frames(10), auth_errors=[406, 406])
    async with AlpacaReplayServer(config) as server:
        sink = CollectingSink()
        async with running(config_for(server), sink) as (feed, _):
            await wait_until(lambda: len(sink.frames) == 10)
        assert len(server.sessions) == 3
        assert feed.counters.errors_by_code == {406: 2}
        assert feed.counters.reconnects == 2
        assert states(sink).count(FeedState.RECONNECTING) == 2
        assert sink.frames == sent_by_server(server)


async def test_406_gives_up_after_the_configured_retries() -> None:
    async with AlpacaReplayServer(ReplayServerConfig(auth_errors=[406] * 10)) as server:
        sink = CollectingSink()
        feed = AlpacaFeed(config_for(server, max_406_retries=2), sink)
        with pytest.raises(FeedFatalError, match=r"406\) 3 times"):
            await asyncio.wait_for(feed.run(), 5.0)
        assert len(server.sessions) == 3
        assert feed.state is FeedState.FAILED


async def test_407_slow_client_reconnects_and_resubscribes() -> None:
    config = ReplayServerConfig(frames=json_frames(100), slow_client_after_frames=20)
    async with AlpacaReplayServer(config) as server:
        sink = CollectingSink()
        async with running(config_for(server), sink) as (feed, _):
            await wait_until(lambda: len(sink.frames) == 120, what="both sessions' frames")
        assert 407 in feed.counters.errors_by_code
        first, second = server.sessions
        assert len(first.sent_frames) == 20 and len(second.sent_frames) == 100
        assert first.received[-1] == second.received[-1]  # the same full subscribe again
        assert sink.frames == first.sent_frames + second.sent_frames


async def test_abrupt_disconnects_reconnect_without_losing_or_duplicating_frames() -> None:
    config = ReplayServerConfig(frames=json_frames(150), abort_after_frames=40, abort_sessions=2)
    async with AlpacaReplayServer(config) as server:
        sink = CollectingSink()
        async with running(config_for(server), sink) as (feed, _):
            await wait_until(lambda: len(sink.frames) >= 230, what="frames of 3 sessions")
            await asyncio.sleep(0.05)
        assert [len(s.sent_frames) for s in server.sessions] == [40, 40, 150]
        # Every frame the server wrote reached the sink exactly once, in order.
        assert sink.frames == sent_by_server(server)
        assert feed.counters.connects == 3
        assert feed.counters.subscriptions == 3
        assert feed.counters.reconnects == 2
        lost = [e for e in sink.errors if e.code is None]
        assert len(lost) == 2 and all(e.retry for e in lost)


async def test_stale_feed_is_reported_and_clears_when_data_resumes() -> None:
    async with AlpacaReplayServer() as server:  # no frames: a quiet feed
        sink = CollectingSink()
        async with running(config_for(server, stale_after_secs=0.1), sink) as (feed, _):
            await wait_until(lambda: feed.state is FeedState.STALE, what="STALE")
            server.sessions[0].send_data(json_frames(1)[0])
            await wait_until(lambda: feed.state is FeedState.SUBSCRIBED, what="data resumed")
            assert feed.counters.stale_events == 1
            assert feed.counters.connects == 1  # stale alone does not reconnect by default
        assert len(sink.frames) == 1


async def test_stale_feed_reconnects_when_configured() -> None:
    async with AlpacaReplayServer() as server:
        sink = CollectingSink()
        config = config_for(server, stale_after_secs=0.05, reconnect_when_stale=True)
        async with running(config, sink) as (feed, _):
            await wait_until(lambda: feed.counters.connects >= 2, what="a reconnect")
        assert any("stale" in e.message for e in sink.errors)


async def test_unanswered_pings_drop_the_connection_and_reconnect() -> None:
    async with AlpacaReplayServer(auto_pong=False) as server:
        sink = CollectingSink()
        config = config_for(server, ping_interval_secs=0.05, pong_timeout_secs=0.05)
        async with running(config, sink) as (feed, _):
            await wait_until(lambda: feed.counters.connects >= 2, what="ping-timeout reconnect")
        assert any(e.code is None and e.retry for e in sink.errors)


async def test_slow_frames_arrive_in_order_as_they_are_sent() -> None:
    config = ReplayServerConfig(frames=json_frames(8), frame_interval_secs=0.03)
    async with AlpacaReplayServer(config) as server:
        sink = CollectingSink()
        async with running(config_for(server), sink):
            await wait_until(lambda: len(sink.frames) == 8)
        assert sink.frames == server.sessions[0].sent_frames
        spread_secs = (sink.recv_ts_ns[-1] - sink.recv_ts_ns[0]) / 1e9
        assert spread_secs >= 0.1  # 7 gaps of 30 ms; loose bound, never a tight one


@pytest.mark.parametrize(
    ("code", "fatal"), [(400, True), (405, True), (409, True), (500, False), (401, False)]
)
async def test_injected_errors_follow_the_policy(code: int, fatal: bool) -> None:
    async with AlpacaReplayServer() as server:
        server.on_subscribed = lambda session: (
            session.send_error(code, close=False) if session.index == 0 else None
        )
        sink = CollectingSink()
        feed = AlpacaFeed(config_for(server), sink)
        task = asyncio.create_task(feed.run())
        if fatal:
            with pytest.raises(FeedFatalError, match=str(code)):
                await asyncio.wait_for(task, 5.0)
            assert len(server.sessions) == 1
        else:
            await wait_until(lambda: feed.counters.subscriptions == 2, what="resubscription")
            feed.stop()
            await asyncio.wait_for(task, 5.0)
        assert feed.counters.errors_by_code == {code: 1}


async def test_405_symbol_limit_is_fatal() -> None:
    async with AlpacaReplayServer(ReplayServerConfig(symbol_limit=1)) as server:
        feed = AlpacaFeed(config_for(server), CollectingSink())
        with pytest.raises(FeedFatalError, match="405 symbol limit exceeded"):
            await asyncio.wait_for(feed.run(), 5.0)


async def test_403_already_authenticated_is_reported_only() -> None:
    async with AlpacaReplayServer(ReplayServerConfig(frames=json_frames(3))) as server:

        def on_subscribed(session: ServerSession) -> None:
            session.send_error(403, close=False)

        server.on_subscribed = on_subscribed
        sink = CollectingSink()
        async with running(config_for(server), sink) as (feed, _):
            await wait_until(lambda: len(sink.frames) == 3)
            await asyncio.sleep(0.03)
            assert feed.state is FeedState.SUBSCRIBED
        assert [(e.code, e.fatal, e.retry) for e in sink.errors] == [(403, False, False)]
        assert feed.counters.connects == 1


async def test_connect_failures_back_off_and_give_up_when_bounded() -> None:
    async with AlpacaReplayServer() as server:
        url = server.url
    # the server is gone: connections are refused
    sink = CollectingSink()
    config = AlpacaFeedConfig(**{**FAST, "url": url, "max_consecutive_failures": 3})
    feed = AlpacaFeed(config, sink)
    with pytest.raises(FeedFatalError, match="gave up after 3 failed sessions"):
        await asyncio.wait_for(feed.run(), 5.0)
    assert feed.counters.reconnects == 2
    assert feed.counters.connects == 0
    assert all("connect to" in e.message for e in sink.errors[:3])


async def test_stop_during_backoff_returns_promptly() -> None:
    async with AlpacaReplayServer() as server:
        url = server.url
    config = AlpacaFeedConfig(**{**FAST, "url": url, "backoff_initial_secs": 30.0,
                                 "backoff_max_secs": 30.0})  # fmt: skip
    feed = AlpacaFeed(config, CollectingSink())
    task = asyncio.create_task(feed.run())
    await wait_until(lambda: feed.state is FeedState.RECONNECTING)
    feed.stop()
    await asyncio.wait_for(task, 1.0)
    assert feed.state is FeedState.STOPPED


async def test_fragmented_server_frames_are_reassembled() -> None:
    frame = json_frames(1)[0]

    def send_fragmented(session: ServerSession) -> None:
        assert session.transport is not None
        half = len(frame) // 2
        session.transport.send(WSMsgType.TEXT, frame[:half], fin=False)
        session.transport.send(WSMsgType.CONTINUATION, frame[half:], fin=True)

    async with AlpacaReplayServer() as server:
        server.on_subscribed = send_fragmented
        sink = CollectingSink()
        async with running(config_for(server), sink):
            await wait_until(lambda: len(sink.frames) == 1)
        assert sink.frames == [frame]


async def test_record_live_feed_then_replay_byte_for_byte(tmp_path: Path) -> None:
    frames = json_frames(120)
    path = tmp_path / "live.rff"
    async with AlpacaReplayServer(ReplayServerConfig(frames=frames)) as server:
        live = CollectingSink()
        with RecordingWriter(path, FrameEncoding.JSON) as writer:
            async with running(config_for(server), RecordingSink(writer, live)):
                await wait_until(lambda: len(live.frames) == 120)
    replayed = CollectingSink()
    await ReplayFeed(path, replayed, speed=None, timestamps="recorded").run()
    assert replayed.frames == live.frames == frames
    assert replayed.recv_ts_ns == live.recv_ts_ns
    # ... and served again over the wire, the client sees the same bytes.
    async with AlpacaReplayServer(ReplayServerConfig.from_recording(path)) as server:
        again = CollectingSink()
        async with running(config_for(server), again):
            await wait_until(lambda: len(again.frames) == 120)
    assert again.frames == frames


async def test_offered_rate_repeat_and_send_times() -> None:
    frames = json_frames(20)
    config = ReplayServerConfig(frames=frames, rate_fps=400.0, repeat=3)
    async with AlpacaReplayServer(config) as server:
        sink = CollectingSink()
        async with running(config_for(server), sink):
            await wait_until(lambda: len(sink.frames) == 60, what="3 laps of 20 frames")
        session = server.sessions[0]
        assert sink.frames == frames * 3 == session.sent_frames
        assert session.sent_count == 60
        # Same clock on both sides: every frame is received after it was sent.
        assert all(r >= s for r, s in zip(sink.recv_ts_ns, session.sent_ts_ns, strict=True))
        spread_secs = (session.sent_ts_ns[-1] - session.sent_ts_ns[0]) / 1e9
        assert spread_secs >= 0.1  # 59 gaps at 400 frames/s = 0.1475 s; loose lower bound


async def test_send_log_can_be_turned_off() -> None:
    config = ReplayServerConfig(frames=json_frames(10), log_sent=False)
    async with AlpacaReplayServer(config) as server:
        sink = CollectingSink()
        async with running(config_for(server), sink):
            await wait_until(lambda: len(sink.frames) == 10)
        assert server.sessions[0].sent_frames == [] and server.sessions[0].sent_count == 10


def test_server_config_errors_name_the_field() -> None:
    for kwargs, field in (
        ({"rate_fps": 0.0}, "rate_fps"),
        ({"speed": -1.0}, "speed"),
        ({"repeat": 0}, "repeat"),
        ({"frames": [b"x"], "frame_times_ns": []}, "frame_times_ns"),
    ):
        with pytest.raises(ValueError, match=field):
            ReplayServerConfig(**kwargs)


async def test_stop_closes_with_a_close_frame() -> None:
    async with AlpacaReplayServer(ReplayServerConfig(frames=json_frames(2))) as server:
        sink = CollectingSink()
        async with running(config_for(server), sink):
            await wait_until(lambda: len(sink.frames) == 2)
        await wait_until(lambda: server.sessions[0].closed, what="server-side close")
        assert server.sessions[0].close_code_received is WSCloseCode.OK


async def test_a_subscription_missing_configured_symbols_is_reported() -> None:
    async with AlpacaReplayServer() as server:
        server.on_subscribed = lambda session: session.send_control(
            {"T": "subscription", "trades": [], "quotes": ["AAPL"], "bars": []}
        )
        sink = CollectingSink()
        async with running(config_for(server), sink) as (feed, _):
            await wait_until(lambda: feed.counters.subscriptions == 2)
        assert [e.message for e in sink.errors] == [
            "server did not subscribe: {'trades': ['AAPL'], 'quotes': ['MSFT'], "
            "'statuses': ['*'], 'lulds': ['AAPL']}"
        ]
        assert not sink.errors[0].fatal and feed.counters.connects == 1


async def test_an_unauthorised_upgrade_is_fatal_and_others_are_retried() -> None:
    async with AlpacaReplayServer(ReplayServerConfig(reject_upgrade_status=401)) as server:
        feed = AlpacaFeed(config_for(server, auth_in_headers=True), CollectingSink())
        with pytest.raises(FeedFatalError, match="HTTP 401"):
            await asyncio.wait_for(feed.run(), 5.0)
        assert feed.counters.reconnects == 0
    async with AlpacaReplayServer(ReplayServerConfig(reject_upgrade_status=503)) as server:
        feed = AlpacaFeed(config_for(server, max_consecutive_failures=2), CollectingSink())
        with pytest.raises(FeedFatalError, match="gave up after 2"):
            await asyncio.wait_for(feed.run(), 5.0)


async def test_stop_during_a_hanging_connect_returns_promptly() -> None:
    handler_done = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.5)  # accept TCP, never answer the upgrade, then hang up
        writer.close()
        handler_done.set()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        config = AlpacaFeedConfig(**{**FAST, "url": f"ws://127.0.0.1:{port}/v2/test",
                                     "connect_timeout_secs": 30.0})  # fmt: skip
        feed = AlpacaFeed(config, CollectingSink())
        task = asyncio.create_task(feed.run())
        await wait_until(lambda: feed.state is FeedState.CONNECTING)
        await asyncio.sleep(0.05)
        feed.stop()
        await asyncio.wait_for(task, 0.3)  # well before the server hangs up
        assert feed.state is FeedState.STOPPED and feed.counters.connects == 0
        await asyncio.wait_for(handler_done.wait(), 2.0)
        await asyncio.sleep(0.05)  # the abandoned handshake fails and its socket is closed
    finally:
        server.close()
        await server.wait_closed()


ODD_SERVER_FRAMES = [
    b"[]",
    b"{}",
    b"not json at all",
    b"\x00\xff\x10",
    b'[{"T":"success","msg":"connected"}]',  # again, after subscription
    b'[{"T":"success","msg":"authenticated"}]',  # again
    b'[{"T":"success","msg":"something new"}]',
    b'[{"T":"subscription","trades":"AAPL"}]',  # not a list
    b'[ {"T":"t","S":"AAPL"} ]',  # data in an unusual layout
    b'[{"T":"success","msg":"authenticated"},{"T":"t"}]',  # not a lone control message
]


async def test_odd_server_frames_never_break_the_session() -> None:
    data = json_frames(3)
    async with AlpacaReplayServer(ReplayServerConfig(frames=data)) as server:

        def send_odd(session: ServerSession) -> None:
            for frame in ODD_SERVER_FRAMES:
                session.send_data(frame)

        server.on_subscribed = send_odd
        sink = CollectingSink()
        async with running(config_for(server), sink) as (feed, _):
            await wait_until(lambda: len(sink.frames) >= 6 + 3, what="odd and data frames")
            await asyncio.sleep(0.05)
            assert feed.state is FeedState.SUBSCRIBED
        # Non-control frames reach the sink (the parser counts them as drops); control-shaped
        # ones are absorbed; the data keeps flowing on the same connection.
        assert sink.frames == [
            b"[]", b"{}", b"not json at all", b"\x00\xff\x10",
            b'[ {"T":"t","S":"AAPL"} ]',
            b'[{"T":"success","msg":"authenticated"},{"T":"t"}]',
            *data,
        ]  # fmt: skip
        assert feed.counters.connects == 1
        assert feed.counters.unknown_control == 2  # a second "connected", "something new"
        assert [r["action"] for r in server.sessions[0].received] == ["auth", "subscribe"]


async def test_an_error_frame_without_a_code_is_retried() -> None:
    async with AlpacaReplayServer() as server:
        server.on_subscribed = lambda session: (
            session.send_data(b'[{"T":"error","msg":"??"}]') if session.index == 0 else None
        )
        sink = CollectingSink()
        async with running(config_for(server), sink) as (feed, _):
            await wait_until(lambda: feed.counters.subscriptions == 2, what="resubscription")
        assert feed.counters.unknown_control == 1
