"""inference: request encoding, embedded LiteRT, batcher throughput, gRPC round trip.

Every group runs our code and its named baseline side by side in one run and records the ratio
(``extra_info``: P50/P99 of both, ``speedup_p50``, a correctness check):

- ``encode``: our ``PredictRequestEncoder`` vs ``tf.make_tensor_proto`` + ``predict_pb2``
  ``SerializeToString`` (same bytes; target >= 10x at every B).
- ``embedded``: LiteRT (one fixed-size interpreter per bucket) vs the SavedModel's
  ``serving_default`` called in process (same outputs within 1e-5; target >= 50x at B=1).
- ``batcher``: MicroBatcher + embedded LiteRT, rows/s sustained and P99 row latency (submit to
  result) at windows 50 us / 200 us / 1 ms, with and without coalescing, on the shipped model;
  frames of ``FRAME_ROWS`` rows, ``end_of_burst`` every ``BURST_FRAMES`` frames, one core.
- ``roundtrip``: ``GrpcBackend.predict`` (our wire codec, grpc.aio) vs the official stub with
  ``make_tensor_proto`` / ``make_ndarray``, against ``serve-model`` on loopback.

Run: ``.venv/bin/pytest bench/test_bench_inference.py --benchmark-disable-gc``
(``RF_BENCH_SMOKE=1`` shrinks sample counts).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.latency import percentiles, sample_ns, scaled
from relentless_fast.inference.batch import BatchResult
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


@pytest.mark.parametrize("coalesce", [False, True], ids=["no-coalesce", "coalesce"])
@pytest.mark.parametrize("window_us", [50, 200, 1000])
def test_batcher_embedded_throughput(
    benchmark: Any, model: LiteRTModel, window_us: int, coalesce: bool
) -> None:
    benchmark.group = "inference-batcher"
    embedded = EmbeddedBackend(model)
    latencies: list[np.ndarray] = []
    delivered = [0]

    def on_result(r: BatchResult) -> None:
        latencies.append(r.done_ns - r.arrival_ns)
        delivered[0] += len(r)

    pipe = InferencePipeline(on_result=on_result, embedded=embedded)
    batcher = MicroBatcher(
        n_symbols=N_SYMBOLS,
        n_features=model.n_features,
        context_dim=model.context_dim,
        window_us=window_us,
        max_batch=128,
        queue_rows=4096,
        coalesce=coalesce,
        dispatch=pipe.dispatch,
        counters=pipe.counters,
    )
    rng = np.random.default_rng(1)
    n_frames = scaled(4000, 40)
    ids = rng.integers(0, N_SYMBOLS, (n_frames, FRAME_ROWS)).astype(np.int32)
    ticks, context = _rows(model, FRAME_ROWS)
    ets = np.arange(FRAME_ROWS, dtype=np.int64)
    embedded.warmup()

    last: dict[str, float] = {}

    def run() -> float:
        latencies.clear()
        delivered[0] = 0
        c = pipe.counters
        submitted0, coalesced0 = c.rows_submitted, c.rows_coalesced
        t0 = time.perf_counter_ns()
        for f in range(n_frames):
            batcher.submit(ids[f], ticks, context, ets)
            if f % BURST_FRAMES == BURST_FRAMES - 1:
                batcher.end_of_burst()
        batcher.flush()
        elapsed = (time.perf_counter_ns() - t0) / 1e9
        last["batches"] = len(latencies)
        last["coalesced_pct"] = (
            100.0 * (c.rows_coalesced - coalesced0) / (c.rows_submitted - submitted0)
        )
        return elapsed

    run()  # warm
    elapsed = run()
    lat = np.concatenate(latencies)
    c = pipe.counters
    info = percentiles(lat)
    benchmark.extra_info.update(
        rows_per_s=delivered[0] / elapsed,
        row_latency_p50_ns=info["p50_ns"],
        row_latency_p99_ns=info["p99_ns"],
        row_latency_p99_9_ns=info["p99_9_ns"],
        mean_batch=delivered[0] / last["batches"],
        coalesced_pct=last["coalesced_pct"],
        flops_per_row=_flops_per_row(model),
        frame_rows=FRAME_ROWS,
        burst_frames=BURST_FRAMES,
        window_us=window_us,
        accounted=c.rows_submitted == c.rows_delivered + c.rows_coalesced + c.rows_dropped,
    )
    benchmark.pedantic(run, rounds=scaled(5, 1), iterations=1)
    assert c.rows_submitted == c.rows_delivered + c.rows_coalesced + c.rows_dropped


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
