"""inference: request encoding, embedded LiteRT, batcher throughput, gRPC round trip.

Every group runs our code and its named baseline side by side in one run and records the ratio
(``extra_info``: P50/P99 of both, ``speedup_p50``, a correctness check):

- ``encode``: our ``PredictRequestEncoder`` vs ``tf.make_tensor_proto`` + ``predict_pb2``
  ``SerializeToString`` (same bytes; target >= 10x at every B).
- ``embedded``: LiteRT (one fixed-size interpreter per bucket) vs the SavedModel's
  ``serving_default`` called in process (same outputs within 1e-5; target >= 50x at B=1).
- ``batcher``: MicroBatcher + embedded LiteRT, rows/s sustained and P99 row latency (submit to
  result) at windows 50 us / 200 us / 1 ms, with and without coalescing, on the shipped model;
  frames of ``FRAME_ROWS`` rows, ``end_of_burst`` every ``BURST_FRAMES`` frames, one core. The
  baseline is the former numpy queue (``NumpyMicroBatcher``, kept in this file only), fed the
  same frames in alternating passes (``speedup`` = rows/s ratio). ``batcher-queue``: the same
  without the model (dispatch counts the batch), plus a check that both give the same batches.
- ``roundtrip``: ``GrpcBackend.predict`` (our wire codec, grpc.aio) vs the official stub with
  ``make_tensor_proto`` / ``make_ndarray``, against ``serve-model`` on loopback.

Run: ``.venv/bin/pytest bench/test_bench_inference.py --benchmark-disable-gc``
(``RF_BENCH_SMOKE=1`` shrinks sample counts).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.latency import percentiles, sample_ns, scaled
from relentless_fast.inference.batch import (
    FLAG_COALESCED,
    Batch,
    BatchResult,
    DropReason,
    InferenceCounters,
)
from relentless_fast.inference.batcher import MicroBatcher
from relentless_fast.inference.embedded import EmbeddedBackend, LiteRTModel
from relentless_fast.inference.pipeline import InferencePipeline
from relentless_fast.inference.wire import (
    PredictRequestEncoder,
    PredictResponseDecoder,
    decode_predict_response,
)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow")
predict_pb2 = pytest.importorskip("tensorflow_serving.apis.predict_pb2")

MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "relentless_financial"
V1 = MODEL_DIR / "1"
if not (V1 / "saved_model.pb").exists():
    pytest.skip(
        "shipped model not exported (models/relentless_financial/1)", allow_module_level=True
    )

SIZES = (1, 32, 128)
N_SAMPLES = scaled(2000, 50)


def _ratio_info(ours_ns: np.ndarray, base_ns: np.ndarray, scale: float = 1.0) -> dict[str, Any]:
    o, b = percentiles(ours_ns, scale), percentiles(base_ns, scale)
    return {
        "ours_p50_ns": o["p50_ns"],
        "ours_p99_ns": o["p99_ns"],
        "ours_p99_9_ns": o["p99_9_ns"],
        "baseline_p50_ns": b["p50_ns"],
        "baseline_p99_ns": b["p99_ns"],
        "speedup_p50": b["p50_ns"] / o["p50_ns"],
        "speedup_p99": b["p99_ns"] / o["p99_ns"],
    }


@pytest.fixture(scope="module")
def model() -> LiteRTModel:
    return LiteRTModel.from_version_dir(V1, batch_sizes=(1, 8, 32, 128))


def _rows(model: LiteRTModel, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        (rng.standard_normal((n, model.n_features)) * 0.1).astype(np.float32),
        (rng.standard_normal((n, model.context_dim)) * 0.1).astype(np.float32),
    )


# -- encode -------------------------------------------------------------------------------


def _official_encode(ticks: np.ndarray, context: np.ndarray) -> bytes:
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "relentless_financial"
    req.model_spec.version_label = "stable"
    req.model_spec.signature_name = "serving_default"
    req.inputs["ticks"].CopyFrom(tf.make_tensor_proto(ticks))
    req.inputs["context"].CopyFrom(tf.make_tensor_proto(context))
    out: bytes = req.SerializeToString()
    return out


@pytest.mark.parametrize("batch", SIZES)
def test_encode_ours_vs_make_tensor_proto(benchmark: Any, model: LiteRTModel, batch: int) -> None:
    benchmark.group = f"inference-encode-B{batch}"
    ticks, context = _rows(model, batch)
    enc = PredictRequestEncoder(
        "relentless_financial",
        {"ticks": (model.n_features,), "context": (model.context_dim,)},
        version_label="stable",
    )
    correct = predict_pb2.PredictRequest.FromString(
        enc.encode(ticks, context)
    ) == predict_pb2.PredictRequest.FromString(_official_encode(ticks, context))
    ours = sample_ns(lambda: enc.encode(ticks, context), N_SAMPLES)
    base = sample_ns(lambda: _official_encode(ticks, context), N_SAMPLES)
    benchmark.extra_info.update(_ratio_info(ours, base), correct=correct, batch=batch)
    benchmark(enc.encode, ticks, context)
    assert correct


# -- embedded -----------------------------------------------------------------------------


@pytest.mark.parametrize("batch", SIZES)
def test_embedded_litert_vs_saved_model(benchmark: Any, model: LiteRTModel, batch: int) -> None:
    benchmark.group = f"inference-embedded-B{batch}"
    fn = tf.saved_model.load(str(V1)).signatures["serving_default"]
    ticks, context = _rows(model, batch)

    def saved_model_call() -> dict[str, np.ndarray]:
        out = fn(ticks=tf.constant(ticks), context=tf.constant(context))
        return {k: v.numpy() for k, v in out.items()}

    want = saved_model_call()
    got = model.predict(ticks, context)
    max_diff = max(float(np.max(np.abs(got[k] - want[k]))) for k in want)
    n = scaled(1000, 30)
    ours = sample_ns(lambda: model.predict(ticks, context), n)
    base = sample_ns(saved_model_call, scaled(300, 20), warmup=20)
    benchmark.extra_info.update(_ratio_info(ours, base), max_abs_diff=max_diff, batch=batch)
    benchmark(model.predict, ticks, context)
    assert max_diff < 1e-3


# -- batcher + embedded -------------------------------------------------------------------

N_SYMBOLS = 2000
FRAME_ROWS = 32
BURST_FRAMES = 4


def _flops_per_row(model: LiteRTModel) -> int:
    """2 x multiply-adds of the model's fully connected layers for one row."""
    interp = model._buckets[0].interp
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    flops = 0
    for op in interp._get_ops_details():
        if op["op_name"] == "FULLY_CONNECTED":
            w = tensors[op["inputs"][1]]["shape"]
            flops += 2 * int(w[0]) * int(w[1])
    return flops


