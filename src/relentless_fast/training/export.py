"""Export one trained model as a TF Serving version directory (imports TensorFlow).

``<base>/<version>/`` gets the SavedModel (signature ``serving_default`` with the inputs and
outputs of :mod:`relentless_fast.model_contract`), and ``assets.extra/`` gets the model contract
JSON, ``model.tflite`` converted from that same SavedModel, and ``tf_serving_warmup_requests``: a
TFRecord of ``PredictionLog`` records, one Predict request per allowed batch size of
``models/batching.config``, replayed by TF Serving (and ``serve-model``) before the version is
reported AVAILABLE.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from relentless_fast import model_contract as mc

WARMUP_BATCH_SIZES: tuple[int, ...] = (1, 8, 32, 128)
"""Batch sizes of the warmup records: the ``allowed_batch_sizes`` of models/batching.config."""


def export_version(
    model: Any,
    contract: mc.ModelContract,
    version_path: Path,
    warmup_ticks: npt.NDArray[np.float32],
    warmup_context: npt.NDArray[np.float32],
) -> None:
    """Write the SavedModel, contract, TFLite model and warmup records of one version."""
    import tensorflow as tf
    from keras.export import ExportArchive  # type: ignore[import-untyped, unused-ignore]

    from relentless_fast.training.model import signal_outputs

    if version_path.exists():
        shutil.rmtree(version_path)
    f, c = contract.n_features, contract.context_dim

    @tf.function(  # type: ignore[untyped-decorator, unused-ignore]
        input_signature=[
            tf.TensorSpec([None, f], tf.float32, name=mc.INPUT_TICKS),
            tf.TensorSpec([None, c], tf.float32, name=mc.INPUT_CONTEXT),
        ]
    )
    def serve(ticks: Any, context: Any) -> dict[str, Any]:
        raw = model({mc.INPUT_TICKS: ticks, mc.INPUT_CONTEXT: context}, training=False)
        return signal_outputs(raw)

    archive = ExportArchive()
    archive.track(model)
    archive.add_endpoint(mc.SIGNATURE_NAME, serve)
    archive.write_out(str(version_path), verbose=False)
    extra = version_path / "assets.extra"
    extra.mkdir(exist_ok=True)
    (version_path / mc.CONTRACT_FILE).write_text(contract.to_json())
    (version_path / mc.TFLITE_FILE).write_bytes(to_tflite(version_path))
    write_warmup(version_path / mc.WARMUP_FILE, warmup_ticks, warmup_context)


def to_tflite(saved_model_dir: Path) -> bytes:
    """Convert the version's SavedModel (``serving_default``) to a float32 TFLite flatbuffer."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_saved_model(
        str(saved_model_dir), signature_keys=[mc.SIGNATURE_NAME]
    )
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    blob: bytes = conv.convert()
    return blob


def warmup_logs(
    ticks: npt.NDArray[np.float32],
    context: npt.NDArray[np.float32],
    batch_sizes: Sequence[int] = WARMUP_BATCH_SIZES,
) -> list[bytes]:
    """Serialized ``PredictionLog`` records: one Predict request per batch size (rows cycled)."""
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    out = []
    for b in batch_sizes:
        idx = np.arange(b) % len(ticks)
        req = predict_pb2.PredictRequest(
            model_spec=model_pb2.ModelSpec(name=mc.MODEL_NAME, signature_name=mc.SIGNATURE_NAME)
        )
        req.inputs[mc.INPUT_TICKS].CopyFrom(tf.make_tensor_proto(ticks[idx]))
        req.inputs[mc.INPUT_CONTEXT].CopyFrom(tf.make_tensor_proto(context[idx]))
        log = prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=req)
        )
        out.append(log.SerializeToString())
    return out


def write_warmup(
    path: Path, ticks: npt.NDArray[np.float32], context: npt.NDArray[np.float32]
) -> None:
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(path)) as w:
        for rec in warmup_logs(ticks, context):
            w.write(rec)
