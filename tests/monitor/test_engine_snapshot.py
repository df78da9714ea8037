"""A real engine's snapshot and signals through the monitor (via the public listener API).

Until the engine calls ``Monitor.append`` itself, a signal listener does the same thing: every
published batch's packed view goes to the audit log. The test checks that every key of a real
snapshot has a named metric (none falls back to ``untyped``) and that the audit log holds every
signal the engine emitted, byte for byte.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import httpx
import numpy as np
import pytest

from relentless_fast.engine.core import Engine, SignalBatch, load_embedded
from relentless_fast.engine.sources import SyntheticSource, render_frames
from relentless_fast.inference.embedded import EmbeddedBackend
from relentless_fast.monitor import Monitor
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
        }
    )
    frames = render_frames(SYMBOLS, n_frames=200, seed=5, max_messages=20)
    seen: list[bytes] = []
    monitor: Monitor | None = None

    def on_signals(batch: SignalBatch) -> None:
        seen.append(bytes(batch.packed))
        assert monitor is not None
        monitor.append(batch.packed, batch.count)

    engine = Engine(
        config,
        feed=lambda sink: SyntheticSource(frames, sink),
        embedded=embedded,
        on_signals=on_signals,
        context_store=False,
    )
    section = dataclasses.replace(config.monitor, metrics_port=0, audit_dir=str(tmp_path / "audit"))
    monitor = Monitor(
        section,
        session=engine.session,
        snapshot=engine.snapshot,
        serving=lambda: engine.serving,
    )
    await monitor.start()
    try:
        addr = monitor.metrics_address
        assert addr is not None
        async with engine:
            await engine.wait()
            async with httpx.AsyncClient() as client:
                text = (await client.get(f"http://{addr[0]}:{addr[1]}/metrics")).text
                health = (await client.get(f"http://{addr[0]}:{addr[1]}/healthz")).status_code
                snap_json = (await client.get(f"http://{addr[0]}:{addr[1]}/snapshot")).json()
        assert health == 200
        assert snap_json["session"] == engine.session and snap_json["frames"] == len(frames)
    finally:
        await monitor.aclose()
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
    assert_same(read_parquet(tmp_path / "audit"), emitted)