class _Stream:
    """One batcher fed a fixed stream of frames; :meth:`run` times one pass (rows delivered/s)."""

    def __init__(
        self,
        impl: type[MicroBatcher] | type[NumpyMicroBatcher],
        embedded: EmbeddedBackend | None,
        ids: np.ndarray,
        ticks: np.ndarray,
        context: np.ndarray,
        window_us: int,
        coalesce: bool,
    ) -> None:
        self.latencies: list[np.ndarray] = []
        self.delivered = 0
        self.batches = 0
        self.coalesced_pct = 0.0
        self.ids, self.ticks, self.context = ids, ticks, context
        self.ets = np.arange(ticks.shape[0], dtype=np.int64)
        counters = InferenceCounters()
        if embedded is not None:
            self.pipe = InferencePipeline(
                on_result=self._on_result, embedded=embedded, counters=counters
            )
            dispatch: Callable[[Batch], None] = self.pipe.dispatch
        else:  # queue only: the batch is counted and dropped
            dispatch = self._on_batch
        self.counters = counters
        self.batcher = impl(
            n_symbols=N_SYMBOLS,
            n_features=ticks.shape[1],
            context_dim=context.shape[1],
            window_us=window_us,
            max_batch=128,
            queue_rows=4096,
            coalesce=coalesce,
            dispatch=dispatch,
            counters=counters,
        )

    def _on_result(self, r: BatchResult) -> None:
        self.latencies.append(r.done_ns - r.arrival_ns)
        self.delivered += len(r)
        self.batches += 1

    def _on_batch(self, b: Batch) -> None:
        self.latencies.append(time.perf_counter_ns() - b.arrival_ns)
        self.delivered += len(b)
        self.batches += 1
        self.counters.rows_delivered += len(b)

    def run(self) -> float:
        """One pass over the frames; returns rows delivered per second."""
        self.latencies.clear()
        self.delivered = self.batches = 0
        c = self.counters
        submitted0, coalesced0 = c.rows_submitted, c.rows_coalesced
        batcher, ids, ticks, context, ets = (
            self.batcher,
            self.ids,
            self.ticks,
            self.context,
            self.ets,
        )
        t0 = time.perf_counter_ns()
        for f in range(ids.shape[0]):
            batcher.submit(ids[f], ticks, context, ets)
            if f % BURST_FRAMES == BURST_FRAMES - 1:
                batcher.end_of_burst()
        batcher.flush()
        elapsed = (time.perf_counter_ns() - t0) / 1e9
        self.coalesced_pct = (
            100.0 * (c.rows_coalesced - coalesced0) / (c.rows_submitted - submitted0)
        )
        return self.delivered / elapsed

    @property
    def accounted(self) -> bool:
        c = self.counters
        return c.rows_submitted == c.rows_delivered + c.rows_coalesced + c.rows_dropped


