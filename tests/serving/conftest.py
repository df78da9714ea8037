"""Shared set-up of the serving tests: one ``serve-model`` process per module (TF starts slowly)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="the serve extra (tensorflow-cpu) is not installed")
pytest.importorskip("tensorflow_serving", reason="tensorflow-serving-api is not installed")

from relentless_fast import model_contract as mc
from relentless_fast.serving.launcher import MODELS_DIR, ServerProcess

BASE_PATH = MODELS_DIR / mc.MODEL_NAME
ALL_VERSIONS = MODELS_DIR / "config.all_versions.pbtxt"


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    """All three versions, batching on (models/batching.config), gRPC + REST on free ports."""
    with ServerProcess(config=ALL_VERSIONS, batching=True) as srv:
        yield srv


@pytest.fixture(scope="session")
def saved_models() -> dict[int, Any]:
    """Each version's ``serving_default`` called directly (the reference for server outputs)."""
    import tensorflow as tf

    return {
        v: tf.saved_model.load(str(BASE_PATH / str(v))).signatures[mc.SIGNATURE_NAME]
        for v in (1, 2, 3)
    }


def _real_rows() -> dict[str, np.ndarray]:
    """The 128 real rows (2011 validation days) of version 1's warmup records."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    last = None
    for raw in tf.data.TFRecordDataset(str(BASE_PATH / "1" / mc.WARMUP_FILE)):
        last = prediction_log_pb2.PredictionLog.FromString(raw.numpy())
    assert last is not None
    return {k: tf.make_ndarray(v) for k, v in last.predict_log.request.inputs.items()}


_REAL: dict[str, np.ndarray] = {}


def sample_inputs(batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Realistic rows: real feature/context rows, resampled, with a little noise per column."""
    if not _REAL:
        _REAL.update(_real_rows())
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(_REAL[mc.INPUT_TICKS]), batch)
    out = {}
    for k, rows in _REAL.items():
        scale = rows.std(axis=0, keepdims=True) * 0.2
        out[k] = (rows[idx] + rng.standard_normal((batch, rows.shape[1])) * scale).astype(
            np.float32
        )
    return out


def direct(sig: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import tensorflow as tf

    out = sig(**{k: tf.constant(v) for k, v in inputs.items()})
    return {k: v.numpy() for k, v in out.items()}


def models_dir() -> Path:
    return MODELS_DIR
