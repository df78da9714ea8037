"""pack: ns/signal of the Rust signal codec versus ``struct.pack`` + ``crc32c.crc32c`` per signal.

Groups (each side by side in one run, same data, outputs compared byte for byte):

- ``pack-batch``: ``pack_into(records, out)`` of 1,000 signals into a reused bytearray, versus a
  Python loop of ``Struct.pack_into`` + ``crc32c.crc32c`` per signal into the same kind of buffer
  (rows pre-extracted to tuples outside the timing, which favours the baseline). Target: at most
  10 ns/signal for the batch.
- ``pack-single``: ``pack_signal(*fields)`` versus ``Struct.pack`` + ``crc32c`` + concatenation
  for one signal. Target: no slower than the baseline.
- ``unpack-batch`` and ``frame-moldudp64``: validating decode of 1,000 signals versus a
  ``struct.unpack_from`` + CRC check loop, and MoldUDP64 framing of the packed batch.

``extra_info`` records P50/P99/P99.9 per signal (sampled per call with ``perf_counter_ns``), the
baseline's percentiles and the ratio baseline / ours (> 1 means we are faster).

Run: ``.venv/bin/pytest bench/test_bench_pack.py --benchmark-disable-gc``
(``RF_BENCH_SMOKE=1`` shrinks sizes and sample counts).
"""

from __future__ import annotations

import struct
from typing import Any

import crc32c
import numpy as np
import pytest

import relentless_fast_signal as rs
from bench.latency import SMOKE, percentiles, sample_ns, scaled

N_SIGNALS = scaled(1_000, 50)
N_SAMPLES = scaled(20_000, 50)
BODY = struct.Struct(">HBBIQQQffffBBHHHI")
CRC = struct.Struct(">I")


def make_records(n: int) -> np.ndarray:
    rng = np.random.default_rng(2026)
    recs = np.zeros(n, rs.SIGNAL_RECORD_DTYPE)
    recs["action"] = rng.integers(0, 3, n)
    recs["symbol_id"] = rng.integers(0, 8_000, n)
    recs["sequence"] = np.arange(1, n + 1)
    recs["event_ts_ns"] = 1_764_000_000_000_000_000 + np.arange(n) * 1_000
    recs["emit_ts_ns"] = recs["event_ts_ns"] + 25_000
    recs["confidence"] = rng.random(n, dtype=np.float32)
    recs["price_target"] = (rng.random(n) * 500 + 1).astype(np.float32)
    recs["stop_loss"] = recs["price_target"] * np.float32(0.98)
    recs["position_size"] = rng.random(n, dtype=np.float32)
    recs["risk_score"] = rng.integers(0, 256, n)
    recs["urgency"] = rng.integers(0, 256, n)
    recs["strategy_id"] = 3
    recs["model_version"] = 2
    recs["flags"] = rng.integers(0, 32, n)
    recs["context_version"] = 20_260_101
    return recs


def baseline_pack_into(rows: list[tuple[Any, ...]], out: bytearray) -> None:
    """What a user writes without the codec: struct + crc32c per signal."""
    mv = memoryview(out)
    for i, row in enumerate(rows):
        off = 64 * i
        BODY.pack_into(out, off, rs.MAGIC, rs.LAYOUT_VERSION, *row)
        CRC.pack_into(out, off + 60, crc32c.crc32c(mv[off : off + 60]))


def baseline_pack_one(row: tuple[Any, ...]) -> bytes:
    body = BODY.pack(rs.MAGIC, rs.LAYOUT_VERSION, *row)
    return body + CRC.pack(crc32c.crc32c(body))


def baseline_unpack(buf: bytes) -> list[tuple[Any, ...]]:
    out = []
    mv = memoryview(buf)
    for off in range(0, len(buf), 64):
        fields = BODY.unpack_from(buf, off)
        if fields[0] != rs.MAGIC or fields[1] != rs.LAYOUT_VERSION:
            raise ValueError(off)
        if CRC.unpack_from(buf, off + 60)[0] != crc32c.crc32c(mv[off : off + 60]):
            raise ValueError(off)
        out.append(fields[2:])
    return out


