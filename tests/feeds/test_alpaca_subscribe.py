"""AlpacaFeed runtime subscribe/unsubscribe and header auth, against the real replay server."""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack
import orjson
import pytest

from relentless_fast.feeds.alpaca import AlpacaFeed, SubscriptionChangeError
from relentless_fast.feeds.base import CollectingSink, FeedFatalError, FeedState, FrameEncoding
from relentless_fast.feeds.replay_server import (
    AlpacaReplayServer,
    ReplayServerConfig,
    ServerSession,
)
from tests.feeds.conftest import json_frames, wait_until
from tests.feeds.test_alpaca_feed import config_for, running, states

SYMBOLS = ("AAPL", "MSFT", "AMD")
# FAST (test_alpaca_feed): trades AAPL, quotes AAPL MSFT, statuses *, lulds AAPL
FIRST_SET = {"trades": ("AAPL",), "quotes": ("AAPL", "MSFT"), "statuses": ("*",),
             "lulds": ("AAPL",)}  # fmt: skip


def messages(frame: bytes, encoding: FrameEncoding) -> list[dict[str, Any]]:
    if encoding is FrameEncoding.MSGPACK:
        decoded: list[dict[str, Any]] = msgpack.unpackb(frame, timestamp=0)
        return decoded
    decoded = orjson.loads(frame)
    return decoded


def pairs(frames: list[bytes], encoding: FrameEncoding) -> set[tuple[str, str]]:
    """(type, symbol) of every message in ``frames``."""
    return {(m["T"], m["S"]) for f in frames for m in messages(f, encoding)}


def mark_requests(server: AlpacaReplayServer) -> list[tuple[int, str, int]]:
    """Log (session, action, data frames already sent) for every request, server side."""
    marks: list[tuple[int, str, int]] = []

    def hook(session: ServerSession, request: dict[str, Any]) -> bool:
        marks.append((session.index, request["action"], len(session.sent_frames)))
        return False

    server.on_request = hook
    return marks


@pytest.mark.parametrize("encoding", [FrameEncoding.JSON, FrameEncoding.MSGPACK])
async def test_runtime_changes_steer_the_data_and_every_later_reconnect(
    encoding: FrameEncoding,
) -> None:
    frames = json_frames(3000, seed=3, symbols=SYMBOLS)
    server_config = ReplayServerConfig(
        frames=frames, rate_fps=2000, repeat=3, filter_by_subscription=True
    )
    async with AlpacaReplayServer(server_config) as server:
        marks = mark_requests(server)
        sink = CollectingSink()
        async with running(config_for(server, encoding=encoding), sink) as (feed, _):
            await wait_until(lambda: len(sink.frames) >= 50, what="data before the changes")
            state = await feed.subscribe(trades=["AMD"], quotes=("AMD",))
            assert state["trades"] == ["AAPL", "AMD"] and state["quotes"] == ["AAPL", "MSFT", "AMD"]
            assert state["corrections"] == ["AAPL", "AMD"]  # corrections follow trades
            seen = len(sink.frames)
            await wait_until(lambda: len(sink.frames) >= seen + 100, what="data after subscribe")
            state = await feed.unsubscribe(quotes=["MSFT"])
            assert state["quotes"] == ["AAPL", "AMD"] and feed.subscription == state
            seen = len(sink.frames)
            await wait_until(lambda: len(sink.frames) >= seen + 100, what="data after unsubscribe")
            assert feed.channels == {**FIRST_SET, "trades": ("AAPL", "AMD"),
                                     "quotes": ("AAPL", "AMD")}  # fmt: skip
            first = server.sessions[0]
            await first.flush_then_abort()  # the reconnect resubscribes to the changed set
            await wait_until(lambda: feed.counters.subscriptions == 4, what="resubscription")
            counters = feed.alpaca_counters
            assert (counters.changes_requested, counters.changes_confirmed) == (2, 2)
        assert feed.counters.connects == 2
        assert [e.code for e in sink.errors] == [None] and "lost" in sink.errors[0].message
        assert server.sessions[1].received[1] == {
            "action": "subscribe", "trades": ["AAPL", "AMD"], "quotes": ["AAPL", "AMD"],
            "statuses": ["*"], "lulds": ["AAPL"],
        }  # fmt: skip
        # The client got exactly what the server sent; the server honoured each change from
        # the moment it processed it.
        sent = first.sent_frames
        assert sink.frames[: len(sent)] == sent
        (_, _, at_sub), (_, _, at_unsub) = [(i, a, n) for i, a, n in marks if i == 0][2:]
        before, between, after = sent[:at_sub], sent[at_sub:at_unsub], sent[at_unsub:]
        assert ("t", "AMD") not in pairs(before, encoding)
        assert ("q", "AMD") not in pairs(before, encoding)
        assert {("t", "AMD"), ("q", "AMD"), ("q", "MSFT")} <= pairs(between, encoding)
        assert ("q", "MSFT") not in pairs(after, encoding) and ("q", "AMD") in pairs(
            after, encoding
        )
        assert ("t", "MSFT") not in pairs(sent, encoding)  # never subscribed
        if encoding is FrameEncoding.MSGPACK:  # re-encoded frames keep T first, t a Timestamp
            for frame in sent[:50]:
                for message in msgpack.unpackb(frame, timestamp=0):
                    assert next(iter(message)) == "T"
                    assert isinstance(message["t"], msgpack.Timestamp)


