"""The engine's own monitor: every signal audited (whatever the outputs' emission policies),
none after the kill switch, metrics named for every snapshot key, health from the engine."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from relentless_fast.engine.core import Engine, SignalBatch, load_embedded
from relentless_fast.engine.sources import SyntheticSource, render_frames
from relentless_fast.inference.embedded import EmbeddedBackend
from relentless_fast.signals import unpack
from tests.engine.conftest import SYMBOLS, make_config
from tests.monitor.exposition import parse
from tests.monitor.helpers import assert_same, read_parquet


@pytest.fixture(scope="module")
def embedded() -> EmbeddedBackend:
    return load_embedded(make_config())


async def test_engine_signals_audited_and_snapshot_fully_named(
    tmp_path: Path, embedded: EmbeddedBackend
) -> None:
    config = make_config(
        **{
            "outputs.udp.enabled": "true",
            "outputs.udp.host": "127.0.0.1",
            "outputs.udp.port": "9",  # discard: nobody listens, datagrams are just sent
            "outputs.udp.rerequest_port": "-1",
            "outputs.udp.emission": "changes",  # the UDP stream is filtered, the audit is not
            "monitor.metrics_enabled": "true",
            "monitor.metrics_port": "0",
            "monitor.audit_enabled": "true",
            "monitor.audit_dir": str(tmp_path / "audit"),
        }
    )
    frames = render_frames(SYMBOLS, n_frames=200, seed=5, max_messages=20)
    seen: list[bytes] = []

    def on_signals(batch: SignalBatch) -> None:
        seen.append(bytes(batch.packed))

    engine = Engine(
        config,
        feed=lambda sink: SyntheticSource(frames, sink),
        embedded=embedded,
        on_signals=on_signals,
        context_store=False,
    )
    async with engine:
        await engine.wait()
        addr = engine.monitor.metrics_address
        assert addr is not None
        base = f"http://{addr[0]}:{addr[1]}"
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"{base}/metrics")).text
            health = (await client.get(f"{base}/healthz")).status_code
            snap_json = (await client.get(f"{base}/snapshot")).json()
            engine.kill("test")
            killed_health = (await client.get(f"{base}/healthz")).status_code
    assert (health, killed_health) == (200, 503)
    assert snap_json["session"] == engine.session and snap_json["frames"] == len(frames)
    fams = parse(text)
    untyped = sorted(n for n, f in fams.items() if f.type == "untyped")
    assert untyped == [], f"snapshot keys without a metric name: {untyped}"
    snap = engine.snapshot()
    assert fams["relentless_fast_signals_total"].samples[()] == snap["signals"] > 0
    assert fams["relentless_fast_last_sequence"].samples[()] == snap["last_sequence"]
    assert fams["relentless_fast_udp_signals_in_total"].samples[()] == snap["udp"]["signals_in"]
    assert (("session", engine.session),) in fams["relentless_fast_session_info"].samples
    emitted = unpack(b"".join(seen))
    assert emitted.shape[0] == snap["signals"]
    assert (emitted["sequence"] == np.arange(1, emitted.shape[0] + 1)).all()
    assert snap["udp"]["signals_sent"] < snap["signals"]  # the policy filtered UDP ...
    assert_same(read_parquet(tmp_path / "audit"), emitted)  # ... the audit has every signal


async def test_signals_discarded_by_the_kill_switch_are_not_audited(
    tmp_path: Path, embedded: EmbeddedBackend
) -> None:
    from tests.engine.test_engine import T0, frame, trade

    config = make_config(
        **{"monitor.audit_enabled": "true", "monitor.audit_dir": str(tmp_path / "audit")}
    )
    engine = Engine(config, feed=False, embedded=embedded, context_store=False)
    async with engine:
        engine.on_frame(frame(trade("AAPL", 100.0, T0)), 0)
        engine.end_of_burst()
        engine.on_frame(frame(trade("MSFT", 50.0, T0 + 1)), 0)  # marked, not yet answered
        engine.kill("test")
        engine.end_of_burst()
    assert engine.counters.discarded_killed == 1
    cols = read_parquet(tmp_path / "audit")
    assert cols["sequence"].tolist() == [1] and cols["symbol_id"].tolist() == [0]
