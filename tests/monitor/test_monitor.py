"""Monitor, the engine's surface: config section in, metrics and audit log out."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from relentless_fast.config import ConfigError, MonitorSection, load_config
from relentless_fast.monitor import Monitor
from tests.monitor.exposition import parse
from tests.monitor.helpers import assert_same, make_records, packed, read_parquet


def section(tmp_path: Path, **kw: Any) -> MonitorSection:
    base: dict[str, Any] = {"metrics_port": 0, "audit_dir": str(tmp_path / "audit")}
    base.update(kw)
    return dataclasses.replace(MonitorSection(), **base)


class Fake:
    def __init__(self) -> None:
        self.serving = True

    def snapshot(self) -> dict[str, Any]:
        return {"session": "M1", "signals": 300, "serving": self.serving}


def make(cfg: MonitorSection, fake: Fake) -> Monitor:
    return Monitor(cfg, session="M1", snapshot=fake.snapshot, serving=lambda: fake.serving)


async def test_metrics_and_audit_together(tmp_path: Path) -> None:
    fake = Fake()
    mon = make(section(tmp_path), fake)
    append = mon.append  # what the engine caches at construction
    append(packed(make_records(1, 2)), 2)  # before start: counted as dropped
    await mon.start()
    try:
        addr = mon.metrics_address
        assert addr is not None
        url = f"http://{addr[0]}:{addr[1]}"
        records = make_records(1, 300)
        for i in range(0, 300, 100):
            append(packed(records[i : i + 100]), 100)
        assert mon.audit is not None
        for _ in range(500):
            if mon.audit.counters.signals_written == 300:
                break
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient() as client:
            fams = parse((await client.get(url + "/metrics")).text)
            assert fams["relentless_fast_signals_total"].samples[()] == 300
            assert fams["relentless_fast_audit_signals_appended_total"].samples[()] == 300
            assert fams["relentless_fast_audit_signals_written_total"].samples[()] == 300
            assert fams["relentless_fast_metrics_scrapes_total"].samples[()] == 0
            snap = (await client.get(url + "/snapshot")).json()
            assert snap["monitor"]["audit"]["signals_appended"] == 300
            assert (await client.get(url + "/healthz")).status_code == 200
            fake.serving = False
            assert (await client.get(url + "/healthz")).status_code == 503
    finally:
        await mon.aclose()
    assert_same(read_parquet(tmp_path / "audit"), records)
    mon.append(packed(records[:1]), 1)  # after close: counted, not a crash
    assert mon.counters()["audit"]["signals_dropped"] == 3


async def test_taken_port_runs_without_metrics_unless_required(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        fake = Fake()
        mon = make(section(tmp_path, metrics_port=port), fake)
        await mon.start()
        assert mon.metrics_address is None and mon.metrics_error
        mon.append(packed(make_records(1, 5)), 5)
        await mon.aclose()
        assert len(read_parquet(tmp_path / "audit")["sequence"]) == 5

        strict = make(section(tmp_path, metrics_port=port, metrics_required=True), fake)
        with pytest.raises(OSError):
            await strict.start()
        audit_threads = [t for t in threading.enumerate() if t.name.startswith("rf-audit")]
        assert audit_threads == [], "audit threads stopped on the failed start"


async def test_everything_off_is_a_no_op(tmp_path: Path) -> None:
    mon = make(section(tmp_path, metrics_enabled=False, audit_enabled=False), Fake())
    await mon.start()
    mon.append(packed(make_records(1, 3)), 3)
    assert mon.metrics_address is None and mon.counters() == {}
    await mon.aclose()
    assert not (tmp_path / "audit").exists()


def test_config_section_keys_and_errors(tmp_path: Path) -> None:
    c = load_config(
        env={"RELENTLESS_MONITOR_METRICS_PORT": "0"},
        overrides={"monitor.audit_dir": str(tmp_path), "monitor.audit_enabled": "no"},
    )
    assert c.monitor.metrics_port == 0 and c.monitor.audit_enabled is False
    assert c.monitor.audit_dir == str(tmp_path)
    defaults = MonitorSection()
    assert (defaults.metrics_host, defaults.metrics_port) == ("127.0.0.1", 8630)
    assert defaults.audit_dir == "var/audit" and defaults.audit_enabled
    for key, value in [
        ("monitor.metrics_port", "70000"),
        ("monitor.audit_buffer_signals", "10"),
        ("monitor.audit_flush_interval_ms", "0"),
        ("monitor.audit_fsync_interval_s", "-1"),
        ("monitor.audit_rotate_signals", "0"),
        ("monitor.audit_dir", ""),
    ]:
        with pytest.raises(ConfigError) as err:
            load_config(env={}, overrides={key: value})
        assert err.value.key == key
    with pytest.raises(ConfigError) as err:
        load_config(env={"RELENTLESS_MONITOR_METRICS_PROT": "1"})
    assert err.value.key == "RELENTLESS_MONITOR_METRICS_PROT"