async def test_a_change_is_only_possible_while_running() -> None:
    async with AlpacaReplayServer() as server:
        feed = AlpacaFeed(config_for(server), CollectingSink())
        with pytest.raises(SubscriptionChangeError, match="not running"):
            await feed.subscribe(trades=["AMD"])
        async with running(config_for(server), CollectingSink()) as (feed, _):
            await wait_until(lambda: feed.state is FeedState.SUBSCRIBED)
        with pytest.raises(SubscriptionChangeError, match="not running"):
            await feed.subscribe(trades=["AMD"])
        assert feed.alpaca_counters.changes_requested == 0  # a usage error, not a protocol event


async def test_bad_change_arguments_are_refused_before_sending() -> None:
    async with AlpacaReplayServer() as server:
        async with running(config_for(server), CollectingSink()) as (feed, _):
            await wait_until(lambda: feed.state is FeedState.SUBSCRIBED)
            with pytest.raises(ValueError, match="trades: a list of symbols"):
                await feed.subscribe(trades="AMD")  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="quotes: symbols must be non-empty"):
                await feed.subscribe(quotes=[""])
            with pytest.raises(ValueError, match="no symbols given"):
                await feed.unsubscribe()
            with pytest.raises(ValueError, match="would leave no channel subscribed"):
                await feed.unsubscribe(trades=["AAPL"], quotes=["AAPL", "MSFT"],
                                       statuses=["*"], lulds=["AAPL"])  # fmt: skip
        assert [r["action"] for r in server.sessions[0].received] == ["auth", "subscribe"]
        assert feed.alpaca_counters.changes_requested == 0


async def test_405_refuses_the_change_and_keeps_the_session() -> None:
    # 2 trade+quote symbols configured (AAPL, MSFT); the plan allows 3
    async with AlpacaReplayServer(ReplayServerConfig(symbol_limit=3)) as server:
        sink = CollectingSink()
        async with running(config_for(server), sink) as (feed, _):
            await wait_until(lambda: feed.state is FeedState.SUBSCRIBED)
            with pytest.raises(SubscriptionChangeError, match=r"refused \(405\)") as info:
                await feed.subscribe(trades=["AMD", "TSLA"])
            assert info.value.code == 405 and info.value.reason == "refused"
            assert feed.state is FeedState.SUBSCRIBED and feed.channels == FIRST_SET
            state = await feed.subscribe(trades=["AMD"])  # within the limit: same session
            assert state["trades"] == ["AAPL", "AMD"]
        assert feed.counters.connects == 1 and feed.counters.errors_by_code == {405: 1}
        assert [(e.code, e.fatal, e.retry) for e in sink.errors] == [(405, False, False)]
        counters = feed.alpaca_counters
        assert (counters.changes_refused, counters.changes_confirmed) == (1, 1)


async def test_410_for_a_channel_the_feed_lacks_refuses_the_change() -> None:
    config = ReplayServerConfig(unavailable_channels=("imbalances",))
    async with AlpacaReplayServer(config) as server:
        async with running(config_for(server), CollectingSink()) as (feed, _):
            await wait_until(lambda: feed.state is FeedState.SUBSCRIBED)
            with pytest.raises(SubscriptionChangeError, match="invalid subscribe action"):
                await feed.subscribe(imbalances=["AAPL"])
            assert "imbalances" not in feed.channels and feed.state is FeedState.SUBSCRIBED
        assert feed.counters.connects == 1


@pytest.mark.parametrize("code", [400, 409])
async def test_other_refusals_answer_only_the_change(code: int) -> None:
    async with AlpacaReplayServer() as server:

        def refuse_runtime(session: ServerSession, request: dict[str, Any]) -> bool:
            if session.subscribed.is_set():  # a runtime change, not the first subscribe
                session.send_error(code, close=False)
                return True
            return False

        server.on_request = refuse_runtime
        async with running(config_for(server), CollectingSink()) as (feed, _):
            await wait_until(lambda: feed.state is FeedState.SUBSCRIBED)
            with pytest.raises(SubscriptionChangeError) as info:
                await feed.unsubscribe(lulds=["AAPL"])
            assert info.value.code == code and feed.channels == FIRST_SET
            await asyncio.sleep(0.03)
            assert feed.state is FeedState.SUBSCRIBED
        assert feed.counters.connects == 1


