"""A small in-process stand-in for TF Serving's ``PredictionService/Predict`` (tests only).

It speaks the real protocol on raw bytes (parsed and answered with the official ``predict_pb2``),
serves the stand-in SavedModel versions by label or version, and lets a test inject delays,
errors and outages. Replies use typed ``float_val`` fields, as TF Serving does by default.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import grpc
import grpc.aio
import numpy as np

from tests.inference.standin_model import TinyModel, saved_model_predict


class StandinServer:
    def __init__(
        self, model: TinyModel, labels: dict[str, int] | None = None, port: int = 0
    ) -> None:
        from tensorflow_serving.apis import predict_pb2

        self.pb = predict_pb2
        self.model = model
        self.labels = labels or {"stable": 1, "canary": 2}
        self.port = port
        self.delay_s = 0.0
        self.fail_code: grpc.StatusCode | None = None
        self.requests: list[bytes] = []
        self.calls_by_version: Counter[int] = Counter()
        self.rows_by_version: Counter[int] = Counter()
        self.symbols_seen: list[Any] = []
        self._server: grpc.aio.Server | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self, host: str = "127.0.0.1") -> None:
        server = grpc.aio.server()
        handler = grpc.method_handlers_generic_handler(
            "tensorflow.serving.PredictionService",
            {"Predict": grpc.unary_unary_rpc_method_handler(self._predict)},
        )
        server.add_generic_rpc_handlers((handler,))
        self.port = server.add_insecure_port(f"{host}:{self.port}")
        await server.start()
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(0)
            self._server = None

    async def _predict(
        self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> bytes:
        self.requests.append(request)
        req = self.pb.PredictRequest.FromString(request)
        spec = req.model_spec
        if spec.HasField("version"):
            version = spec.version.value
        elif spec.version_label:
            if spec.version_label not in self.labels:
                await context.abort(
                    grpc.StatusCode.NOT_FOUND,
                    f"Servable not found for request: Specific({spec.version_label})",
                )
            version = self.labels[spec.version_label]
        else:
            version = max(self.labels.values())
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail_code is not None:
            await context.abort(self.fail_code, "injected failure")
        arrays = {}
        for name, tensor in req.inputs.items():
            shape = [d.size for d in tensor.tensor_shape.dim]
            arrays[name] = np.frombuffer(tensor.tensor_content, "<f4").reshape(shape)
        outputs = saved_model_predict(
            self.model.saved_model(version), arrays["ticks"], arrays["context"]
        )
        self.calls_by_version[version] += 1
        self.rows_by_version[version] += arrays["ticks"].shape[0]
        resp = self.pb.PredictResponse()
        resp.model_spec.name = spec.name
        resp.model_spec.version.value = version
        resp.model_spec.signature_name = spec.signature_name or "serving_default"
        for name, arr in outputs.items():
            t = resp.outputs[name]
            t.dtype = 1
            for d in arr.shape:
                t.tensor_shape.dim.add().size = d
            t.float_val.extend(arr.ravel().tolist())
        out: bytes = resp.SerializeToString()
        return out