def _side_by_side(ours: _Stream, base: _Stream, rounds: int) -> dict[str, Any]:
    """Alternate passes of both (so machine load hits both alike); best pass of each."""
    ours.run(), base.run()  # warm
    best_ours = best_base = 0.0
    lat_ours: np.ndarray = np.zeros(1, np.int64)
    lat_base: np.ndarray = np.zeros(1, np.int64)
    for _ in range(rounds):
        r = ours.run()
        if r > best_ours:
            best_ours, lat_ours = r, np.concatenate(ours.latencies)
        r = base.run()
        if r > best_base:
            best_base, lat_base = r, np.concatenate(base.latencies)
    o, b = percentiles(lat_ours), percentiles(lat_base)
    return {
        "rows_per_s": best_ours,
        "baseline_rows_per_s": best_base,
        "speedup": best_ours / best_base,
        "row_latency_p50_ns": o["p50_ns"],
        "row_latency_p99_ns": o["p99_ns"],
        "row_latency_p99_9_ns": o["p99_9_ns"],
        "baseline_row_latency_p50_ns": b["p50_ns"],
        "baseline_row_latency_p99_ns": b["p99_ns"],
        "baseline_row_latency_p99_9_ns": b["p99_9_ns"],
        "mean_batch": ours.delivered / ours.batches,
        "coalesced_pct": ours.coalesced_pct,
        "accounted": ours.accounted and base.accounted,
    }


def _frames(n_frames: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, N_SYMBOLS, (n_frames, FRAME_ROWS)).astype(np.int32)


@pytest.mark.parametrize("coalesce", [False, True], ids=["no-coalesce", "coalesce"])
@pytest.mark.parametrize("window_us", [50, 200, 1000])
def test_batcher_embedded_throughput(
    benchmark: Any, model: LiteRTModel, window_us: int, coalesce: bool
) -> None:
    """MicroBatcher (compiled queue) vs the former numpy queue, both feeding embedded LiteRT."""
    benchmark.group = "inference-batcher"
    embedded = EmbeddedBackend(model)
    ids = _frames(scaled(4000, 40))
    ticks, context = _rows(model, FRAME_ROWS)
    embedded.warmup()
    args = (embedded, ids, ticks, context, window_us, coalesce)
    ours = _Stream(MicroBatcher, *args)
    base = _Stream(NumpyMicroBatcher, *args)
    info = _side_by_side(ours, base, scaled(4, 1))
    benchmark.extra_info.update(
        info,
        flops_per_row=_flops_per_row(model),
        frame_rows=FRAME_ROWS,
        burst_frames=BURST_FRAMES,
        window_us=window_us,
    )
    benchmark.pedantic(ours.run, rounds=scaled(3, 1), iterations=1)
    assert info["accounted"]


