"""The committed model versions: contract, SavedModel signature, TFLite twin, warmup records."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from relentless_fast import model_contract as mc

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "models" / mc.MODEL_NAME
VERSIONS = (1, 2, 3)


def test_versions_on_disk() -> None:
    assert mc.list_versions(BASE) == list(VERSIONS)
    total = sum(p.stat().st_size for p in BASE.rglob("*") if p.is_file())
    assert total < 3 * 1024 * 1024, f"committed artefacts are {total} bytes"


@pytest.mark.parametrize("version", VERSIONS)
def test_contract_matches_this_code_base(version: int) -> None:
    c = mc.load_contract(BASE / str(version))
    c.check_current()
    from relentless_fast.features import schema

    assert c.feature_names == schema.FEATURE_NAMES
    assert c.trained["version"] == version


def _masked_crc(data: bytes) -> int:
    import crc32c

    crc = crc32c.crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def read_tfrecord(path: Path) -> list[bytes]:
    """TFRecord framing checked byte by byte (length, masked CRC-32C of length and of data)."""
    buf = path.read_bytes()
    out, pos = [], 0
    while pos < len(buf):
        (n,) = struct.unpack_from("<Q", buf, pos)
        (len_crc,) = struct.unpack_from("<I", buf, pos + 8)
        assert len_crc == _masked_crc(buf[pos : pos + 8])
        data = buf[pos + 12 : pos + 12 + n]
        (data_crc,) = struct.unpack_from("<I", buf, pos + 12 + n)
        assert data_crc == _masked_crc(data)
        out.append(data)
        pos += 12 + n + 4
    assert pos == len(buf)
    return out


@pytest.mark.parametrize("version", VERSIONS)
def test_warmup_file_is_prediction_logs(version: int) -> None:
    pytest.importorskip("crc32c")
    pl = pytest.importorskip("tensorflow_serving.apis.prediction_log_pb2")
    records = read_tfrecord(BASE / str(version) / mc.WARMUP_FILE)
    assert 1 <= len(records) <= 1000
    sizes = []
    for raw in records:
        log = pl.PredictionLog.FromString(raw)
        assert log.WhichOneof("log_type") == "predict_log"
        req = log.predict_log.request
        assert req.model_spec.name == mc.MODEL_NAME
        assert req.model_spec.signature_name == mc.SIGNATURE_NAME
        assert set(req.inputs) == set(mc.INPUT_NAMES)
        dims = {k: [d.size for d in v.tensor_shape.dim] for k, v in req.inputs.items()}
        assert dims[mc.INPUT_TICKS][1] == 20 and dims[mc.INPUT_CONTEXT][1] == 92
        sizes.append(dims[mc.INPUT_TICKS][0])
    assert sizes == [1, 8, 32, 128]


@pytest.fixture(scope="module")
def signatures() -> dict[int, Any]:
    tf = pytest.importorskip("tensorflow")
    return {
        v: tf.saved_model.load(str(BASE / str(v))).signatures[mc.SIGNATURE_NAME] for v in VERSIONS
    }


def _inputs(b: int, seed: int) -> dict[str, np.ndarray]:
    from tests.serving.conftest import sample_inputs

    return sample_inputs(b, seed)


@pytest.mark.parametrize("version", VERSIONS)
def test_saved_model_signature_matches_contract(signatures: dict[int, Any], version: int) -> None:
    sig = signatures[version]
    _, kw = sig.structured_input_signature
    mc.check_io(
        mc.load_contract(BASE / str(version)),
        {k: (s.dtype.name, s.shape.as_list()) for k, s in kw.items()},
        {k: (s.dtype.name, s.shape.as_list()) for k, s in sig.structured_outputs.items()},
        runtime="SavedModel",
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_tflite_matches_saved_model(signatures: dict[int, Any], version: int) -> None:
    import tensorflow as tf

    litert = pytest.importorskip("ai_edge_litert.interpreter")
    path = BASE / str(version) / mc.TFLITE_FILE
    for b in (1, 32, 128):
        it = litert.Interpreter(model_path=str(path))
        runner = it.get_signature_runner(mc.SIGNATURE_NAME)  # resizes to the batch on call
        x = _inputs(b, seed=b + version)
        lite = runner(**x)
        ref = {
            k: v.numpy()
            for k, v in signatures[version](**{k: tf.constant(v) for k, v in x.items()}).items()
        }
        assert set(lite) == set(mc.OUTPUT_NAMES)
        for k in mc.OUTPUT_NAMES:
            assert np.isfinite(lite[k]).all(), k
            np.testing.assert_allclose(lite[k], ref[k], rtol=1e-5, atol=1e-6, err_msg=k)


@pytest.mark.parametrize("version", VERSIONS)
def test_extreme_inputs_give_bounded_outputs(signatures: dict[int, Any], version: int) -> None:
    import tensorflow as tf

    rng = np.random.default_rng(version)
    x = {
        mc.INPUT_TICKS: (rng.standard_normal((64, 20)) * 50).astype(np.float32),
        mc.INPUT_CONTEXT: (rng.standard_normal((64, 92)) * 4).astype(np.float32),
    }
    out = signatures[version](**{k: tf.constant(v) for k, v in x.items()})
    for k in (mc.OUTPUT_PRICE_TARGET_REL, mc.OUTPUT_STOP_LOSS_REL):
        v = out[k].numpy()
        assert np.isfinite(v).all() and (np.abs(v) < 0.3).all(), k
