"""``relentless-fast run | symbols | kill``."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from relentless_fast.cli import main
from relentless_fast.engine import Engine
from relentless_fast.inference.embedded import EmbeddedBackend
from tests.engine.conftest import REPO_ROOT, make_config

MODEL = str(REPO_ROOT / "models" / "relentless_financial")


def test_run_on_the_synthetic_feed_prints_counters(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = ["run", "--seconds", "30", "--feed.synthetic_frames", "200",
            "--outputs.udp.enabled", "false", "--outputs.grpc.port", "0",
            "--context.snapshot_path", "", "--inference.model_base_path", MODEL,
            "--engine.kill_signal", "", "--monitor.metrics_port", "0",
            "--monitor.audit_dir", str(tmp_path / "audit")]  # fmt: skip
    assert main(argv) == 0
    snap = json.loads(capsys.readouterr().out)
    assert snap["frames"] == 200 and snap["signals"] == snap["last_sequence"] > 0
    assert snap["serving"] is False  # stopped cleanly at the end of the stream
    from relentless_fast.monitor.cli import connect, summary

    (audited,) = summary(connect(tmp_path / "audit"))  # run audits every signal by default
    assert (audited["signals"], audited["missing"]) == (snap["signals"], 0)


def test_run_refuses_a_bad_flag_value(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--inference.window_us", "fast"]) == 2
    assert "inference.window_us" in capsys.readouterr().err


def test_symbols_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["symbols", "--format", "json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["symbols"][0] == {"symbol": "AAPL", "symbol_id": 0}


async def test_kill_command_over_grpc(embedded: EmbeddedBackend) -> None:
    config = make_config(**{"outputs.grpc.enabled": "true", "outputs.grpc.port": 0})
    async with Engine(config, feed=False, embedded=embedded, context_store=False) as engine:
        code = await asyncio.to_thread(main, ["kill", "--grpc", engine.grpc.address])
        assert code == 0 and engine.killed and "relentless-fast kill" in engine.kill_reason


async def test_kill_command_by_signal(embedded: EmbeddedBackend) -> None:
    config = make_config(**{"engine.kill_signal": "SIGUSR1"})
    async with Engine(config, feed=False, embedded=embedded, context_store=False) as engine:
        assert main(["kill", "--pid", str(os.getpid())]) == 0
        for _ in range(100):
            if engine.killed:
                break
            await asyncio.sleep(0.01)
        assert engine.killed
