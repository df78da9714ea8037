"""docs/operations.md names every metric the renderer produces and every [monitor] key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from relentless_fast.config import MonitorSection
from relentless_fast.feeds.base import FeedCounters
from relentless_fast.monitor.audit import AuditCounters
from relentless_fast.monitor.metrics import PREFIX, MetricsCounters, render
from relentless_fast.outputs.tcp import TcpCounters
from relentless_fast.outputs.udp import UdpCounters
from tests.monitor.exposition import parse
from tests.monitor.test_metrics import SNAPSHOT

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
SECTIONS = ("udp_", "tcp_", "feed_", "audit_", "metrics_")


def full_snapshot() -> dict[str, object]:
    snap = {k: v for k, v in SNAPSHOT.items() if k not in ("brand_new_counter", "nested")}
    snap["udp"] = dataclasses.asdict(UdpCounters())
    snap["tcp"] = dataclasses.asdict(TcpCounters())
    feed = dataclasses.asdict(FeedCounters())
    feed["errors_by_code"] = {406: 1}
    snap["feed"] = feed
    return snap


def test_every_metric_family_is_documented() -> None:
    text = DOC.read_text()
    extra = {
        "audit": dataclasses.asdict(AuditCounters()),
        "metrics": dataclasses.asdict(MetricsCounters()),
    }
    fams = parse(render(full_snapshot(), extra))
    missing = []
    for name in fams:
        short = name.removeprefix(PREFIX)
        if f"`{short}`" in text:
            continue
        section = next((s for s in SECTIONS if short.startswith(s)), None)
        field = short.removeprefix(section or "").removesuffix("_total")
        if section is None or f"`{field}`" not in text:
            missing.append(short)
    assert missing == [], f"metrics not in docs/operations.md: {missing}"


def test_every_monitor_key_is_documented() -> None:
    text = DOC.read_text()
    for f in dataclasses.fields(MonitorSection):
        assert f"| `{f.name}` |" in text, f.name
