"""One loaded model version: its SavedModel signatures, input checks, inference and warmup."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt

from relentless_fast import model_contract as mc
from relentless_fast.serving.errors import ServingError, invalid, precondition

log = logging.getLogger(__name__)

Array = npt.NDArray[Any]


@dataclass(frozen=True)
class TensorSpecInfo:
    name: str
    dtype: np.dtype[Any]
    shape: tuple[int | None, ...]


class Signature:
    """One signature of a loaded SavedModel: checked inputs in, numpy outputs out."""

    def __init__(self, key: str, fn: Any) -> None:
        self.key = key
        self._fn = fn
        _, kw = fn.structured_input_signature
        self.inputs = {
            k: TensorSpecInfo(k, np.dtype(s.dtype.as_numpy_dtype), tuple(s.shape.as_list()))
            for k, s in kw.items()
        }
        self.outputs = {
            k: TensorSpecInfo(k, np.dtype(s.dtype.as_numpy_dtype), tuple(s.shape.as_list()))
            for k, s in fn.structured_outputs.items()
        }

    def check_inputs(self, inputs: Mapping[str, Array]) -> int:
        """Raise TF Serving's INVALID_ARGUMENT on a bad input set; return the batch size."""
        sent, want = set(inputs), set(self.inputs)
        if sent != want:
            extra = ",".join(sorted(sent - want))
            missing = ",".join(sorted(want - sent))
            raise invalid(
                f"input size does not match signature: {len(sent)}!={len(want)} "
                f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(want))}}}). "
                f"Sent extra: {{{extra}}}. Missing but required: {{{missing}}}."
            )
        batch: int | None = None
        for name, arr in inputs.items():
            spec = self.inputs[name]
            if arr.dtype != spec.dtype:
                raise invalid(
                    f"Expects arg[{sorted(want).index(name)}] ({name!r}) to be "
                    f"{_tf_type(spec.dtype)} but {_tf_type(arr.dtype)} is provided"
                )
            if len(arr.shape) != len(spec.shape) or any(
                d is not None and d != a for d, a in zip(spec.shape, arr.shape, strict=True)
            ):
                raise invalid(
                    f"input {name!r}: shape {list(arr.shape)} is not compatible with the "
                    f"signature's {[-1 if d is None else d for d in spec.shape]}"
                )
            if arr.shape:
                if batch is not None and arr.shape[0] != batch:
                    raise invalid("Input tensors must have equal 0th-dimension size")
                batch = int(arr.shape[0])
        return batch or 0

    def check_filter(self, output_filter: Iterable[str]) -> list[str]:
        names = list(output_filter) or list(self.outputs)
        for n in names:
            if n not in self.outputs:
                raise invalid(
                    f"output tensor alias not found in signature: {n} Outputs expected to be in "
                    f"the set {{{','.join(sorted(self.outputs))}}}."
                )
        return names

    def run(self, inputs: Mapping[str, Array], names: list[str] | None = None) -> dict[str, Array]:
        """Run the signature on checked numpy inputs; TF errors become INVALID_ARGUMENT."""
        import tensorflow as tf

        try:
            res = self._fn(**{k: tf.constant(v) for k, v in inputs.items()})
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as exc:
            raise invalid(str(exc).strip().splitlines()[0]) from exc
        except tf.errors.OpError as exc:  # TF's error codes are gRPC's
            code = _GRPC_CODES.get(int(exc.error_code), grpc.StatusCode.INTERNAL)
            raise ServingError(code, exc.message) from exc
        keys = names if names is not None else list(res)
        return {k: res[k].numpy() for k in keys}


_GRPC_CODES = {c.value[0]: c for c in grpc.StatusCode}


def _tf_type(dt: np.dtype[Any]) -> str:
    return {"float32": "float", "float64": "double", "int32": "int32", "int64": "int64"}.get(
        dt.name, dt.name
    )


class Servable:
    """A loaded version: SavedModel + its signature defs (for metadata) + contract check."""

    def __init__(self, name: str, version: int, path: Path) -> None:
        import tensorflow as tf

        self.name = name
        self.version = version
        self.path = path
        self._loaded = tf.saved_model.load(str(path))
        self.signatures = {k: Signature(k, fn) for k, fn in self._loaded.signatures.items()}
        self.signature_defs = _read_signature_defs(path)
        if name == mc.MODEL_NAME:
            self._check_contract()

    def _check_contract(self) -> None:
        contract = mc.load_contract(self.path)
        contract.check_current()
        sig = self.signatures.get(mc.SIGNATURE_NAME)
        if sig is None:
            raise mc.ModelContractError(f"{self.path}: no {mc.SIGNATURE_NAME!r} signature")
        mc.check_io(
            contract,
            {k: (s.dtype.name, s.shape) for k, s in sig.inputs.items()},
            {k: (s.dtype.name, s.shape) for k, s in sig.outputs.items()},
            runtime=f"SavedModel {self.path}",
        )

    def signature(self, key: str) -> Signature:
        sig = self.signatures.get(key or mc.SIGNATURE_NAME)
        if sig is None:
            raise precondition(f'Serving signature key "{key}" not found.')
        return sig

    def warmup(self, records: Iterable[bytes]) -> int:
        """Replay ``PredictionLog`` records (predict_log only); returns how many ran."""
        import tensorflow as tf
        from tensorflow_serving.apis import prediction_log_pb2

        n = 0
        for raw in records:
            entry = prediction_log_pb2.PredictionLog.FromString(raw)
            if entry.WhichOneof("log_type") != "predict_log":
                raise invalid("Unsupported log_type for warmup: only predict_log is supported")
            req = entry.predict_log.request
            sig = self.signature(req.model_spec.signature_name)
            inputs = {k: tf.make_ndarray(v) for k, v in req.inputs.items()}
            sig.check_inputs(inputs)
            sig.run(inputs)
            n += 1
        return n


def read_warmup_records(path: Path, limit: int = 1000) -> list[bytes]:
    """Records of a TFRecord warmup file (TF Serving replays at most 1000)."""
    import tensorflow as tf

    if not path.exists():
        return []
    out = [bytes(r.numpy()) for r in tf.data.TFRecordDataset(str(path))]
    if len(out) > limit:
        raise invalid(f"{path}: {len(out)} warmup records, at most {limit} are allowed")
    return out


def _read_signature_defs(path: Path) -> dict[str, Any]:
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
    graph = sm.meta_graphs[0]
    return {k: v for k, v in graph.signature_def.items() if not k.startswith("__")}
