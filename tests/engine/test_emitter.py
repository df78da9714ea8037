"""The native emit path (ext/_emit.pyx): the model-output mapping, row staging, chunking, and
equality of the embedded fast path with the batcher path on the same frames."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from relentless_fast._emit import (
    FLAG_CONTEXT_STALE,
    FLAG_HALTED,
    LULD_FLAG,
    LULD_SUPPRESS,
    Emitter,
    fill_model_fields,
)
from relentless_fast.engine import Engine
from relentless_fast.engine.core import load_embedded
from relentless_fast.engine.sources import SyntheticSource
from relentless_fast.inference import batch as batch_flags
from relentless_fast.inference.embedded import EmbeddedBackend
from relentless_fast.model_contract import OUTPUT_NAMES
from relentless_fast.signals import SIGNAL_RECORD_DTYPE
from tests.engine.conftest import make_config
from tests.engine.test_engine import T0, Collector, frame, trade


def reference_model_fields(
    out: dict[str, npt.NDArray[np.float32]], price: npt.NDArray[np.float64]
) -> npt.NDArray[np.void]:
    """The mapping written with numpy (the engine's Python implementation before the native
    one): the reference the native code must equal bit for bit."""
    rec = np.zeros(price.shape[0], SIGNAL_RECORD_DTYPE)

    def unit(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return np.minimum(np.maximum(x, 0.0), 1.0)

    rec["action"] = out["action_probs"].argmax(axis=1)
    rec["confidence"] = out["confidence"]
    rec["price_target"] = price * (1.0 + out["price_target_rel"])
    rec["stop_loss"] = price * (1.0 + out["stop_loss_rel"])
    rec["position_size"] = unit(out["position_size"])
    rec["risk_score"] = np.rint(unit(out["risk_score"]) * 255.0)
    rec["urgency"] = np.rint(unit(out["urgency"]) * 255.0)
    return rec


def random_outputs(n: int, seed: int) -> dict[str, npt.NDArray[np.float32]]:
    rng = np.random.default_rng(seed)
    probs = rng.random((n, 3), dtype=np.float32)
    probs[::7] = np.float32(1 / 3)  # ties: the first maximum wins
    out = {"action_probs": probs}
    for name in OUTPUT_NAMES[1:]:
        out[name] = rng.uniform(-0.5, 1.5, n).astype(np.float32)  # beyond 0..1 on both sides
    return out


def test_model_fields_equal_the_numpy_reference() -> None:
    n = 500
    out = random_outputs(n, seed=3)
    price = np.random.default_rng(4).uniform(0.5, 130_000.0, n)
    rec = np.zeros(n, SIGNAL_RECORD_DTYPE)
    fill_model_fields(rec, out, price)
    assert rec.tobytes() == reference_model_fields(out, price).tobytes()
    assert (rec["action"][::7] == 0).all()


def test_model_fields_reject_bad_shapes() -> None:
    out = random_outputs(3, seed=1)
    with pytest.raises(ValueError, match="rows"):
        fill_model_fields(np.zeros(4, SIGNAL_RECORD_DTYPE), out, np.ones(4))
    out["action_probs"] = np.zeros((3, 2), np.float32)
    with pytest.raises(ValueError, match="columns"):
        fill_model_fields(np.zeros(3, SIGNAL_RECORD_DTYPE), out, np.ones(3))
    with pytest.raises(ValueError, match="SIGNAL_RECORD_DTYPE"):
        fill_model_fields(np.zeros(3, np.int64), random_outputs(3, seed=1), np.ones(3))


class World:
    """The arrays an engine gives its emitter, for 6 symbols and 2 buckets of 2 and 4 rows."""

    def __init__(self, *, suppress_halted: bool = True, luld: int = LULD_FLAG) -> None:
        s, f, c = 6, 3, 2
        self.features = np.arange(s * f, dtype=np.float32).reshape(s, f)
        self.last_price = np.array([10.0, 20.0, np.nan, 40.0, 50.0, 60.0])
        self.event_ts = np.arange(s, dtype=np.int64) + 1000
        self.halted = np.zeros(s, np.bool_)
        self.limit_up = np.full(s, np.inf)
        self.limit_down = np.full(s, -np.inf)
        self.records = np.zeros(8, SIGNAL_RECORD_DTYPE)
        self.em = Emitter(
            self.features, self.last_price, self.event_ts, self.halted, self.limit_up,
            self.limit_down, self.records, strategy_id=7, suppress_halted=suppress_halted,
            luld_policy=luld, latency_samples=16,
        )  # fmt: skip
        self.context = (np.arange(s * c, dtype=np.float32).reshape(s, c) + 0.5, 3, False)
        self.em.set_context(*self.context)
        self.buckets: list[tuple[np.ndarray[Any, Any], ...]] = []
        for size in (2, 4):
            ticks = np.zeros((size, f), np.float32)
            ctx = np.zeros((size, c), np.float32)
            outs = tuple(
                np.zeros((size, 3) if name == "action_probs" else size, np.float32)
                for name in OUTPUT_NAMES
            )
            self.em.add_bucket(ticks, ctx, outs)
            self.buckets.append((ticks, ctx, *outs))

    def mark(self, *ids: int, t0: int = 5) -> None:
        self.em.mark(np.array(ids, np.uint32), len(ids), t0)

    def invoke(self, k: int, buy: bool = True) -> None:
        """A fake model: buy (or sell), confidence = first feature / 100, target +1%."""
        ticks, _ctx, probs, conf, target, stop, size, risk, urgency = self.buckets[k]
        probs[:] = [0.1, 0.8, 0.1] if buy else [0.1, 0.1, 0.8]
        conf[:] = ticks[:, 0] / 100.0
        target[:] = 0.01
        stop[:] = -0.01
        size[:] = 0.5
        risk[:] = 0.2
        urgency[:] = 2.0


def test_stage_writes_rows_and_context_into_the_smallest_bucket() -> None:
    w = World()
    w.mark(4, 1, 4)  # 4 twice: one row, its newest state
    w.mark(3, t0=9)
    assert w.em.merged == 1
    assert w.em.stage() == 1  # 3 rows: the bucket of 4
    ticks, ctx = w.buckets[1][:2]
    assert w.em.ids[:3].tolist() == [1, 3, 4]  # id order
    np.testing.assert_array_equal(ticks[:3], w.features[[1, 3, 4]])
    np.testing.assert_array_equal(ctx[:3], w.context[0][[1, 3, 4]])
    w.invoke(1)
    m = w.em.finish(100, 123, 50, 2)
    assert m == 3
    rec = w.records[:3]
    assert rec["symbol_id"].tolist() == [1, 3, 4]
    assert rec["sequence"].tolist() == [101, 102, 103]
    assert rec["event_ts_ns"].tolist() == [1001, 1003, 1004]
    assert (rec["action"] == 1).all() and (rec["emit_ts_ns"] == 123).all()
    np.testing.assert_allclose(rec["price_target"], [20.2, 40.4, 50.5], rtol=1e-6)
    assert (rec["urgency"] == 255).all() and (rec["strategy_id"] == 7).all()
    assert (rec["context_version"] == 3).all() and (rec["model_version"] == 2).all()
    assert (rec["flags"] == 0).all()
    assert w.em.latency_ns[:3].tolist() == [45, 41, 45]  # now - each symbol's frame t0
    assert w.em.stage_next() == -1 and w.em.stage() == -1  # nothing left, nothing pending


def test_more_rows_than_the_largest_bucket_go_in_chunks() -> None:
    w = World()
    w.last_price[2] = 30.0
    w.mark(0, 1, 2, 3, 4, 5)
    seq = 0
    chunks = []
    k = w.em.stage()
    while k >= 0:
        w.invoke(k)
        m = w.em.finish(seq, 1, 1, 1)
        chunks.append(w.records[:m]["sequence"].tolist())
        seq += m
        k = w.em.stage_next()
    assert chunks == [[1, 2, 3, 4], [5, 6]]
    assert w.em.batches == 2 and w.em.rows == 6


def test_policies_no_price_halt_and_luld() -> None:
    w = World(luld=LULD_SUPPRESS)
    w.halted[1] = True
    w.limit_up[3] = 40.0  # symbol 3 trades at 40: at its band
    w.mark(0, 1, 2, 3)
    assert w.em.stage() == 1  # 3 rows: 1 is halted (no row); 2 has no price yet
    w.invoke(1)
    assert w.em.finish(0, 1, 1, 1) == 1
    assert w.records[0]["symbol_id"] == 0
    assert (w.em.suppressed_halted, w.em.suppressed_no_price, w.em.suppressed_luld) == (1, 1, 1)

    w = World(suppress_halted=False, luld=LULD_FLAG)
    w.em.set_context(np.zeros((6, 2), np.float32), 0, True)
    w.halted[1] = True
    w.limit_down[3] = 41.0
    w.mark(0, 1, 3)
    k = w.em.stage()
    w.invoke(k)
    assert w.em.finish(0, 1, 1, 1) == 3
    flags = w.records[:3]["flags"].tolist()
    stale_halted = FLAG_CONTEXT_STALE | FLAG_HALTED
    assert flags == [FLAG_CONTEXT_STALE, stale_halted, stale_halted]


def test_discard_and_bad_input() -> None:
    w = World()
    w.mark(0, 1)
    assert w.em.discard() == 2 and w.em.stage() == -1
    with pytest.raises(ValueError, match="out of range"):
        w.mark(6)
    with pytest.raises(ValueError, match="exceeds"):
        w.em.mark(np.zeros(2, np.uint32), 3, 0)
    with pytest.raises(ValueError, match="context rows"):
        w.em.set_context(np.zeros((5, 2), np.float32), 1, False)
    with pytest.raises(ValueError, match="C=3"):
        w.em.set_context(np.zeros((6, 3), np.float32), 1, False)
    with pytest.raises(ValueError, match="increasing"):
        w.em.add_bucket(*w.buckets[0][:2], tuple(w.buckets[0][2:]))
    with pytest.raises(ValueError, match="out of range"):
        w.em.fill(
            np.array([9], np.int32), np.zeros(1, np.uint16), np.zeros((1, 3), np.float32),
            *(np.zeros(1, np.float32) for _ in range(6)),
            context_version=0, model_version=1, seq0=0, emit_ts_ns=0, now_ns=0,
        )  # fmt: skip


def test_flag_constants_match_the_inference_layer() -> None:
    assert FLAG_CONTEXT_STALE == batch_flags.FLAG_CONTEXT_STALE
    assert FLAG_HALTED == batch_flags.FLAG_HALTED


async def _signals(
    frames: list[bytes], embedded: EmbeddedBackend, *, fast: bool
) -> npt.NDArray[np.void]:
    got = Collector()
    config = make_config(**{"inference.flush_each_frame": "true"})
    engine = Engine(config, feed=lambda s: SyntheticSource(frames, s), embedded=embedded,
                    on_signals=got, context_store=False)  # fmt: skip
    async with engine:
        if not fast:
            engine._invokes = ()  # the batcher + pipeline path
        await engine.wait()
    assert (engine.emitter.batches > 0) == fast
    return got.records()


async def test_fast_path_equals_the_batcher_path(frames: list[bytes]) -> None:
    embedded = load_embedded(make_config())  # a private one: this test swaps engine paths
    fast = await _signals(frames, embedded, fast=True)
    slow = await _signals(frames, embedded, fast=False)
    assert fast.shape[0] > 100
    fast["emit_ts_ns"] = 0
    slow["emit_ts_ns"] = 0
    assert fast.tobytes() == slow.tobytes()


async def test_a_failing_invoke_is_counted_and_the_engine_goes_on(
    embedded: EmbeddedBackend,
) -> None:
    got = Collector()
    engine = Engine(make_config(), feed=False, embedded=embedded, on_signals=got,
                    context_store=False)  # fmt: skip
    async with engine:
        good = engine._invokes

        def broken() -> None:
            raise RuntimeError("invoke failed")

        engine._invokes = tuple(broken for _ in good)
        engine.on_frame(frame(trade("AAPL", 100.0, T0)), 0)
        engine.end_of_burst()
        assert got.batches == []
        engine._invokes = good
        engine.on_frame(frame(trade("AAPL", 101.0, T0 + 1)), 0)
        engine.end_of_burst()
    assert engine.snapshot()["inference_drops"] == {"backend_error": 1}
    assert got.records()["sequence"].tolist() == [1]