def record_ratio(benchmark: Any, ours: dict[str, float], base: dict[str, float]) -> None:
    benchmark.extra_info.update({f"ours_{k}": v for k, v in ours.items()})
    benchmark.extra_info.update({f"baseline_{k}": v for k, v in base.items()})
    benchmark.extra_info["ratio_p50_baseline_over_ours"] = base["p50_ns"] / ours["p50_ns"]
    benchmark.extra_info["build_profile"] = rs.build_profile
    benchmark.extra_info["smoke"] = SMOKE


@pytest.fixture(scope="module")
def records() -> np.ndarray:
    if rs.build_profile != "release" and not SMOKE:
        pytest.skip("relentless_fast_signal is a debug build: benchmarks need --release")
    return make_records(N_SIGNALS)


def test_pack_batch(benchmark: Any, records: np.ndarray) -> None:
    rows = records.tolist()
    out = bytearray(64 * len(records))
    ref = bytearray(64 * len(records))
    baseline_pack_into(rows, ref)
    n = len(records)
    ours = percentiles(sample_ns(lambda: rs.pack_into(records, out), N_SAMPLES // 10), n)
    base = percentiles(sample_ns(lambda: baseline_pack_into(rows, ref), N_SAMPLES // 100 + 5), n)
    benchmark.group = "pack-batch"
    benchmark.extra_info["signals"] = n
    benchmark(rs.pack_into, records, out)
    assert out == ref
    benchmark.extra_info["correct"] = True
    record_ratio(benchmark, ours, base)


def test_pack_batch_baseline(benchmark: Any, records: np.ndarray) -> None:
    rows = records.tolist()
    out = bytearray(64 * len(records))
    benchmark.group = "pack-batch"
    benchmark.extra_info["signals"] = len(records)
    benchmark(baseline_pack_into, rows, out)
    assert bytes(out) == rs.pack(records)
    benchmark.extra_info["correct"] = True


def test_pack_single(benchmark: Any, records: np.ndarray) -> None:
    row = records[:1].tolist()[0]
    want = baseline_pack_one(row)
    ours = percentiles(sample_ns(lambda: rs.pack_signal(*row), N_SAMPLES))
    base = percentiles(sample_ns(lambda: baseline_pack_one(row), N_SAMPLES))
    benchmark.group = "pack-single"
    got = benchmark(rs.pack_signal, *row)
    assert got == want
    benchmark.extra_info["correct"] = True
    record_ratio(benchmark, ours, base)


def test_pack_single_baseline(benchmark: Any, records: np.ndarray) -> None:
    row = records[:1].tolist()[0]
    benchmark.group = "pack-single"
    got = benchmark(baseline_pack_one, row)
    assert got == rs.pack_signal(*row)
    benchmark.extra_info["correct"] = True


def test_unpack_batch(benchmark: Any, records: np.ndarray) -> None:
    wire = rs.pack(records)
    n = len(records)
    ours = percentiles(sample_ns(lambda: rs.unpack(wire), N_SAMPLES // 10), n)
    base = percentiles(sample_ns(lambda: baseline_unpack(wire), N_SAMPLES // 100 + 5), n)
    benchmark.group = "unpack-batch"
    got = benchmark(rs.unpack, wire)
    assert got.tobytes() == records.tobytes()
    assert [tuple(r) for r in got.tolist()] == baseline_unpack(wire)
    benchmark.extra_info["correct"] = True
    record_ratio(benchmark, ours, base)


def test_frame_moldudp64(benchmark: Any, records: np.ndarray) -> None:
    wire = rs.pack(records)
    enc = rs.MoldUDP64Encoder("BENCH")
    out = bytearray(enc.framed_size(len(records)))

    def frame() -> list[tuple[int, int]]:
        enc.next_sequence = 1
        return enc.encode_signals(wire, out)

    ours = percentiles(sample_ns(frame, N_SAMPLES // 10), len(records))
    benchmark.group = "frame-moldudp64"
    spans = benchmark(frame)
    back = b"".join(m for s, n in spans for m in rs.moldudp64_decode(out[s : s + n]).messages)
    assert back == wire
    benchmark.extra_info["correct"] = True
    benchmark.extra_info["packets"] = len(spans)
    benchmark.extra_info.update({f"ours_{k}": v for k, v in ours.items()})
