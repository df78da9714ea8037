"""A tiny stand-in for ``relentless_financial``: same inputs, outputs and files, built in seconds.

Unit tests use it so they stay fast and do not depend on the shipped artefacts; the shipped
models are exercised by the tests that look for ``models/relentless_financial/<v>/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from relentless_fast.model_contract import (
    CONTRACT_FILE,
    OUTPUT_TRAILING_SHAPES,
    TFLITE_FILE,
    ModelContract,
)

N_FEATURES = 6
CONTEXT_DIM = 5
HIDDEN = 16


@dataclass(frozen=True)
class TinyModel:
    """Paths of the stand-in model's versions (1 = stable, 2 = canary, different weights)."""

    base_path: Path
    n_features: int = N_FEATURES
    context_dim: int = CONTEXT_DIM

    def saved_model(self, version: int) -> Path:
        return self.base_path / str(version)

    def tflite(self, version: int) -> Path:
        return self.base_path / str(version) / TFLITE_FILE


def _export(path: Path, seed: int) -> None:
    import tensorflow as tf

    rng = np.random.default_rng(seed)

    def weight(*shape: int) -> tf.Variable:
        return tf.Variable(rng.normal(0.0, 0.5, shape).astype(np.float32))

    class Tiny(tf.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.w1 = weight(N_FEATURES + CONTEXT_DIM, HIDDEN)
            self.b1 = weight(HIDDEN)
            self.heads = {
                name: (weight(HIDDEN, int(np.prod(shape))), weight(int(np.prod(shape))))
                for name, shape in OUTPUT_TRAILING_SHAPES.items()
            }

        @tf.function(  # type: ignore[untyped-decorator]
            input_signature=[
                tf.TensorSpec([None, N_FEATURES], tf.float32, name="ticks"),
                tf.TensorSpec([None, CONTEXT_DIM], tf.float32, name="context"),
            ]
        )
        def serve(self, ticks: tf.Tensor, context: tf.Tensor) -> dict[str, tf.Tensor]:
            h = tf.nn.relu(tf.matmul(tf.concat([ticks, context], axis=1), self.w1) + self.b1)
            out = {}
            for name, (w, b) in self.heads.items():
                y = tf.matmul(h, w) + b
                if name == "action_probs":
                    out[name] = tf.nn.softmax(y)
                else:
                    out[name] = tf.sigmoid(tf.reshape(y, [-1]))
            return out

    module = Tiny()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    converter = tf.lite.TFLiteConverter.from_saved_model(str(path))
    tflite = path / TFLITE_FILE
    tflite.parent.mkdir(parents=True, exist_ok=True)
    tflite.write_bytes(converter.convert())
    contract = ModelContract(
        n_features=N_FEATURES,
        context_dim=CONTEXT_DIM,
        feature_schema_version=1,
        context_embedding_version=1,
        trained={"note": "stand-in for tests, random weights"},
    )
    (path / CONTRACT_FILE).write_text(contract.to_json())


def build_tiny_model(base_path: Path) -> TinyModel:
    """Export versions 1 and 2 of the stand-in under ``base_path``."""
    for version, seed in ((1, 11), (2, 22)):
        _export(base_path / str(version), seed)
    return TinyModel(base_path)


def saved_model_predict(
    path: Path, ticks: np.ndarray, context: np.ndarray
) -> dict[str, np.ndarray]:
    """Call a SavedModel's ``serving_default`` in process (reference outputs)."""
    import tensorflow as tf

    fn = _LOADED.get(path)
    if fn is None:
        fn = _LOADED[path] = tf.saved_model.load(str(path)).signatures["serving_default"]
    out = fn(ticks=tf.constant(ticks), context=tf.constant(context))
    return {k: v.numpy() for k, v in out.items()}


_LOADED: dict[Path, Any] = {}