async def test_a_refusal_then_a_close_reconnects_with_the_unchanged_set() -> None:
    async with AlpacaReplayServer() as server:

        def refuse_and_close(session: ServerSession, request: dict[str, Any]) -> bool:
            if session.subscribed.is_set():
                session.send_error(409)  # closes, as after 409 at auth
                return True
            return False

        server.on_request = refuse_and_close
        async with running(config_for(server), CollectingSink()) as (feed, _):
            await wait_until(lambda: feed.state is FeedState.SUBSCRIBED)
            with pytest.raises(SubscriptionChangeError, match="insufficient subscription"):
                await feed.subscribe(bars=["AAPL"])
            await wait_until(lambda: feed.counters.subscriptions == 2, what="resubscription")
        assert server.sessions[1].received[1] == server.sessions[0].received[1]


async def test_no_reply_times_out_clearly_and_a_late_reply_is_not_taken_for_the_next() -> None:
    async with AlpacaReplayServer() as server:
        held: list[dict[str, Any]] = []

        def hold_first_change(session: ServerSession, request: dict[str, Any]) -> bool:
            if not session.subscribed.is_set():
                return False
            if not held:
                held.append(request)  # no reply at all
                return True
            # A late reply to the first change (AMD trades) arrives just before the real one.
            late = {"T": "subscription", "trades": ["AAPL", "AMD"], "quotes": ["AAPL", "MSFT"]}
            session.send_control(late)
            return False

        server.on_request = hold_first_change
        sink = CollectingSink()
        async with running(config_for(server), sink) as (feed, _):
            await wait_until(lambda: feed.state is FeedState.SUBSCRIBED)
            with pytest.raises(SubscriptionChangeError, match="timeout: no subscription reply"):
                await feed.subscribe(trades=["AMD"], timeout=0.1)
            assert feed.channels == FIRST_SET and feed.state is FeedState.SUBSCRIBED
            state = await feed.subscribe(quotes=["AMD"])
            assert state["quotes"] == ["AAPL", "MSFT", "AMD"]
            assert feed.channels["quotes"] == ("AAPL", "MSFT", "AMD")
            assert feed.channels["trades"] == ("AAPL",)  # the timed-out change never joins
        counters = feed.alpaca_counters
        assert (counters.changes_timed_out, counters.changes_confirmed) == (1, 1)
        assert any("no subscription reply" in e.message and not e.fatal for e in sink.errors)
        assert feed.counters.connects == 1


async def test_a_disconnect_interrupts_the_change() -> None:
    async with AlpacaReplayServer() as server:

        def drop(session: ServerSession, request: dict[str, Any]) -> bool:
            if session.subscribed.is_set() and session.index == 0:
                session.abort()
                return True
            return False

        server.on_request = drop
        async with running(config_for(server), CollectingSink()) as (feed, _):
            await wait_until(lambda: feed.state is FeedState.SUBSCRIBED)
            with pytest.raises(SubscriptionChangeError, match="interrupted"):
                await feed.subscribe(trades=["AMD"])
            await wait_until(lambda: feed.counters.subscriptions == 2, what="resubscription")
            assert feed.channels == FIRST_SET
        assert feed.alpaca_counters.changes_interrupted == 1
        assert server.sessions[1].received[1] == server.sessions[0].received[1]


async def test_a_change_waits_through_a_reconnect_then_applies() -> None:
    async with AlpacaReplayServer() as server:
        async with running(config_for(server), CollectingSink()) as (feed, _):
            await wait_until(lambda: feed.state is FeedState.SUBSCRIBED)
            server.sessions[0].abort()
            await wait_until(lambda: feed.state is not FeedState.SUBSCRIBED)
            state = await feed.subscribe(trades=["AMD"])
            assert state["trades"] == ["AAPL", "AMD"]
        assert [r["action"] for r in server.sessions[1].received] == [
            "auth", "subscribe", "subscribe"
        ]  # fmt: skip
        assert server.sessions[1].received[2] == {"action": "subscribe", "trades": ["AMD"]}


async def test_stop_interrupts_a_change_waiting_for_a_session() -> None:
    async with AlpacaReplayServer(ReplayServerConfig(auth_errors=[500] * 50)) as server:
        feed = AlpacaFeed(config_for(server), CollectingSink())
        task = asyncio.create_task(feed.run())
        await wait_until(lambda: feed.counters.connects >= 1)
        change = asyncio.create_task(feed.subscribe(trades=["AMD"], timeout=30))
        await asyncio.sleep(0.02)
        feed.stop()
        with pytest.raises(SubscriptionChangeError, match="interrupted"):
            await asyncio.wait_for(change, 2.0)
        await asyncio.wait_for(task, 2.0)


