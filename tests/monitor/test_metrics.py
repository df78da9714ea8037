"""The Prometheus endpoint: exposition format, values equal to the snapshot, HTTP behaviour."""

from __future__ import annotations

import asyncio
import copy
import math
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from relentless_fast.monitor.metrics import (
    CONTENT_TYPE,
    MetricsServer,
    format_value,
    quantile_label,
    render,
)
from tests.monitor.exposition import parse

P = "relentless_fast_"

SNAPSHOT: dict[str, Any] = {
    "session": "2611251634",
    "serving": True,
    "killed": False,
    "frames": 120,
    "ticks": 3456,
    "parser_drops": {"truncated": 3, "unknown_symbol": 2},
    "rows_submitted": 900,
    "rows_coalesced": 40,
    "inference_drops": {"deadline": 1},
    "batches": 77,
    "signals": 860,
    "last_sequence": 860,
    "suppressed": {"halted": 4, "luld": 0, "no_price": 2, "killed": 0},
    "context_version": 20261125,
    "context_stale": True,
    "context_swaps": 1,
    "latency_us": {"p50": 41.5, "p99": 180.25, "p99.9": 260.0, "max": 900.0},
    "rows_fallback": 5,
    "remote": {
        "stable": {
            "calls": 10,
            "errors": {"DEADLINE_EXCEEDED": 1},
            "latency_us": {"p50": 300.0, "p99": 900.0},
        }
    },
    "udp": {"signals_in": 860, "packets_sent": 70, "eagain_drops": 0},
    "tcp": {"clients": 2, "connections": 5},
    "feed": {"data_frames": 120, "errors_by_code": {406: 1}},
    "brand_new_counter": 7,
    "nested": {"part": {"a": 1, "b": 2}},
}


def sample(fams: dict[str, Any], name: str, **labels: str) -> float:
    value: float = fams[P + name].samples[tuple(labels.items())]
    return value


def test_every_snapshot_value_is_exported_under_its_name() -> None:
    fams = parse(render(SNAPSHOT))
    s = SNAPSHOT
    for key, name in [
        ("frames", "frames_total"),
        ("ticks", "ticks_total"),
        ("rows_submitted", "rows_submitted_total"),
        ("rows_coalesced", "rows_coalesced_total"),
        ("batches", "inference_batches_total"),
        ("signals", "signals_total"),
        ("context_swaps", "context_swaps_total"),
        ("rows_fallback", "rows_fallback_total"),
    ]:
        assert fams[P + name].type == "counter"
        assert sample(fams, name) == s[key], key
    for key, name in [
        ("last_sequence", "last_sequence"),
        ("context_version", "context_version"),
        ("serving", "serving"),
        ("killed", "killed"),
        ("context_stale", "context_stale"),
    ]:
        assert fams[P + name].type == "gauge"
        assert sample(fams, name) == float(s[key]), key
    assert sample(fams, "session_info", session="2611251634") == 1
    for reason, n in s["parser_drops"].items():
        assert sample(fams, "parser_drops_total", reason=reason) == n
    assert sample(fams, "inference_drops_total", reason="deadline") == 1
    for reason, n in s["suppressed"].items():
        assert sample(fams, "signals_suppressed_total", reason=reason) == n
    lat = fams[P + "frame_to_signal_latency_seconds"]
    assert lat.type == "gauge"
    assert lat.samples == {
        (("quantile", "0.5"),): 41.5e-6,
        (("quantile", "0.99"),): 180.25e-6,
        (("quantile", "0.999"),): 260.0e-6,
        (("quantile", "1"),): 900.0e-6,
    }
    assert sample(fams, "remote_calls_total", label="stable") == 10
    assert sample(fams, "remote_errors_total", label="stable", code="DEADLINE_EXCEEDED") == 1
    assert math.isclose(
        sample(fams, "remote_latency_seconds", label="stable", quantile="0.99"), 9e-4
    )
    assert sample(fams, "udp_signals_in_total") == 860
    assert sample(fams, "udp_packets_sent_total") == 70
    assert fams[P + "tcp_clients"].type == "gauge" and sample(fams, "tcp_clients") == 2
    assert sample(fams, "tcp_connections_total") == 5
    assert sample(fams, "feed_errors_by_code_total", code="406") == 1


def test_unknown_keys_are_exported_untyped_not_lost() -> None:
    fams = parse(render(SNAPSHOT))
    assert fams[P + "brand_new_counter"].type == "untyped"
    assert sample(fams, "brand_new_counter") == 7
    assert sample(fams, "nested_part", key="a") == 1
    assert sample(fams, "nested_part", key="b") == 2


def test_extra_sections_and_escaping() -> None:
    snap = {"session": 'we"ird\\na\nme', "frames": 1}
    fams = parse(render(snap, {"audit": {"signals_written": 9, "signals_dropped": 0}}))
    assert sample(fams, "session_info", session='we"ird\\na\nme') == 1
    assert sample(fams, "audit_signals_written_total") == 9
    assert sample(fams, "audit_signals_dropped_total") == 0


def test_numpy_values_are_exported_as_plain_numbers() -> None:
    snap = {
        "frames": np.int64(5),
        "context_stale": np.bool_(True),
        "latency_us": {"p50": np.float32(2.5)},
    }
    fams = parse(render(snap))
    assert sample(fams, "frames_total") == 5
    assert sample(fams, "context_stale") == 1
    assert sample(fams, "frame_to_signal_latency_seconds", quantile="0.5") == 2.5e-6


