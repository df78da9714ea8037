"""TF Serving's UNAVAILABLE when the batch queue is full, over gRPC and REST, plus the
tensor_content and no-warmup flags. A server of its own with a tiny queue."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from relentless_fast import model_contract as mc
from relentless_fast.serving.errors import QUEUE_FULL
from relentless_fast.serving.launcher import MODELS_DIR, ServerProcess
from tests.serving.conftest import direct, sample_inputs

# One batch thread, one queued batch, batches of at most 4 that wait up to 5 s to fill.
TINY_QUEUE = """
max_batch_size { value: 4 }
batch_timeout_micros { value: 5000000 }
max_enqueued_batches { value: 1 }
num_batch_threads { value: 1 }
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    cfg: Path = tmp_path_factory.mktemp("batching") / "batching.config"
    cfg.write_text(TINY_QUEUE)
    with ServerProcess(
        config=MODELS_DIR / "config.pbtxt",
        batching=True,
        batching_file=cfg,
        extra_args=["--enable_serialization_as_tensor_content=true", "--enable_model_warmup=false"],
    ) as s:
        yield s


def request(inputs: dict[str, np.ndarray]) -> Any:
    req = predict_pb2.PredictRequest()
    req.model_spec.name = mc.MODEL_NAME
    req.model_spec.version_label = "stable"
    for k, v in inputs.items():
        req.inputs[k].CopyFrom(tf.make_tensor_proto(v))
    return req


def queue_full_scenario(send_first: Any, send_big: Any, rejected: Any, ok: Any) -> tuple[Any, Any]:
    """A 1-row request waits in the open batch (5 s timeout); a 4-row request cannot join it and
    needs a second batch, beyond max_enqueued_batches = 1. The pause only gives the first request
    time to arrive; an attempt where it did not is repeated, so the test never fails on timing."""
    for _ in range(5):
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(send_first)
            time.sleep(0.5)
            big = send_big()
            first_result = first.result(timeout=60)
        if rejected(big) and ok(first_result):
            return first_result, big
    raise AssertionError("the queue never filled in 5 attempts")


def test_queue_full_is_unavailable_and_queued_work_completes(
    srv: ServerProcess, saved_models: dict[int, Any]
) -> None:
    ch = grpc.insecure_channel(srv.grpc_target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
    first_in = sample_inputs(1, seed=1)

    def big() -> grpc.RpcError | None:
        try:
            stub.Predict(request(sample_inputs(4, seed=2)), timeout=60)
        except grpc.RpcError as exc:
            return exc
        return None

    def first() -> Any:
        try:
            return stub.Predict(request(first_in), timeout=60)
        except grpc.RpcError as exc:  # arrived behind a queued batch: that attempt is repeated
            return exc

    resp, err = queue_full_scenario(
        first,
        big,
        lambda e: e is not None,
        lambda r: not isinstance(r, grpc.RpcError),
    )
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert err.details() == QUEUE_FULL
    got = {k: tf.make_ndarray(v) for k, v in resp.outputs.items()}
    for k, v in direct(saved_models[1], first_in).items():
        np.testing.assert_allclose(got[k], v, rtol=1e-5, atol=1e-6)
    t = resp.outputs[mc.OUTPUT_ACTION_PROBS]
    assert t.tensor_content and not t.float_val  # --enable_serialization_as_tensor_content
    ch.close()


def test_rest_queue_full_is_503(srv: ServerProcess) -> None:
    body = {"inputs": {k: v.tolist() for k, v in sample_inputs(1, seed=3).items()}}
    big = {"inputs": {k: v.tolist() for k, v in sample_inputs(4, seed=4).items()}}
    url = f"{srv.rest_url}/v1/models/{mc.MODEL_NAME}:predict"
    with httpx.Client(timeout=60) as c:
        first, r = queue_full_scenario(
            lambda: c.post(url, json=body),
            lambda: c.post(url, json=big),
            lambda r: r.status_code != 200,
            lambda r: r.status_code == 200,
        )
    assert r.status_code == 503
    assert r.json() == {"error": QUEUE_FULL}
    assert first.status_code == 200


def test_warmup_disabled(srv: ServerProcess) -> None:
    assert "warmup requests replayed" not in srv.log_text()


def test_kill_and_restart_on_the_same_ports(srv: ServerProcess) -> None:
    """The launcher's fault injection: SIGKILL, then the server comes back on the same ports."""
    port = srv.grpc_port
    srv.kill()
    ch = grpc.insecure_channel(srv.grpc_target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
    with pytest.raises(grpc.RpcError) as err:
        stub.Predict(request(sample_inputs(1)), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    srv.restart()
    assert srv.grpc_port == port
    resp = stub.Predict(request(sample_inputs(1)), timeout=60, wait_for_ready=True)
    assert resp.model_spec.version.value == 1
    ch.close()