@pytest.mark.parametrize("coalesce", [False, True], ids=["no-coalesce", "coalesce"])
def test_batcher_queue_only(benchmark: Any, coalesce: bool) -> None:
    """The queue alone (dispatch counts the batch): compiled vs numpy, and the same batches."""
    benchmark.group = "inference-batcher-queue"
    ids = _frames(scaled(4000, 40))
    ticks = np.random.default_rng(2).standard_normal((FRAME_ROWS, 20)).astype(np.float32)
    context = np.ones((FRAME_ROWS, 16), np.float32)
    ours = _Stream(MicroBatcher, None, ids, ticks, context, 50, coalesce)
    base = _Stream(NumpyMicroBatcher, None, ids, ticks, context, 50, coalesce)
    info = _side_by_side(ours, base, scaled(5, 1))
    same = _same_batches(ids[: scaled(400, 40)], ticks, context, coalesce)
    benchmark.extra_info.update(info, same_batches=same, window_us=50)
    benchmark.pedantic(ours.run, rounds=scaled(5, 1), iterations=1)
    assert info["accounted"] and same


def _same_batches(ids: np.ndarray, ticks: np.ndarray, context: np.ndarray, coalesce: bool) -> bool:
    """Both queues give the same batches for the same frames (a 100 ms window: no timing)."""
    out: dict[str, list[Batch]] = {"ours": [], "base": []}
    counters = {}
    gate = [False]  # whether the backend can take a batch now
    for name, impl in (("ours", MicroBatcher), ("base", NumpyMicroBatcher)):
        b = impl(
            n_symbols=N_SYMBOLS,
            n_features=ticks.shape[1],
            context_dim=context.shape[1],
            window_us=100_000,
            max_batch=128,
            queue_rows=256,  # small: overflow drops happen too
            coalesce=coalesce,
            dispatch=out[name].append,
            has_capacity=lambda: gate[0],
        )
        gate[0] = False
        rng = np.random.default_rng(3)
        for f in range(ids.shape[0]):
            t = ticks + np.float32(f)
            b.submit(ids[f], t, context * f, np.full(FRAME_ROWS, f, np.int64))
            if rng.random() < 0.2:  # the backend frees now and then
                gate[0] = True
                b.flush()
                gate[0] = False
        gate[0] = True
        b.flush()
        counters[name] = b.counters
    fields = ("symbol_ids", "ticks", "context", "event_ts_ns", "flags")
    return (
        len(out["ours"]) == len(out["base"])
        and all(
            np.array_equal(getattr(x, k), getattr(y, k))
            for x, y in zip(out["ours"], out["base"], strict=True)
            for k in fields
        )
        and counters["ours"] == counters["base"]
    )


