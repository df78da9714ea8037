"""``record`` and ``replay`` subcommands, run as the console script runs them (own event loop)."""

from __future__ import annotations

import argparse
import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from relentless_fast.feeds import cli
from relentless_fast.feeds.alpaca import AlpacaFeed, AlpacaFeedConfig
from relentless_fast.feeds.base import CollectingSink, FrameEncoding
from relentless_fast.feeds.recording import RecordingWriter, read_recording
from relentless_fast.feeds.replay_server import (
    AlpacaReplayServer,
    ReplayServerConfig,
    parse_rfc3339_ns,
)
from tests.feeds.conftest import json_frames


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="relentless-fast")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


@pytest.fixture
def server_in_thread() -> Iterator[AlpacaReplayServer]:
    """A replay server on its own loop and thread (the CLI runs its own loop)."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    server = AlpacaReplayServer(ReplayServerConfig(frames=json_frames(25)))

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(5)
    yield server
    asyncio.run_coroutine_threadsafe(server.stop(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def test_record_from_a_server_then_summarise(
    server_in_thread: AlpacaReplayServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "rec.rff"
    code = run_cli(
        ["record", str(out), "--url", server_in_thread.url, "--quotes", "AAPL,MSFT",
         "--credentials", "test", "--max-frames", "25", "--duration", "10"]
    )  # fmt: skip
    assert code == 0
    encoding, records = read_recording(out)
    assert encoding is FrameEncoding.JSON
    assert [p for _, p in records] == server_in_thread.sessions[0].sent_frames
    assert "recorded 25 frames" in capsys.readouterr().out
    assert run_cli(["replay", str(out), "--fast"]) == 0
    assert "25 frames" in capsys.readouterr().out


def test_record_without_credentials_or_channels_fails_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("APCA_API_KEY_ID", raising=False)
    assert run_cli(["record", str(tmp_path / "x.rff"), "--quotes", "AAPL"]) == 2
    assert "APCA_API_KEY_ID" in capsys.readouterr().err
    assert run_cli(["record", str(tmp_path / "x.rff"), "--credentials", "test"]) == 2
    assert "no channel" in capsys.readouterr().err


def test_replay_refuses_a_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.rff"
    bad.write_bytes(b"garbage that is long enough")
    assert run_cli(["replay", str(bad)]) == 2
    assert "bad magic" in capsys.readouterr().err


def test_replay_serve_feeds_a_client(tmp_path: Path) -> None:
    frames = json_frames(30)
    path = tmp_path / "serve.rff"
    with RecordingWriter(path, FrameEncoding.JSON) as writer:
        for i, frame in enumerate(frames):
            writer.write(frame, i)
    with socket.socket() as probe:  # a free port (tiny race with other processes: acceptable)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result: list[int] = []
    argv = ["replay", str(path), "--serve", f"127.0.0.1:{port}", "--duration", "2",
            "--rate", "3000", "--repeat", "2", "--stamp-send-time"]  # fmt: skip
    thread = threading.Thread(target=lambda: result.append(run_cli(argv)))
    thread.start()

    async def consume() -> list[bytes]:
        sink = CollectingSink()
        config = AlpacaFeedConfig(
            url=f"ws://127.0.0.1:{port}/v2/test", key_id="test-key", secret_key="test-secret",
            quotes=("AAPL",), backoff_initial_secs=0.05, backoff_max_secs=0.1,
        )  # fmt: skip
        feed = AlpacaFeed(config, sink)
        task = asyncio.create_task(feed.run())
        for _ in range(400):
            if len(sink.frames) >= 2 * len(frames):
                break
            await asyncio.sleep(0.005)
        feed.stop()
        await task
        return sink.frames

    try:
        started_ns = time.time_ns()
        got = asyncio.run(consume())
    finally:
        thread.join(10)
    assert result == [0]
    assert len(got) == 2 * len(frames)
    for received, original in zip(got, frames * 2, strict=True):
        stamped, expected = orjson.loads(received), orjson.loads(original)
        stamps = {parse_rfc3339_ns(m.pop("t")) for m in stamped}
        assert len(stamps) == 1 and started_ns - 5 * 10**9 < stamps.pop() <= time.time_ns()
        assert stamped == [{k: v for k, v in m.items() if k != "t"} for m in expected]