async def test_concurrent_changes_go_out_one_at_a_time_in_call_order() -> None:
    async with AlpacaReplayServer() as server:
        overlapping: list[bool] = []

        def check(session: ServerSession, request: dict[str, Any]) -> bool:
            if session.subscribed.is_set():  # the previous change must have been answered
                overlapping.append(len(session.received) - 2 != feed.counters.subscriptions)
            return False

        server.on_request = check
        async with running(config_for(server), CollectingSink()) as (feed, _):
            await wait_until(lambda: feed.state is FeedState.SUBSCRIBED)
            await asyncio.gather(
                feed.subscribe(trades=["AMD"]),
                feed.unsubscribe(quotes=["MSFT"]),
                feed.subscribe(bars=["AAPL"]),
            )
            assert feed.channels == {**FIRST_SET, "trades": ("AAPL", "AMD"),
                                     "quotes": ("AAPL",), "bars": ("AAPL",)}  # fmt: skip
        assert [r for r in server.sessions[0].received[2:]] == [
            {"action": "subscribe", "trades": ["AMD"]},
            {"action": "unsubscribe", "quotes": ["MSFT"]},
            {"action": "subscribe", "bars": ["AAPL"]},
        ]
        assert overlapping == [False, False, False]


# ---- header auth ------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", [FrameEncoding.JSON, FrameEncoding.MSGPACK])
async def test_header_auth_follows_connected_then_authenticated(encoding: FrameEncoding) -> None:
    async with AlpacaReplayServer(ReplayServerConfig(frames=json_frames(5))) as server:
        sink = CollectingSink()
        config = config_for(server, auth_in_headers=True, encoding=encoding)
        async with running(config, sink) as (feed, _):
            await wait_until(lambda: len(sink.frames) == 5)
        assert states(sink)[:4] == [
            FeedState.CONNECTING, FeedState.CONNECTED, FeedState.AUTHENTICATED,
            FeedState.SUBSCRIBED,
        ]  # fmt: skip
        session = server.sessions[0]
        assert (session.header_key, session.header_secret) == ("test-key", "test-secret")
        assert [r["action"] for r in session.received] == ["subscribe"]
        assert feed.counters.control_frames == 3 and not sink.errors
        assert feed.alpaca_counters.header_auth_unconfirmed == 0


async def test_header_auth_with_wrong_credentials_is_fatal() -> None:
    async with AlpacaReplayServer() as server:
        config = config_for(server, auth_in_headers=True, secret_key="wrong")
        feed = AlpacaFeed(config, CollectingSink())
        with pytest.raises(FeedFatalError, match="402 auth failed"):
            await asyncio.wait_for(feed.run(), 5.0)
        assert len(server.sessions) == 1 and server.sessions[0].received == []


async def test_header_auth_without_an_authenticated_frame_subscribes_after_the_grace() -> None:
    config = ReplayServerConfig(frames=json_frames(5), header_auth_confirms=False)
    async with AlpacaReplayServer(config) as server:
        sink = CollectingSink()
        client = config_for(server, auth_in_headers=True, header_auth_grace_secs=0.05)
        async with running(client, sink) as (feed, _):
            await wait_until(lambda: len(sink.frames) == 5)
        assert (FeedState.AUTHENTICATED, "by upgrade headers, unconfirmed") in sink.states
        assert feed.alpaca_counters.header_auth_unconfirmed == 1
        assert feed.counters.control_frames == 2  # connected, subscription
        assert sink.frames == server.sessions[0].sent_frames


async def test_header_auth_unconfirmed_then_401_is_fatal() -> None:
    config = ReplayServerConfig(header_auth_confirms=False)
    async with AlpacaReplayServer(config) as server:

        def not_authenticated(session: ServerSession, request: dict[str, Any]) -> bool:
            session.send_error(401, close=False)
            return True

        server.on_request = not_authenticated
        client = config_for(server, auth_in_headers=True, header_auth_grace_secs=0.05)
        feed = AlpacaFeed(client, CollectingSink())
        with pytest.raises(FeedFatalError, match="did not accept the upgrade headers"):
            await asyncio.wait_for(feed.run(), 5.0)
        assert len(server.sessions) == 1


async def test_message_auth_after_401_is_still_retried() -> None:
    """The header-auth rule above changes nothing for message auth (401 = ordering race)."""
    async with AlpacaReplayServer() as server:
        server.on_subscribed = lambda s: s.send_error(401, close=False) if s.index == 0 else None
        async with running(config_for(server), CollectingSink()) as (feed, _):
            await wait_until(lambda: feed.counters.subscriptions == 2, what="resubscription")
        assert feed.counters.errors_by_code == {401: 1}
