"""Server-side batching on ``serve-model``: Predict throughput with 1, 8 and 32 concurrent clients,
batching on (models/batching.config) versus off, side by side in one run.

Each client sends single-row Predict requests (version 1, label-free) over one shared gRPC channel
with the official stub; rows/s and per-request latency percentiles go to ``extra_info``, and the
batching-on test records ``ratio_vs_off`` (its rows/s over batching-off's at the same client
count). ``RF_BENCH_SMOKE=1`` shrinks the request count.

    .venv/bin/pytest bench/test_bench_serving.py --benchmark-only -s
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from bench.latency import percentiles, scaled

pytest.importorskip("tensorflow", reason="needs the serve extra")
pytest.importorskip("tensorflow_serving", reason="needs tensorflow-serving-api")

import grpc
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from relentless_fast import model_contract as mc
from relentless_fast.serving.launcher import MODELS_DIR, ServerProcess

CLIENTS = (1, 8, 32)
REQUESTS_PER_CLIENT_TOTAL = scaled(1600, 64)
_RESULTS: dict[tuple[str, int], float] = {}


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, ServerProcess]]:
    on = ServerProcess(config=MODELS_DIR / "config.pbtxt", batching=True, rest=False)
    off = ServerProcess(config=MODELS_DIR / "config.pbtxt", batching=False, rest=False)
    with on, off:
        yield {"on": on, "off": off}


def _request(seed: int) -> Any:
    rng = np.random.default_rng(seed)
    req = predict_pb2.PredictRequest()
    req.model_spec.name = mc.MODEL_NAME
    req.model_spec.version.value = 1
    req.inputs[mc.INPUT_TICKS].CopyFrom(
        tf.make_tensor_proto((rng.standard_normal((1, 20)) * 0.1).astype(np.float32))
    )
    req.inputs[mc.INPUT_CONTEXT].CopyFrom(tf.make_tensor_proto(np.zeros((1, 92), np.float32)))
    return req


def _drive(target: str, clients: int, total: int) -> tuple[float, np.ndarray, int]:
    """``total`` requests from ``clients`` threads; returns (seconds, latencies ns, errors)."""
    channel = grpc.insecure_channel(target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    req = _request(0)
    stub.Predict(req, timeout=30)
    per = max(total // clients, 1)
    lat = np.zeros((clients, per), dtype=np.int64)
    errors = [0] * clients
    start = threading.Barrier(clients + 1)

    def client(i: int) -> None:
        start.wait()
        for j in range(per):
            t0 = time.perf_counter_ns()
            try:
                stub.Predict(req, timeout=30)
            except grpc.RpcError:
                errors[i] += 1
            lat[i, j] = time.perf_counter_ns() - t0

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    channel.close()
    return elapsed, lat.ravel(), sum(errors)


@pytest.mark.parametrize("clients", CLIENTS)
@pytest.mark.parametrize("batching", ["off", "on"])
def test_serving_throughput(
    benchmark: Any, servers: dict[str, ServerProcess], batching: str, clients: int
) -> None:
    benchmark.group = f"serve-model predict, {clients} clients"
    srv = servers[batching]
    result: dict[str, Any] = {}

    def run() -> None:
        result["r"] = _drive(srv.grpc_target, clients, REQUESTS_PER_CLIENT_TOTAL)

    benchmark.pedantic(run, rounds=1, iterations=1)
    elapsed, lat, errors = result["r"]
    assert errors == 0
    rows_per_s = len(lat) / elapsed
    _RESULTS[(batching, clients)] = rows_per_s
    info: dict[str, Any] = {
        "rows_per_s": rows_per_s,
        "requests": len(lat),
        "batching": batching,
        "clients": clients,
        **percentiles(lat),
    }
    if batching == "on" and ("off", clients) in _RESULTS:
        info["ratio_vs_off"] = rows_per_s / _RESULTS[("off", clients)]
    benchmark.extra_info.update(info)
