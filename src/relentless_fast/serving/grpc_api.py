"""gRPC ``tensorflow.serving.PredictionService`` and ``ModelService`` over a ModelManager."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc
import numpy as np
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from relentless_fast.serving.config import ConfigError, model_entries
from relentless_fast.serving.errors import ServingError, invalid
from relentless_fast.serving.manager import ModelManager

Array = np.ndarray[Any, Any]
R = TypeVar("R")

_DT_FROM_NUMPY = {"float32": 1, "float64": 2, "int32": 3, "uint8": 4, "int64": 9, "bool": 10}


def tensor_to_numpy(tp: Any, name: str) -> Array:
    import tensorflow as tf

    try:
        return np.asarray(tf.make_ndarray(tp))
    except Exception as exc:
        raise invalid(f"input {name!r}: cannot decode TensorProto: {exc}") from exc


def numpy_to_tensor(arr: Array, out: Any, *, as_content: bool) -> None:
    """Fill TensorProto ``out`` like TF Serving: typed ``*_val`` fields, or tensor_content."""
    dt = _DT_FROM_NUMPY.get(arr.dtype.name)
    if dt is None:
        raise ServingError(grpc.StatusCode.INTERNAL, f"unsupported output dtype {arr.dtype}")
    out.dtype = dt
    for d in arr.shape:
        out.tensor_shape.dim.add().size = int(d)
    if as_content:
        out.tensor_content = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
    elif dt == 1:
        out.float_val.extend(arr.ravel().tolist())
    elif dt == 2:
        out.double_val.extend(arr.ravel().tolist())
    elif dt in (3, 4):
        out.int_val.extend(arr.ravel().tolist())
    elif dt == 9:
        out.int64_val.extend(arr.ravel().tolist())
    else:
        out.bool_val.extend(arr.ravel().tolist())


def _guard(context: grpc.ServicerContext, fn: Callable[[], R]) -> R:
    try:
        return fn()
    except ServingError as exc:
        context.abort(exc.code, exc.message)
        raise  # unreachable: abort raises


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):  # type: ignore[misc]
    def __init__(self, manager: ModelManager, *, tensor_content: bool = False) -> None:
        self.manager = manager
        self.tensor_content = tensor_content

    def Predict(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return _guard(context, lambda: self._predict(request, context.time_remaining()))

    def _predict(self, request: Any, timeout: float | None) -> Any:
        inputs = {k: tensor_to_numpy(v, k) for k, v in request.inputs.items()}
        version, key, out = self.manager.predict(
            request.model_spec, inputs, list(request.output_filter), timeout
        )
        resp = predict_pb2.PredictResponse()
        for k, arr in out.items():
            numpy_to_tensor(arr, resp.outputs[k], as_content=self.tensor_content)
        resp.model_spec.name = request.model_spec.name
        resp.model_spec.version.value = version
        resp.model_spec.signature_name = key
        return resp

    def GetModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return _guard(context, lambda: metadata_response(self.manager, request))

    def Classify(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return _guard(context, lambda: self._wrong_method(request, "classify"))

    def Regress(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return _guard(context, lambda: self._wrong_method(request, "regress"))

    def MultiInference(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return _guard(
            context,
            lambda: self._wrong_method(request.tasks[0] if request.tasks else request, "classify"),
        )

    def _wrong_method(self, request: Any, method: str) -> Any:
        """Our models only have predict signatures: TF Serving's error for other methods."""
        spec = request.model_spec
        _, sv = self.manager.resolve(spec)
        key = spec.signature_name or "serving_default"
        sv.signature(key)
        got = sv.signature_defs[key].method_name if key in sv.signature_defs else "?"
        raise invalid(
            f"Expected {method} signature method_name to be tensorflow/serving/{method}. Was: {got}"
        )


_ = (classification_pb2, regression_pb2, inference_pb2)  # request/response types of the above


def metadata_response(manager: ModelManager, request: Any) -> Any:
    fields = list(request.metadata_field)
    if not fields:
        raise invalid("GetModelMetadataRequest must specify at least one metadata_field")
    for f in fields:
        if f != "signature_def":
            raise invalid(f"Metadata field {f} is not supported")
    vs, sv = manager.resolve(request.model_spec)
    sdm = get_model_metadata_pb2.SignatureDefMap()
    for k, v in sv.signature_defs.items():
        sdm.signature_def[k].CopyFrom(v)
    resp = get_model_metadata_pb2.GetModelMetadataResponse()
    resp.model_spec.name = request.model_spec.name
    resp.model_spec.version.value = vs.version
    resp.metadata["signature_def"].Pack(sdm)
    return resp


def status_response(manager: ModelManager, spec: Any) -> Any:
    which = spec.WhichOneof("version_choice")
    if which == "version_label":
        version: int | None = manager.label_version(spec.name, spec.version_label)
    elif which == "version":
        version = int(spec.version.value)
    else:
        version = None
    resp = get_model_status_pb2.GetModelStatusResponse()
    for vs in manager.status(spec.name, version):
        mvs = resp.model_version_status.add()
        mvs.version = vs.version
        mvs.state = vs.state
        mvs.status.error_code = vs.error_code
        mvs.status.error_message = vs.error_message
    return resp


class ModelService(model_service_pb2_grpc.ModelServiceServicer):  # type: ignore[misc]
    def __init__(
        self, manager: ModelManager, config_root: Path, on_reload: Callable[[], None] | None = None
    ) -> None:
        self.manager = manager
        self.config_root = config_root
        self.on_reload = on_reload

    def GetModelStatus(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return _guard(context, lambda: status_response(self.manager, request.model_spec))

    def HandleReloadConfigRequest(  # noqa: N802
        self, request: Any, context: grpc.ServicerContext
    ) -> Any:
        resp = model_management_pb2.ReloadConfigResponse()
        try:
            self.manager.apply(model_entries(request.config, self.config_root, source="request"))
            if self.on_reload is not None:
                self.on_reload()
        except ConfigError as exc:
            resp.status.error_code = 3
            resp.status.error_message = str(exc)
        except ServingError as exc:
            resp.status.error_code = exc.code.value[0]
            resp.status.error_message = exc.message
        return resp
