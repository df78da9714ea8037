"""Embedded LiteRT backend: same outputs as the SavedModel, fixed-size interpreters, contract."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from relentless_fast.inference.embedded import EmbeddedBackend, LiteRTModel
from relentless_fast.model_contract import CONTRACT_FILE, OUTPUT_NAMES, ModelContractError
from tests.inference.conftest import SHIPPED_MODEL_DIR
from tests.inference.standin_model import saved_model_predict

pytest.importorskip("ai_edge_litert")


def _rows(n: int, f: int, c: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((n, f)).astype(np.float32),
        rng.standard_normal((n, c)).astype(np.float32),
    )


def _assert_close(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(want)
    for k in want:
        assert got[k].shape == want[k].shape, k
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6, err_msg=k)


@pytest.mark.parametrize("version", [1, 2])
def test_litert_matches_saved_model_at_every_size(tiny_model: Any, version: int) -> None:
    model = LiteRTModel.from_version_dir(tiny_model.saved_model(version), batch_sizes=(1, 8, 32))
    assert model.version == version
    assert model.output_names == tuple(sorted(OUTPUT_NAMES))
    for n in (1, 2, 7, 8, 9, 32, 33, 100):
        ticks, context = _rows(n, model.n_features, model.context_dim, seed=n)
        want = saved_model_predict(tiny_model.saved_model(version), ticks, context)
        _assert_close(model.predict(ticks, context), want)


def test_padding_never_leaks_between_calls(tiny_model: Any) -> None:
    model = LiteRTModel.from_version_dir(tiny_model.saved_model(1), batch_sizes=(8,))
    big_t, big_c = _rows(8, model.n_features, model.context_dim, seed=1)
    small_t, small_c = _rows(3, model.n_features, model.context_dim, seed=2)
    model.predict(big_t, big_c)
    after_big = model.predict(small_t, small_c)
    fresh = LiteRTModel.from_version_dir(tiny_model.saved_model(1), batch_sizes=(8,))
    _assert_close(after_big, fresh.predict(small_t, small_c))
    assert after_big["confidence"].shape == (3,)


def test_interpreters_are_never_resized(tiny_model: Any) -> None:
    sizes = (1, 8, 32)
    model = LiteRTModel.from_version_dir(tiny_model.saved_model(1), batch_sizes=sizes)
    model.warmup()
    for n in (1, 5, 32, 70):
        model.predict(*_rows(n, model.n_features, model.context_dim, seed=n))
    for size, bucket in zip(sizes, model._buckets, strict=True):
        shapes = [list(d["shape"]) for d in bucket.interp.get_input_details()]
        assert sorted(shapes) == sorted([[size, model.n_features], [size, model.context_dim]])


def test_empty_batch_and_row_mismatch(tiny_model: Any) -> None:
    model = LiteRTModel.from_version_dir(tiny_model.saved_model(1), batch_sizes=(4,))
    out = model.predict(*_rows(0, model.n_features, model.context_dim, seed=0))
    assert out["action_probs"].shape == (0, 3)
    with pytest.raises(ValueError, match="rows"):
        model.predict(np.zeros((2, model.n_features), np.float32), np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match="increasing"):
        LiteRTModel(tiny_model.tflite(1), version=1, batch_sizes=(8, 4))


def test_contract_mismatch_names_the_tensor(tiny_model: Any, tmp_path: Path) -> None:
    vdir = tmp_path / "1"
    shutil.copytree(tiny_model.saved_model(1), vdir)
    contract = json.loads((vdir / CONTRACT_FILE).read_text())
    contract["context_dim"] = 99
    (vdir / CONTRACT_FILE).write_text(json.dumps(contract))
    with pytest.raises(ModelContractError, match="input 'context' shape"):
        LiteRTModel.from_version_dir(vdir)
    (vdir / CONTRACT_FILE).unlink()
    with pytest.raises(ModelContractError, match="missing"):
        LiteRTModel.from_version_dir(vdir)
    assert LiteRTModel.from_version_dir(vdir, check_contract=False).version == 1


def test_backend_serves_stable_and_canary(tiny_model: Any) -> None:
    stable = LiteRTModel.from_version_dir(tiny_model.saved_model(1), batch_sizes=(1, 8))
    canary = LiteRTModel.from_version_dir(tiny_model.saved_model(2), batch_sizes=(1, 8))
    backend = EmbeddedBackend(stable, canary)
    backend.warmup()
    assert backend.has_canary
    assert (backend.version("stable"), backend.version("canary")) == (1, 2)
    ticks, context = _rows(5, stable.n_features, stable.context_dim, seed=5)
    _assert_close(
        backend.run("canary", ticks, context),
        saved_model_predict(tiny_model.saved_model(2), ticks, context),
    )
    _assert_close(
        backend.run("stable", ticks, context),
        saved_model_predict(tiny_model.saved_model(1), ticks, context),
    )


SHIPPED = [v for v in (1, 2, 3) if (SHIPPED_MODEL_DIR / str(v) / "saved_model.pb").exists()]


def warmup_inputs(vdir: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (ticks, context) pairs of a version's TF Serving warmup records: realistic rows."""
    tf = pytest.importorskip("tensorflow")
    from tensorflow_serving.apis import prediction_log_pb2

    pairs = []
    for record in tf.data.TFRecordDataset(str(vdir / "assets.extra/tf_serving_warmup_requests")):
        req = prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
        pairs.append((tf.make_ndarray(req.inputs["ticks"]), tf.make_ndarray(req.inputs["context"])))
    return pairs


@pytest.mark.skipif(not SHIPPED, reason="models/relentless_financial/<v>/ not exported yet")
@pytest.mark.parametrize("version", SHIPPED)
def test_shipped_versions_match_their_saved_model(version: int) -> None:
    vdir = SHIPPED_MODEL_DIR / str(version)
    model = LiteRTModel.from_version_dir(vdir)
    pairs = warmup_inputs(vdir)
    assert pairs, "warmup file has no records"
    for ticks, context in pairs:
        _assert_close(model.predict(ticks, context), saved_model_predict(vdir, ticks, context))
