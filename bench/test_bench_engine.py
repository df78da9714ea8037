"""The engine in process: one frame in, its signals published over UDP, per frame.

Same frames, same model, same process, one run: the embedded fast path (native staging into
LiteRT's tensors, native record fill) against the batcher path the engine takes with the gRPC
backend or a canary (here served by the same embedded model), which is what every frame took
before the fast path existed. Each frame is one burst (``on_frame`` then ``end_of_burst``),
published to a local UDP socket. Two regimes: back to back (warm caches) and with a 1 ms gap
between frames (the core goes idle between frames, as at 1,000 frames/s).

Run: ``.venv/bin/pytest bench/test_bench_engine.py -s`` (``RF_BENCH_SMOKE=1``: short).
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
import time
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import uvloop

from bench.latency import percentiles, scaled
from relentless_fast.config import load_config
from relentless_fast.engine import Engine
from relentless_fast.engine.sources import render_frames

SYMBOLS = tuple(f"S{i:03d}" for i in range(40))
N_FRAMES = scaled(3000, 300)
WARMUP = scaled(300, 50)


def _config(udp_port: int) -> Any:
    from pathlib import Path

    models = Path(__file__).resolve().parents[1] / "models" / "relentless_financial"
    return load_config(
        env={},
        overrides={
            "engine.symbols": ",".join(SYMBOLS),
            "engine.gc_freeze": "false",
            "engine.kill_signal": "",
            "outputs.udp.host": "127.0.0.1",
            "outputs.udp.port": str(udp_port),
            "outputs.udp.rerequest_port": "-1",
            "outputs.grpc.enabled": "false",
            "context.snapshot_path": "",
            "inference.model_base_path": str(models),
            "monitor.metrics_enabled": "false",
            "monitor.audit_dir": tempfile.mkdtemp(prefix="rf-bench-audit-"),  # audit on, as run
        },
    )


async def _per_frame_ns(frames: list[bytes], *, fast: bool, gap_s: float) -> dict[str, Any]:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    engine = Engine(_config(rx.getsockname()[1]), feed=False, context_store=False)
    out = np.zeros(len(frames), np.int64)
    async with engine:
        if not fast:
            engine._invokes = ()  # the batcher + pipeline path
        for i, f in enumerate(frames):
            t0 = time.perf_counter_ns()
            engine.on_frame(f, 0)
            engine.end_of_burst()
            out[i] = time.perf_counter_ns() - t0
            if gap_s:
                time.sleep(gap_s)  # the core idles, as between frames at a low rate
        snap = engine.snapshot()
    rx.close()
    assert snap["signals"] > 0 and (snap["batches"] > 0)
    return {"samples": out[WARMUP:], "signals": snap["signals"]}


@pytest.mark.benchmark(group="engine-frame")
@pytest.mark.parametrize("gap_ms", [0.0, 1.0], ids=["back-to-back", "1ms-gap"])
def test_frame_to_published(benchmark: Any, gap_ms: float) -> None:
    frames = render_frames(SYMBOLS, n_frames=N_FRAMES, seed=3, max_messages=9)
    results: dict[str, Any] = {}

    def run() -> None:
        order = (("batcher", False), ("fast", True), ("batcher2", False), ("fast2", True))
        for name, fast in order:  # alternating: drift on a shared machine hits both
            results[name] = uvloop.run(_per_frame_ns(frames, fast=fast, gap_s=gap_ms / 1000))

    benchmark.pedantic(run, rounds=1, iterations=1)
    fast = np.concatenate([results["fast"]["samples"], results["fast2"]["samples"]])
    slow = np.concatenate([results["batcher"]["samples"], results["batcher2"]["samples"]])
    pf, ps = percentiles(fast, 1000.0), percentiles(slow, 1000.0)
    info = benchmark.extra_info
    for q in ("p50_ns", "p99_ns", "p99_9_ns"):
        key = q.removesuffix("_ns")
        info[f"fast_{key}_us"] = pf[q]
        info[f"batcher_{key}_us"] = ps[q]
        info[f"ratio_{key}"] = ps[q] / pf[q]
    info["signals_equal"] = results["fast"]["signals"] == results["batcher"]["signals"]
    assert info["signals_equal"]


STAGES = ("parse", "kernel", "halts", "mark", "stage", "invoke", "finish", "pack_publish")


async def _stage_ns(frames: list[bytes]) -> dict[str, npt.NDArray[np.int64]]:
    """The fast path's calls made one by one, each timed (what ``on_frame`` + burst end do)."""
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    engine = Engine(_config(rx.getsockname()[1]), feed=False, context_store=False)
    t = np.zeros((len(frames), len(STAGES) + 1), np.int64)
    clock = time.perf_counter_ns
    async with engine:
        em, parser, kernel, halts = engine.emitter, engine.parser, engine.kernel, engine.halts
        version = engine.embedded.version("stable")
        for i, f in enumerate(frames):
            row = t[i]
            row[0] = clock()
            n = parser.parse_json(f)
            row[1] = clock()
            touched = parser.touched
            kernel.update(touched, n)
            row[2] = clock()
            halts.update(touched[:n])
            row[3] = clock()
            em.mark(touched, n, int(row[0]))
            row[4] = clock()
            k = em.stage()
            row[5] = clock()
            if k >= 0:
                engine._invokes[k]()
            row[6] = clock()
            seq0 = engine._sequence
            m = em.finish(seq0, time.time_ns(), clock(), version) if k >= 0 else 0
            row[7] = clock()
            if m:
                engine._sequence = seq0 + m
                engine._emit(m, seq0 + 1)
            row[8] = clock()
    rx.close()
    d = np.diff(t[WARMUP:], axis=1)
    out = {name: d[:, j] for j, name in enumerate(STAGES)}
    out["total"] = t[WARMUP:, -1] - t[WARMUP:, 0]
    return out


@pytest.mark.benchmark(group="engine-stages")
def test_where_the_time_goes(benchmark: Any) -> None:
    """Per-stage P50/P99 of the fast path, back to back (warm caches)."""
    frames = render_frames(SYMBOLS, n_frames=N_FRAMES, seed=3, max_messages=9)
    got: dict[str, npt.NDArray[np.int64]] = {}

    def run() -> None:
        got.update(uvloop.run(_stage_ns(frames)))

    benchmark.pedantic(run, rounds=1, iterations=1)
    for name, samples in got.items():
        p = percentiles(samples, 1000.0)
        benchmark.extra_info[f"{name}_p50_us"] = p["p50_ns"]
        benchmark.extra_info[f"{name}_p99_us"] = p["p99_ns"]
    assert got["total"].shape[0] == N_FRAMES - WARMUP


if __name__ == "__main__":  # quick look without pytest
    fr = render_frames(SYMBOLS, n_frames=N_FRAMES, seed=3, max_messages=9)
    for fast_path in (False, True):
        r = asyncio.run(_per_frame_ns(fr, fast=fast_path, gap_s=0.0))
        print(fast_path, percentiles(r["samples"], 1000.0))
