"""Config reload (gRPC HandleReloadConfigRequest and file polling), load-time contract check,
warmup before AVAILABLE. One server of its own: these tests change what it serves."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

from relentless_fast import model_contract as mc
from relentless_fast.serving.launcher import ServerProcess
from tests.serving.conftest import BASE_PATH, sample_inputs

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END


def config_text(versions: list[int], labels: dict[str, int], base: Path) -> str:
    cfg = model_server_config_pb2.ModelServerConfig()
    m = cfg.model_config_list.config.add()
    m.name = mc.MODEL_NAME
    m.base_path = str(base)
    m.model_platform = "tensorflow"
    m.model_version_policy.specific.versions.extend(versions)
    for k, v in labels.items():
        m.version_labels[k] = v
    return text_format.MessageToString(cfg)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model base with versions 1-3 copied and version 4 = version 1 with a wrong F."""
    base = tmp_path_factory.mktemp("models") / mc.MODEL_NAME
    for v in (1, 2, 3):
        shutil.copytree(BASE_PATH / str(v), base / str(v))
    shutil.copytree(BASE_PATH / "1", base / "4")
    contract = json.loads((base / "4" / mc.CONTRACT_FILE).read_text())
    contract["n_features"] += 1
    (base / "4" / mc.CONTRACT_FILE).write_text(json.dumps(contract))
    return base


@pytest.fixture(scope="module")
def srv(repo: Path) -> Iterator[ServerProcess]:
    cfg = repo.parent / "config.pbtxt"
    cfg.write_text(config_text([1, 2], {"stable": 1, "canary": 2}, repo))
    with ServerProcess(
        config=cfg, rest=False, extra_args=["--model_config_file_poll_wait_seconds=1"]
    ) as s:
        yield s


@pytest.fixture(scope="module")
def stubs(srv: ServerProcess) -> Iterator[tuple[Any, Any]]:
    ch = grpc.insecure_channel(srv.grpc_target)
    yield (
        model_service_pb2_grpc.ModelServiceStub(ch),
        prediction_service_pb2_grpc.PredictionServiceStub(ch),
    )
    ch.close()


def states(model_stub: Any) -> dict[int, int]:
    req = get_model_status_pb2.GetModelStatusRequest()
    req.model_spec.name = mc.MODEL_NAME
    return {
        s.version: s.state for s in model_stub.GetModelStatus(req, timeout=30).model_version_status
    }


def reload(model_stub: Any, text: str) -> Any:
    req = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(text, req.config)
    return model_stub.HandleReloadConfigRequest(req, timeout=120)


def predict_version(pred_stub: Any, *, version: int | None = None, label: str | None = None) -> Any:
    req = predict_pb2.PredictRequest()
    req.model_spec.name = mc.MODEL_NAME
    if version is not None:
        req.model_spec.version.value = version
    if label is not None:
        req.model_spec.version_label = label
    for k, v in sample_inputs(1).items():
        req.inputs[k].CopyFrom(tf.make_tensor_proto(v))
    return pred_stub.Predict(req, timeout=30)


def test_warmup_ran_before_available(srv: ServerProcess) -> None:
    log = srv.log_text()
    for v in (1, 2):
        warm = log.index(f"version {v}: 4 warmup requests replayed")
        assert warm < log.index(f"version {v} AVAILABLE")
    assert log.index("version 2 AVAILABLE") < log.index("Running gRPC ModelServer")


def test_reload_over_grpc(stubs: tuple[Any, Any], repo: Path) -> None:
    model_stub, pred_stub = stubs
    errors: list[BaseException] = []
    served = [0]
    done = threading.Event()

    def hammer() -> None:  # requests to the kept version while the reload loads version 3
        while not done.is_set():
            try:
                assert predict_version(pred_stub, label="stable").model_spec.version.value == 1
                served[0] += 1
            except BaseException as exc:  # collected, asserted below
                errors.append(exc)

    t = threading.Thread(target=hammer)
    t.start()
    try:
        resp = reload(model_stub, config_text([1, 3], {"stable": 1, "dev": 3}, repo))
    finally:
        done.set()
        t.join()
    assert not errors and served[0] > 0
    assert resp.status.error_code == 0, resp.status.error_message
    assert states(model_stub) == {1: AVAILABLE, 2: END, 3: AVAILABLE}
    assert predict_version(pred_stub, label="dev").model_spec.version.value == 3
    with pytest.raises(grpc.RpcError) as err:
        predict_version(pred_stub, version=2)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        predict_version(pred_stub, label="canary")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_label_on_unavailable_version_refused(stubs: tuple[Any, Any], repo: Path) -> None:
    model_stub, pred_stub = stubs
    before = states(model_stub)
    resp = reload(model_stub, config_text([1], {"stable": 1, "canary": 7}, repo))
    assert resp.status.error_code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert "Request to assign label to version 7" in resp.status.error_message
    assert states(model_stub) == before  # previous config still in force
    assert predict_version(pred_stub, label="stable").model_spec.version.value == 1


def test_contract_mismatch_fails_the_version_with_a_clear_status(
    stubs: tuple[Any, Any], repo: Path
) -> None:
    model_stub, pred_stub = stubs
    resp = reload(model_stub, config_text([1, 4], {"stable": 1}, repo))
    assert resp.status.error_code == 0
    req = get_model_status_pb2.GetModelStatusRequest()
    req.model_spec.name = mc.MODEL_NAME
    req.model_spec.version.value = 4
    (st,) = model_stub.GetModelStatus(req, timeout=30).model_version_status
    assert st.state == END
    assert st.status.error_code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert "input 'ticks' F: model has 21, engine expects 20" in st.status.error_message
    with pytest.raises(grpc.RpcError) as err:
        predict_version(pred_stub, version=4)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_config_file_poll(srv: ServerProcess, stubs: tuple[Any, Any], repo: Path) -> None:
    model_stub, pred_stub = stubs
    srv.config.write_text("this is { not a config")
    deadline = time.monotonic() + 60
    while "refused, previous kept" not in srv.log_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "refused, previous kept" in srv.log_text()
    assert states(model_stub)[1] == AVAILABLE  # bad file: previous config kept
    srv.config.write_text(config_text([2], {"canary": 2}, repo))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        st = states(model_stub)
        if st.get(2) == AVAILABLE and st.get(1) == END:
            break
        time.sleep(0.2)
    assert states(model_stub)[2] == AVAILABLE and states(model_stub)[1] == END
    assert predict_version(pred_stub, label="canary").model_spec.version.value == 2
