"""serve-model over gRPC with the official tensorflow_serving.apis stubs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from relentless_fast import model_contract as mc
from relentless_fast.serving.launcher import ServerProcess
from tests.serving.conftest import direct, sample_inputs

LABELS = {"stable": 1, "canary": 2, "dev": 3}


@pytest.fixture(scope="module")
def channel(server: ServerProcess) -> Iterator[grpc.Channel]:
    ch = grpc.insecure_channel(server.grpc_target)
    yield ch
    ch.close()


@pytest.fixture(scope="module")
def predict_stub(channel: grpc.Channel) -> Any:
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def model_stub(channel: grpc.Channel) -> Any:
    return model_service_pb2_grpc.ModelServiceStub(channel)


def request(
    inputs: dict[str, np.ndarray],
    *,
    version: int | None = None,
    label: str | None = None,
    signature: str = "",
) -> Any:
    req = predict_pb2.PredictRequest()
    req.model_spec.name = mc.MODEL_NAME
    req.model_spec.signature_name = signature
    if version is not None:
        req.model_spec.version.value = version
    if label is not None:
        req.model_spec.version_label = label
    for k, v in inputs.items():
        req.inputs[k].CopyFrom(tf.make_tensor_proto(v))
    return req


def outputs(resp: Any) -> dict[str, np.ndarray]:
    return {k: tf.make_ndarray(v) for k, v in resp.outputs.items()}


def assert_close(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert set(got) == set(want) == set(mc.OUTPUT_NAMES)
    for k in want:
        assert got[k].shape == want[k].shape, k
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6, err_msg=k)


@pytest.mark.parametrize("version", [1, 2, 3])
@pytest.mark.parametrize("batch", [1, 5, 32])
def test_predict_by_version_matches_saved_model(
    predict_stub: Any, saved_models: dict[int, Any], version: int, batch: int
) -> None:
    inputs = sample_inputs(batch, seed=version * 100 + batch)
    resp = predict_stub.Predict(request(inputs, version=version), timeout=30)
    assert resp.model_spec.name == mc.MODEL_NAME
    assert resp.model_spec.version.value == version
    assert resp.model_spec.signature_name == mc.SIGNATURE_NAME
    assert_close(outputs(resp), direct(saved_models[version], inputs))


@pytest.mark.parametrize(("label", "version"), sorted(LABELS.items()))
def test_predict_by_label(
    predict_stub: Any, saved_models: dict[int, Any], label: str, version: int
) -> None:
    inputs = sample_inputs(3, seed=7)
    resp = predict_stub.Predict(request(inputs, label=label), timeout=30)
    assert resp.model_spec.version.value == version
    assert_close(outputs(resp), direct(saved_models[version], inputs))


def test_versions_differ(predict_stub: Any) -> None:
    inputs = sample_inputs(8, seed=1)
    a = outputs(predict_stub.Predict(request(inputs, version=1), timeout=30))
    b = outputs(predict_stub.Predict(request(inputs, version=2), timeout=30))
    assert not np.allclose(a[mc.OUTPUT_ACTION_PROBS], b[mc.OUTPUT_ACTION_PROBS])


def test_latest_is_highest_version(predict_stub: Any) -> None:
    resp = predict_stub.Predict(request(sample_inputs(1)), timeout=30)
    assert resp.model_spec.version.value == 3


def test_outputs_fill_the_signal_contract(predict_stub: Any) -> None:
    out = outputs(predict_stub.Predict(request(sample_inputs(64, seed=3), version=1), timeout=30))
    probs = out[mc.OUTPUT_ACTION_PROBS]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(out[mc.OUTPUT_CONFIDENCE], probs.max(axis=1), rtol=1e-6)
    for k in (mc.OUTPUT_POSITION_SIZE, mc.OUTPUT_RISK_SCORE, mc.OUTPUT_URGENCY):
        assert ((out[k] >= 0) & (out[k] <= 1)).all(), k
    action = probs.argmax(axis=1)
    buy, sell = action == 1, action == 2
    assert (out[mc.OUTPUT_PRICE_TARGET_REL][buy] >= out[mc.OUTPUT_STOP_LOSS_REL][buy]).all()
    assert (out[mc.OUTPUT_PRICE_TARGET_REL][sell] <= out[mc.OUTPUT_STOP_LOSS_REL][sell]).all()


def test_output_filter(predict_stub: Any) -> None:
    req = request(sample_inputs(2), version=1)
    req.output_filter.append(mc.OUTPUT_CONFIDENCE)
    resp = predict_stub.Predict(req, timeout=30)
    assert list(resp.outputs) == [mc.OUTPUT_CONFIDENCE]
    req.output_filter.append("nope")
    with pytest.raises(grpc.RpcError) as err:
        predict_stub.Predict(req, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "output tensor alias not found in signature: nope" in err.value.details()


def test_response_uses_typed_float_val(predict_stub: Any) -> None:
    resp = predict_stub.Predict(request(sample_inputs(2), version=1), timeout=30)
    t = resp.outputs[mc.OUTPUT_ACTION_PROBS]
    assert t.dtype == tf.float32.as_datatype_enum
    assert [d.size for d in t.tensor_shape.dim] == [2, 3]
    assert len(t.float_val) == 6 and not t.tensor_content


def test_float_val_inputs_accepted(predict_stub: Any, saved_models: dict[int, Any]) -> None:
    inputs = sample_inputs(2, seed=9)
    req = request({}, version=1)
    for k, v in inputs.items():
        tp = req.inputs[k]
        tp.dtype = tf.float32.as_datatype_enum
        for d in v.shape:
            tp.tensor_shape.dim.add().size = d
        tp.float_val.extend(v.ravel().tolist())
    assert_close(outputs(predict_stub.Predict(req, timeout=30)), direct(saved_models[1], inputs))


def _code(stub_call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        stub_call()
    return err.value.code(), err.value.details()


def test_unknown_model_version_label(predict_stub: Any) -> None:
    inputs = sample_inputs(1)
    req = request(inputs)
    req.model_spec.name = "nope"
    code, msg = _code(lambda: predict_stub.Predict(req, timeout=30))
    assert code == grpc.StatusCode.NOT_FOUND
    assert msg == "Servable not found for request: Latest(nope)"
    code, msg = _code(lambda: predict_stub.Predict(request(inputs, version=9), timeout=30))
    assert code == grpc.StatusCode.NOT_FOUND
    assert msg == f"Servable not found for request: Specific({mc.MODEL_NAME}, 9)"
    code, msg = _code(lambda: predict_stub.Predict(request(inputs, label="beta"), timeout=30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert msg == "Unrecognized servable version label: beta"


def test_unknown_signature(predict_stub: Any) -> None:
    code, msg = _code(
        lambda: predict_stub.Predict(request(sample_inputs(1), signature="other"), timeout=30)
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert msg == 'Serving signature key "other" not found.'


def test_missing_and_extra_inputs(predict_stub: Any) -> None:
    inputs = sample_inputs(1)
    del inputs[mc.INPUT_CONTEXT]
    inputs["extra"] = np.zeros((1, 2), np.float32)
    code, msg = _code(lambda: predict_stub.Predict(request(inputs, version=1), timeout=30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert msg.startswith("input size does not match signature")
    assert "Sent extra: {extra}" in msg and "Missing but required: {context}" in msg


def test_bad_dtype_and_shape(predict_stub: Any) -> None:
    inputs = sample_inputs(2)
    bad = dict(inputs, ticks=inputs[mc.INPUT_TICKS].astype(np.float64))
    code, msg = _code(lambda: predict_stub.Predict(request(bad, version=1), timeout=30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "double" in msg and "ticks" in msg
    bad = dict(inputs, ticks=inputs[mc.INPUT_TICKS][:, :5])
    code, msg = _code(lambda: predict_stub.Predict(request(bad, version=1), timeout=30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "ticks" in msg
    bad = dict(inputs, context=inputs[mc.INPUT_CONTEXT][:1])
    code, msg = _code(lambda: predict_stub.Predict(request(bad, version=1), timeout=30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "0th-dimension" in msg


def test_oversized_batch_refused(predict_stub: Any) -> None:
    code, msg = _code(
        lambda: predict_stub.Predict(request(sample_inputs(129), version=1), timeout=30)
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "larger than maximum input batch size 128" in msg


def test_metadata(predict_stub: Any) -> None:
    req = get_model_metadata_pb2.GetModelMetadataRequest()
    req.model_spec.name = mc.MODEL_NAME
    req.model_spec.version_label = "canary"
    req.metadata_field.append("signature_def")
    resp = predict_stub.GetModelMetadata(req, timeout=30)
    assert resp.model_spec.version.value == 2
    sdm = get_model_metadata_pb2.SignatureDefMap()
    assert resp.metadata["signature_def"].Unpack(sdm)
    sig = sdm.signature_def[mc.SIGNATURE_NAME]
    assert set(sig.inputs) == set(mc.INPUT_NAMES)
    assert set(sig.outputs) == set(mc.OUTPUT_NAMES)
    assert sig.method_name == "tensorflow/serving/predict"
    assert [d.size for d in sig.inputs[mc.INPUT_TICKS].tensor_shape.dim] == [-1, 20]
    del req.metadata_field[:]
    req.metadata_field.append("bogus")
    code, msg = _code(lambda: predict_stub.GetModelMetadata(req, timeout=30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "bogus" in msg


def test_model_status(model_stub: Any) -> None:
    req = get_model_status_pb2.GetModelStatusRequest()
    req.model_spec.name = mc.MODEL_NAME
    resp = model_stub.GetModelStatus(req, timeout=30)
    assert [(s.version, s.state) for s in resp.model_version_status] == [
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE),
        (2, get_model_status_pb2.ModelVersionStatus.AVAILABLE),
        (3, get_model_status_pb2.ModelVersionStatus.AVAILABLE),
    ]
    req.model_spec.version_label = "canary"
    resp = model_stub.GetModelStatus(req, timeout=30)
    assert [s.version for s in resp.model_version_status] == [2]
    req2 = get_model_status_pb2.GetModelStatusRequest(model_spec=model_pb2.ModelSpec(name="x"))
    code, _ = _code(lambda: model_stub.GetModelStatus(req2, timeout=30))
    assert code == grpc.StatusCode.NOT_FOUND


def test_concurrent_requests_are_batched_and_correct(
    predict_stub: Any, saved_models: dict[int, Any]
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    batches = [sample_inputs(1 + i % 4, seed=500 + i) for i in range(24)]
    with ThreadPoolExecutor(8) as pool:
        futs = [
            pool.submit(predict_stub.Predict, request(b, version=1), timeout=30) for b in batches
        ]
        results = [f.result() for f in futs]
    for b, r in zip(batches, results, strict=True):
        assert_close(outputs(r), direct(saved_models[1], b))
