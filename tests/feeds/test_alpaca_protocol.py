"""Alpaca client helpers: frame classification, error policy, config, backoff, msgpack."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgpack
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relentless_fast.feeds.alpaca import (
    ERROR_POLICY,
    AlpacaFeed,
    AlpacaFeedConfig,
    _JsonSession,
    _Session,
    classify_error,
    is_data_frame,
    msgpack_loads,
)
from relentless_fast.feeds.base import CollectingSink, FrameEncoding
from relentless_fast.feeds.replay_server import ERROR_MESSAGES, json_frame_to_msgpack

JSON, MSGPACK = FrameEncoding.JSON, FrameEncoding.MSGPACK


def documented_frames(fixtures: Path) -> list[bytes]:
    path = fixtures / "alpaca" / "server_frames_documented.jsonl"
    lines = path.read_text().splitlines()
    return [json.loads(line)["frame"].encode() for line in lines if line.strip()]


def is_control(frame: bytes) -> bool:
    items = orjson.loads(frame)
    return len(items) == 1 and items[0]["T"] in ("success", "error", "subscription")


def test_documented_frames_are_classified(shared_fixtures: Path) -> None:
    frames = documented_frames(shared_fixtures)
    controls = [f for f in frames if is_control(f)]
    data = [f for f in frames if not is_control(f)]
    assert len(controls) >= 20 and len(data) >= 6
    for frame in controls:
        assert not is_data_frame(frame, JSON), frame
        assert not is_data_frame(msgpack.packb(orjson.loads(frame)), MSGPACK), frame
    for frame in data:
        assert is_data_frame(frame, JSON), frame
        assert is_data_frame(memoryview(frame), JSON), frame
        assert is_data_frame(json_frame_to_msgpack(frame), MSGPACK), frame


def test_documented_error_frames_follow_the_policy(shared_fixtures: Path) -> None:
    seen = set()
    for frame in documented_frames(shared_fixtures):
        item = orjson.loads(frame)[0]
        if item["T"] != "error":
            continue
        seen.add(item["code"])
        error = classify_error(item["code"], item["msg"])
        assert error.fatal == (ERROR_POLICY[item["code"]] == "fatal")
        assert error.retry == (ERROR_POLICY[item["code"]] == "retry")
        assert ERROR_MESSAGES[item["code"]] == item["msg"]  # the server speaks the docs' text
    assert seen >= {400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 500}


def test_error_policy_highlights() -> None:
    assert classify_error(402, "auth failed").fatal
    assert classify_error(406, "connection limit exceeded").retry
    assert classify_error(407, "slow client").retry
    ignored = classify_error(403, "already authenticated")
    assert not ignored.fatal and not ignored.retry
    assert classify_error(499, "new code").retry  # unknown codes are retried (bounded)


def test_unusual_layouts_are_not_taken_for_data() -> None:
    assert not is_data_frame(b'[ {"T":"t"}]', JSON)  # decoded on the slow path instead
    assert not is_data_frame(b"", JSON)
    assert not is_data_frame(b"[]", JSON)
    assert not is_data_frame(b"\x90", MSGPACK)
    assert not is_data_frame(msgpack.packb([{"S": "AAPL", "T": "t"}]), MSGPACK)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40))
def test_classification_never_raises(data: bytes) -> None:
    for encoding in (JSON, MSGPACK):
        assert is_data_frame(data, encoding) in (True, False)


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=300)
    | st.binary(max_size=300),
    lambda inner: (
        st.lists(inner, max_size=20) | st.dictionaries(st.text(max_size=10), inner, max_size=20)
    ),
    max_leaves=40,
)


@settings(max_examples=200, deadline=None)
@given(msgpack_values)
def test_msgpack_loads_matches_the_reference(value: Any) -> None:
    packed = msgpack.packb(value, use_bin_type=True)
    assert msgpack_loads(packed) == msgpack.unpackb(packed, raw=False, strict_map_key=False)


@pytest.mark.parametrize(
    ("seconds", "nanos"), [(1_614_009_104, 208_000_000), (1_614_009_104, 0), (2**34 + 5, 7)]
)
def test_msgpack_loads_timestamps_all_three_forms(seconds: int, nanos: int) -> None:
    packed = msgpack.packb(msgpack.Timestamp(seconds, nanos))
    assert msgpack_loads(packed) == seconds * 1_000_000_000 + nanos


def test_msgpack_loads_refuses_truncated_and_trailing_input() -> None:
    packed = msgpack.packb([{"T": "error", "code": 406, "msg": "connection limit exceeded"}])
    for cut in range(1, len(packed)):
        with pytest.raises(ValueError):
            msgpack_loads(packed[:cut])
    with pytest.raises(ValueError, match="trailing"):
        msgpack_loads(packed + b"\x00")


def test_config_builds_the_messages() -> None:
    config = AlpacaFeedConfig(
        key_id="k", secret_key="s3cr3t-value", trades=("AAPL",), daily_bars=("VOO",),
        statuses=("*",),
    )  # fmt: skip
    assert config.subscribe_message() == {
        "action": "subscribe",
        "trades": ["AAPL"],
        "dailyBars": ["VOO"],
        "statuses": ["*"],
    }
    assert config.auth_message() == {"action": "auth", "key": "k", "secret": "s3cr3t-value"}
    assert config.upgrade_headers() == {}
    assert "s3cr3t-value" not in repr(config)  # secrets stay out of logs
    both = AlpacaFeedConfig(
        key_id="k", secret_key="s", quotes=("A",), auth_in_headers=True, encoding=MSGPACK
    )
    assert both.upgrade_headers() == {
        "APCA-API-KEY-ID": "k",
        "APCA-API-SECRET-KEY": "s",
        "Content-Type": "application/msgpack",
    }


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"url": "http://x"}, "url"),
        ({"encoding": FrameEncoding.BINARY}, "encoding"),
        ({"reply_timeout_secs": 0}, "reply_timeout_secs"),
        ({"stale_after_secs": -1}, "stale_after_secs"),
        ({"backoff_max_secs": 0.01}, "backoff_max_secs"),
        ({"backoff_jitter": 2}, "backoff_jitter"),
        ({"quotes": "AAPL"}, "quotes"),
        ({"quotes": ("",)}, "quotes"),
        ({"quotes": ()}, "no channel"),
    ],
)
def test_config_errors_name_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        AlpacaFeedConfig(**{"quotes": ("AAPL",), **overrides})


def test_credentials_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    base = AlpacaFeedConfig(quotes=("AAPL",))
    monkeypatch.delenv("APCA_API_KEY_ID", raising=False)
    with pytest.raises(ValueError, match="APCA_API_KEY_ID"):
        base.with_env_credentials()
    monkeypatch.setenv("APCA_API_KEY_ID", "id")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "secret")
    config = base.with_env_credentials()
    assert (config.key_id, config.secret_key, config.quotes) == ("id", "secret", ("AAPL",))


def test_backoff_is_capped_exponential_with_jitter() -> None:
    config = AlpacaFeedConfig(
        quotes=("A",), backoff_initial_secs=0.5, backoff_max_secs=8.0, backoff_jitter=0.5
    )
    feed = AlpacaFeed(config, CollectingSink(), seed=3)
    for attempt in range(12):
        ceiling = min(8.0, 0.5 * 2**attempt)
        delays = [feed.backoff_delay(attempt) for _ in range(50)]
        assert all(ceiling * 0.5 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jittered
    assert feed.backoff_delay(10_000) <= 8.0


def fast_path_takes(encoding: FrameEncoding, payload: bytes) -> bool:
    """Whether a session's hot path hands ``payload`` straight to the sink."""
    config = AlpacaFeedConfig(quotes=("A",), encoding=encoding)
    sink = CollectingSink()
    feed = AlpacaFeed(config, sink)
    session = (_JsonSession if encoding is JSON else _Session)(feed)
    slow: list[bytes] = []
    setattr(feed, "_on_other", lambda s, p, ts, n: slow.append(bytes(p)))  # noqa: B010
    session.on_payload(memoryview(payload), 1)
    assert len(sink.frames) + len(slow) == 1
    return bool(sink.frames)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=24), st.sampled_from([b"", b'[{"T":"', b"\x91\x83\xa1T\xa1"]))
def test_session_hot_path_agrees_with_is_data_frame(tail: bytes, head: bytes) -> None:
    payload = head + tail
    for encoding in (JSON, MSGPACK):
        assert fast_path_takes(encoding, payload) == is_data_frame(payload, encoding)


def test_session_hot_path_on_documented_frames(shared_fixtures: Path) -> None:
    for frame in documented_frames(shared_fixtures):
        assert fast_path_takes(JSON, frame) == (not is_control(frame))
        if not is_control(frame):
            assert fast_path_takes(MSGPACK, json_frame_to_msgpack(frame))
        assert not fast_path_takes(MSGPACK, msgpack.packb([{"T": "error", "code": 1}]))