def test_empty_snapshot_and_odd_values() -> None:
    assert render({}) == ""
    assert format_value(math.nan) == "NaN" and format_value(-math.inf) == "-Inf"
    assert format_value(True) == "1" and format_value(3) == "3" and format_value(0.25) == "0.25"
    assert quantile_label("p99.9") == "0.999" and quantile_label("max") == "1"
    fams = parse(render({"latency_us": {}, "frames": 0, "session": "s", "note": "text"}))
    assert set(fams) == {P + "frames_total", P + "session_info"}


# -- over HTTP ----------------------------------------------------------------------------


class FakeEngine:
    """snapshot()/serving as the engine exposes them; counts move between scrapes."""

    def __init__(self) -> None:
        self.snap = copy.deepcopy(SNAPSHOT)
        self.serving = True
        self.snapshots = 0

    def snapshot(self) -> dict[str, Any]:
        self.snapshots += 1
        return copy.deepcopy(self.snap)


@pytest.fixture
async def served() -> AsyncIterator[tuple[FakeEngine, MetricsServer, str]]:
    engine = FakeEngine()
    server = MetricsServer(
        lambda: render(engine.snapshot()),
        lambda: engine.serving,
        snapshot_json=lambda: orjson.dumps(engine.snapshot(), option=orjson.OPT_NON_STR_KEYS),
        port=0,
    )
    await server.start()
    host, port = server.address
    try:
        yield engine, server, f"http://{host}:{port}"
    finally:
        await server.aclose()


async def test_scrape_over_http_equals_the_snapshot(
    served: tuple[FakeEngine, MetricsServer, str],
) -> None:
    engine, server, url = served
    async with httpx.AsyncClient() as client:
        r = await client.get(url + "/metrics")
        assert r.status_code == 200
        assert r.headers["content-type"] == CONTENT_TYPE
        assert parse(r.text) == parse(render(SNAPSHOT))
        engine.snap["signals"] = 861
        engine.snap["suppressed"]["halted"] = 5
        fams = parse((await client.get(url + "/metrics?x=1")).text)
        assert sample(fams, "signals_total") == 861
        assert sample(fams, "signals_suppressed_total", reason="halted") == 5
        head = await client.head(url + "/metrics")
        assert head.status_code == 200 and head.content == b""
        assert int(head.headers["content-length"]) > 0
        snap = (await client.get(url + "/snapshot")).json()
        assert snap["signals"] == 861 and snap["feed"]["errors_by_code"] == {"406": 1}
    assert server.counters.scrapes == 3


async def test_healthz_follows_serving(served: tuple[FakeEngine, MetricsServer, str]) -> None:
    engine, _, url = served
    async with httpx.AsyncClient() as client:
        assert (await client.get(url + "/healthz")).status_code == 200
        engine.serving = False
        r = await client.get(url + "/healthz")
        assert r.status_code == 503 and r.text == "not serving\n"


async def test_other_paths_and_methods(served: tuple[FakeEngine, MetricsServer, str]) -> None:
    _, server, url = served
    async with httpx.AsyncClient() as client:
        assert (await client.get(url + "/")).status_code == 404
        assert (await client.get(url + "/metricsx")).status_code == 404
        assert (await client.post(url + "/metrics", content=b"x")).status_code == 405
    assert server.counters.bad_requests == 1


async def raw_exchange(url: str, data: bytes, *, shut: bool = True) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    if shut:
        writer.write_eof()
    await writer.drain()
    reply = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    await writer.wait_closed()
    return reply


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GARBAGE\r\n\r\n", b"400"),
        (b"GET /metrics\r\n\r\n", b"400"),
        (b"GET /metrics SPDY/3\r\n\r\n", b"400"),
        (b"GET /metrics HTTP/1.1\r\nHost: x\r\n", b"400"),  # head never ends: EOF
        (b"\x00\xff\r\n\r\n", b"400"),
        (b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 10_000 + b"\r\n\r\n", b"431"),
    ],
)
async def test_malformed_requests_get_a_4xx_and_the_server_stays_up(
    served: tuple[FakeEngine, MetricsServer, str], data: bytes, status: bytes
) -> None:
    engine, server, url = served
    reply = await raw_exchange(url, data)
    assert reply.split(b" ", 2)[1] == status, reply[:80]
    assert server.counters.bad_requests == 1
    assert engine.snapshots == 0
    async with httpx.AsyncClient() as client:
        assert (await client.get(url + "/metrics")).status_code == 200


async def test_rendering_failure_is_a_500_not_a_crash() -> None:
    def broken() -> str:
        raise RuntimeError("snapshot exploded")

    server = MetricsServer(broken, lambda: True, port=0)
    await server.start()
    host, port = server.address
    try:
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://{host}:{port}/metrics")).status_code == 500
            assert (await client.get(f"http://{host}:{port}/snapshot")).status_code == 404
        assert server.counters.render_errors == 1
    finally:
        await server.aclose()


async def test_a_taken_port_raises_oserror() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = MetricsServer(lambda: "", lambda: True, port=taken.getsockname()[1])
        with pytest.raises(OSError):
            await server.start()