class NumpyMicroBatcher:
    """Baseline: the micro-batcher as it was before its queue was compiled (numpy per frame).

    Kept here only to measure the compiled queue against it; the submit / end_of_burst / flush
    path of the former ``relentless_fast.inference.batcher.MicroBatcher`` (no loop timers).
    """

    def __init__(
        self,
        *,
        n_symbols: int,
        n_features: int,
        context_dim: int,
        window_us: float,
        max_batch: int,
        queue_rows: int,
        coalesce: bool,
        dispatch: Callable[[Batch], None],
        has_capacity: Callable[[], bool] | None = None,
        counters: InferenceCounters | None = None,
    ) -> None:
        self.window_ns = int(window_us * 1000)
        self.max_batch = max_batch
        self.capacity = queue_rows
        self.coalesce = coalesce
        self.counters = counters if counters is not None else InferenceCounters()
        self._dispatch = dispatch
        self._has_capacity = has_capacity if has_capacity is not None else (lambda: True)
        self._sub_resolution = window_us < 1000.0
        self._seq = 0
        cap = queue_rows
        self._sym = np.zeros(cap, np.int32)
        self._ticks = np.zeros((cap, n_features), np.float32)
        self._ctx = np.zeros((cap, context_dim), np.float32)
        self._event_ts = np.zeros(cap, np.int64)
        self._arrival = np.zeros(cap, np.int64)
        self._enqueued = np.zeros(cap, np.int64)
        self._flags = np.zeros(cap, np.uint16)
        self._slot_of = np.full(n_symbols, -1, np.int32)
        self._stamp = np.zeros(n_symbols, np.int64)
        self._ar = np.arange(cap, dtype=np.int64)
        self._head = 0
        self._count = 0
        self.n_symbols = n_symbols

    def submit(
        self,
        symbol_ids: np.ndarray,
        ticks: np.ndarray,
        context: np.ndarray,
        event_ts_ns: np.ndarray,
        flags: np.ndarray | None = None,
    ) -> None:
        n = int(symbol_ids.shape[0])
        if n == 0:
            return
        self._check(symbol_ids, ticks, context, event_ts_ns, flags)
        now = time.perf_counter_ns()
        self.counters.rows_submitted += n
        if flags is None:
            flags = np.zeros(n, np.uint16)
        if self.coalesce:
            symbol_ids, ticks, context, event_ts_ns, flags = self._dedupe_frame(
                symbol_ids, ticks, context, event_ts_ns, flags
            )
            slots = self._slot_of[symbol_ids]
            hit = slots >= 0
            if hit.any():
                n_hit = int(np.count_nonzero(hit))
                if self._count + symbol_ids.shape[0] - n_hit <= self.capacity:
                    self._scatter(symbol_ids, ticks, context, event_ts_ns, flags, slots, hit, now)
                    self.counters.rows_coalesced += n_hit
                    self._flush_due(now, burst=False)
                    return
                symbol_ids, ticks, context, event_ts_ns, flags = self._replace_pending(
                    symbol_ids, ticks, context, event_ts_ns, flags, slots, hit, now
                )
                self.counters.rows_coalesced += n_hit
        self._append(symbol_ids, ticks, context, event_ts_ns, flags, now)
        self._flush_due(now, burst=False)

    def end_of_burst(self) -> None:
        if self._count:
            self._flush_due(time.perf_counter_ns(), burst=True)

    def flush(self) -> None:
        while self._count and self._has_capacity():
            self._take(min(self._count, self.max_batch), "forced")

    def _check(
        self,
        sym: np.ndarray,
        ticks: np.ndarray,
        ctx: np.ndarray,
        ets: np.ndarray,
        flags: np.ndarray | None,
    ) -> None:
        n = sym.shape[0]
        if (
            sym.ndim != 1
            or ticks.shape != (n, self._ticks.shape[1])
            or ctx.shape != (n, self._ctx.shape[1])
            or ets.shape != (n,)
            or (flags is not None and flags.shape != (n,))
        ):
            raise ValueError("submit: bad shapes")
        if sym.dtype != np.int32:
            raise ValueError(f"submit: symbol_ids must be int32, got {sym.dtype}")
        if (sym.view(np.uint32) >= self.n_symbols).any():
            raise ValueError(f"submit: symbol id outside 0..{self.n_symbols - 1}")

    def _dedupe_frame(
        self,
        sym: np.ndarray,
        ticks: np.ndarray,
        ctx: np.ndarray,
        ets: np.ndarray,
        flags: np.ndarray,
    ) -> tuple[np.ndarray, ...]:
        n = sym.shape[0]
        if n < 2:
            return sym, ticks, ctx, ets, flags
        stamps = self._ar[:n] if n <= self.capacity else np.arange(n, dtype=np.int64)
        self._stamp[sym] = stamps
        if (self._stamp[sym] == stamps).all():
            return sym, ticks, ctx, ets, flags
        order = np.argsort(sym, kind="stable")
        ranked = sym[order]
        same_as_next = ranked[1:] == ranked[:-1]
        if not same_as_next.any():
            return sym, ticks, ctx, ets, flags
        last = np.ones(n, np.bool_)
        last[:-1] = ~same_as_next
        had_dup = np.zeros(n, np.bool_)
        had_dup[1:] = same_as_next
        kept, dup = order[last], had_dup[last]
        by_arrival = np.argsort(kept)
        keep = kept[by_arrival]
        self.counters.rows_coalesced += n - keep.shape[0]
        coalesced = dup[by_arrival].astype(np.uint16) * np.uint16(FLAG_COALESCED)
        return sym[keep], ticks[keep], ctx[keep], ets[keep], flags[keep] | coalesced

    def _scatter(
        self,
        sym: np.ndarray,
        ticks: np.ndarray,
        ctx: np.ndarray,
        ets: np.ndarray,
        flags: np.ndarray,
        slots: np.ndarray,
        hit: np.ndarray,
        now: int,
    ) -> None:
        miss = ~hit
        n_new = sym.shape[0] - int(np.count_nonzero(hit))
        tail = (self._head + self._count) % self.capacity
        if tail + n_new <= self.capacity:
            new_pos = self._ar[tail : tail + n_new]
        else:
            new_pos = (tail + self._ar[:n_new]) % self.capacity
        dest = slots.astype(np.int64)
        dest[miss] = new_pos
        self._ticks[dest] = ticks
        self._ctx[dest] = ctx
        self._event_ts[dest] = ets
        self._arrival[dest] = now
        self._flags[dest] = np.where(hit, flags | FLAG_COALESCED, flags)
        new_sym = sym[miss]
        self._sym[new_pos] = new_sym
        self._enqueued[new_pos] = now
        self._slot_of[new_sym] = new_pos
        self._count += n_new

    def _replace_pending(
        self,
        sym: np.ndarray,
        ticks: np.ndarray,
        ctx: np.ndarray,
        ets: np.ndarray,
        flags: np.ndarray,
        slots: np.ndarray,
        hit: np.ndarray,
        now: int,
    ) -> tuple[np.ndarray, ...]:
        s = slots[hit]
        self._ticks[s] = ticks[hit]
        self._ctx[s] = ctx[hit]
        self._event_ts[s] = ets[hit]
        self._arrival[s] = now
        self._flags[s] = flags[hit] | FLAG_COALESCED
        miss = ~hit
        return sym[miss], ticks[miss], ctx[miss], ets[miss], flags[miss]

    def _append(
        self,
        sym: np.ndarray,
        ticks: np.ndarray,
        ctx: np.ndarray,
        ets: np.ndarray,
        flags: np.ndarray,
        now: int,
    ) -> None:
        m = int(sym.shape[0])
        if m == 0:
            return
        cap = self.capacity
        if m > cap:
            self.counters.drop(DropReason.QUEUE_OVERFLOW, m - cap)
            sym, ticks, ctx, ets, flags = (
                sym[-cap:],
                ticks[-cap:],
                ctx[-cap:],
                ets[-cap:],
                flags[-cap:],
            )
            m = cap
        overflow = self._count + m - cap
        if overflow > 0:
            self._discard_oldest(overflow)
            self.counters.drop(DropReason.QUEUE_OVERFLOW, overflow)
        start = (self._head + self._count) % cap
        pos: slice | np.ndarray = (
            slice(start, start + m) if start + m <= cap else (start + self._ar[:m]) % cap
        )
        self._sym[pos] = sym
        self._ticks[pos] = ticks
        self._ctx[pos] = ctx
        self._event_ts[pos] = ets
        self._arrival[pos] = now
        self._enqueued[pos] = now
        self._flags[pos] = flags
        if self.coalesce:
            self._slot_of[sym] = self._ar[pos] if isinstance(pos, slice) else pos
        self._count += m

    def _positions(self, k: int) -> slice | np.ndarray:
        head = self._head
        if head + k <= self.capacity:
            return slice(head, head + k)
        return (head + self._ar[:k]) % self.capacity

    def _discard_oldest(self, k: int) -> None:
        if self.coalesce:
            self._slot_of[self._sym[self._positions(k)]] = -1
        self._head = (self._head + k) % self.capacity
        self._count -= k

    def _take(self, k: int, reason: str) -> None:
        pos = self._positions(k)
        sym = self._sym[pos].copy()
        if self.coalesce:
            self._slot_of[sym] = -1
        batch = Batch(
            self._seq,
            sym,
            self._ticks[pos].copy(),
            self._ctx[pos].copy(),
            self._event_ts[pos].copy(),
            self._arrival[pos].copy(),
            self._flags[pos].copy(),
        )
        self._seq += 1
        self._head = (self._head + k) % self.capacity
        self._count -= k
        self.counters.flushes[reason] += 1
        self.counters.batches_dispatched += 1
        self._dispatch(batch)

    def _flush_due(self, now: int, *, burst: bool) -> None:
        while self._count >= self.max_batch and self._has_capacity():
            self._take(self.max_batch, "full")
        if not self._count:
            return
        expired = now - int(self._enqueued[self._head]) >= self.window_ns
        if expired or (burst and self._sub_resolution):
            reason = "window" if expired and not burst else "burst"
            while self._count and self._has_capacity():
                self._take(min(self._count, self.max_batch), reason)


