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


def sample_inputs(batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Plausible rows: ticks around the feature scale, context in the embedding's [-4, 4]."""
    contract = mc.load_contract(BASE_PATH / "1")
    rng = np.random.default_rng(seed)
    return {
        mc.INPUT_TICKS: (rng.standard_normal((batch, contract.n_features)) * 0.5).astype(
            np.float32
        ),
        mc.INPUT_CONTEXT: np.clip(rng.standard_normal((batch, contract.context_dim)), -4, 4).astype(
            np.float32
        ),
    }


def direct(sig: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import tensorflow as tf

    out = sig(**{k: tf.constant(v) for k, v in inputs.items()})
    return {k: v.numpy() for k, v in out.items()}


def models_dir() -> Path:
    return MODELS_DIR