# -- round trip ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    launcher = pytest.importorskip("relentless_fast.serving.launcher")
    srv = launcher.ServerProcess(config=MODEL_DIR.parent / "config.pbtxt", rest=False)
    srv.start()
    yield srv
    srv.stop()


@pytest.mark.parametrize("batch", SIZES)
def test_roundtrip_ours_vs_official_stub(
    benchmark: Any, server: Any, model: LiteRTModel, batch: int
) -> None:
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from relentless_fast.inference.grpc_backend import GrpcBackend, GrpcOptions

    benchmark.group = f"inference-roundtrip-B{batch}"
    ticks, context = _rows(model, batch)
    loop = asyncio.new_event_loop()
    backend = GrpcBackend(
        server.grpc_target,
        n_features=model.n_features,
        context_dim=model.context_dim,
        options=GrpcOptions(channels=1),
    )
    loop.run_until_complete(backend.start())
    channel = grpc.insecure_channel(server.grpc_target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

    def official() -> dict[str, np.ndarray]:
        req = predict_pb2.PredictRequest()
        req.model_spec.name = "relentless_financial"
        req.model_spec.version_label = "stable"
        req.model_spec.signature_name = "serving_default"
        req.inputs["ticks"].CopyFrom(tf.make_tensor_proto(ticks))
        req.inputs["context"].CopyFrom(tf.make_tensor_proto(context))
        resp = stub.Predict(req, timeout=10.0)
        return {k: tf.make_ndarray(v) for k, v in resp.outputs.items()}

    async def ours_n(n: int) -> np.ndarray:
        out = np.empty(n, np.int64)
        for i in range(n):
            t0 = time.perf_counter_ns()
            await backend.predict("stable", ticks, context, 10.0)
            out[i] = time.perf_counter_ns() - t0
        return out

    try:
        got, _ = loop.run_until_complete(backend.predict("stable", ticks, context, 10.0))
        want = official()
        max_diff = max(float(np.max(np.abs(got[k] - want[k]))) for k in want)
        n = scaled(500, 20)
        loop.run_until_complete(ours_n(50))
        ours = loop.run_until_complete(ours_n(n))
        base = sample_ns(official, n, warmup=50)
        benchmark.extra_info.update(_ratio_info(ours, base), max_abs_diff=max_diff, batch=batch)
        benchmark.pedantic(
            lambda: loop.run_until_complete(ours_n(1)), rounds=scaled(200, 5), iterations=1
        )
        assert max_diff < 1e-4
    finally:
        channel.close()
        loop.run_until_complete(backend.close())
        loop.close()


def test_decode_response_matches_official(benchmark: Any, model: LiteRTModel) -> None:
    """Decoding a typed (float_val) 128-row response: ours vs ``FromString`` + ``make_ndarray``.

    ``ours`` is the client's decoder (a response layout seen before is read at known offsets
    after checking every non-payload byte); ``full_parse_p50_ns`` is the first-time full parse.
    """
    benchmark.group = "inference-decode-B128"
    outputs = model.predict(*_rows(model, 128))
    resp = predict_pb2.PredictResponse()
    resp.model_spec.name = "relentless_financial"
    resp.model_spec.version.value = 1
    for k, v in outputs.items():
        resp.outputs[k].CopyFrom(tf.make_tensor_proto(v))
        t = resp.outputs[k]
        t.ClearField("tensor_content")
        t.float_val.extend(v.ravel().tolist())
    raw = resp.SerializeToString()

    def official() -> dict[str, np.ndarray]:
        r = predict_pb2.PredictResponse.FromString(raw)
        return {k: tf.make_ndarray(v) for k, v in r.outputs.items()}

    decoder = PredictResponseDecoder()
    decoder.decode(raw)  # the first response of a layout builds its template
    got = decoder.decode(raw).outputs
    want = official()
    correct = decoder.fast_hits == 1 and all(np.array_equal(got[k], want[k]) for k in want)
    ours = sample_ns(lambda: decoder.decode(raw), N_SAMPLES)
    full = sample_ns(lambda: decode_predict_response(raw), N_SAMPLES)
    base = sample_ns(official, N_SAMPLES)
    benchmark.extra_info.update(
        _ratio_info(ours, base),
        full_parse_p50_ns=percentiles(full)["p50_ns"],
        correct=correct,
    )
    benchmark(decoder.decode, raw)
    assert correct
