"""The ``serve-model`` process: load the config, warm up, then serve gRPC and REST until stopped.

Like the real server, nothing listens until the initial config has loaded (every version warmed up
and AVAILABLE or failed with a status). ``--model_config_file_poll_wait_seconds`` > 0 re-reads the
config file at that period and applies it when its text changed; a bad new config is logged and
the previous one stays in force. ``HandleReloadConfigRequest`` applies a config sent over gRPC.
"""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from relentless_fast.serving.config import (
    ConfigError,
    ModelEntry,
    load_batching_parameters,
    load_model_server_config,
)
from relentless_fast.serving.errors import ServingError
from relentless_fast.serving.manager import ModelManager, ServerOptions

if TYPE_CHECKING:
    from relentless_fast.serving.rest_api import RestServer

log = logging.getLogger("relentless_fast.serving")


@dataclass(frozen=True, kw_only=True)
class ServeArgs:
    port: int = 8500
    rest_api_port: int = 0
    bind_address: str = "0.0.0.0"
    rest_api_timeout_in_ms: int = 30_000
    grpc_max_threads: int = 64
    model_config_file: Path | None = None
    model_config_file_poll_wait_seconds: int = 0
    model_name: str = "default"
    model_base_path: Path | None = None
    enable_batching: bool = False
    batching_parameters_file: Path | None = None
    enable_model_warmup: bool = True
    allow_version_labels_for_unavailable_models: bool = False
    enable_serialization_as_tensor_content: bool = False
    per_process_gpu_memory_fraction: float = 0.0
    tensorflow_intra_op_parallelism: int = 0
    tensorflow_inter_op_parallelism: int = 0


def initial_entries(a: ServeArgs) -> list[ModelEntry]:
    if a.model_config_file is not None:
        return load_model_server_config(a.model_config_file)
    if a.model_base_path is None:
        raise ConfigError("Both server_model_config_file and model_base_path are empty!")
    return [ModelEntry(a.model_name, a.model_base_path.resolve(), "latest", (), 1, {})]


def configure_tensorflow(a: ServeArgs) -> None:
    import tensorflow as tf

    if a.tensorflow_intra_op_parallelism:
        tf.config.threading.set_intra_op_parallelism_threads(a.tensorflow_intra_op_parallelism)
    if a.tensorflow_inter_op_parallelism:
        tf.config.threading.set_inter_op_parallelism_threads(a.tensorflow_inter_op_parallelism)
    if not 0.0 <= a.per_process_gpu_memory_fraction <= 1.0:
        raise ConfigError("--per_process_gpu_memory_fraction must be in [0, 1]")
    gpus = tf.config.list_physical_devices("GPU")
    if gpus and a.per_process_gpu_memory_fraction > 0:
        # TF2 has no per-process fraction; grow on demand instead (the real server enforces it).
        for g in gpus:
            tf.config.experimental.set_memory_growth(g, True)
        log.warning("per_process_gpu_memory_fraction: using memory growth on %d GPU(s)", len(gpus))


class ModelServer:
    def __init__(self, a: ServeArgs) -> None:
        self.args = a
        batching = None
        if a.enable_batching:
            batching = (
                load_batching_parameters(a.batching_parameters_file)
                if a.batching_parameters_file is not None
                else None
            )
            if batching is None:
                from relentless_fast.serving.config import BatchingOptions

                batching = BatchingOptions()
        self.manager = ModelManager(
            ServerOptions(
                enable_batching=a.enable_batching,
                batching=batching,
                enable_model_warmup=a.enable_model_warmup,
                allow_labels_for_unavailable=a.allow_version_labels_for_unavailable_models,
            )
        )
        self._stop = threading.Event()
        self._config_text = self._read_config_text()
        self.grpc_server: grpc.Server | None = None
        self.rest: RestServer | None = None

    def _read_config_text(self) -> str | None:
        p = self.args.model_config_file
        try:
            return p.read_text() if p is not None else None
        except OSError:
            return None

    def start(self) -> None:
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        from relentless_fast.serving.grpc_api import ModelService, PredictionService
        from relentless_fast.serving.rest_api import RestServer

        a = self.args
        configure_tensorflow(a)
        self.manager.apply(initial_entries(a))
        root = a.model_config_file.parent.resolve() if a.model_config_file else Path.cwd()
        if a.port:
            server = grpc.server(
                futures.ThreadPoolExecutor(max_workers=a.grpc_max_threads),
                options=[
                    ("grpc.max_receive_message_length", -1),
                    ("grpc.max_send_message_length", -1),
                    ("grpc.so_reuseport", 0),
                ],
            )
            prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
                PredictionService(
                    self.manager, tensor_content=a.enable_serialization_as_tensor_content
                ),
                server,
            )
            model_service_pb2_grpc.add_ModelServiceServicer_to_server(
                ModelService(self.manager, root), server
            )
            bound = server.add_insecure_port(f"{a.bind_address}:{a.port}")
            if bound == 0:
                raise OSError(f"cannot bind gRPC port {a.bind_address}:{a.port}")
            server.start()
            self.grpc_server = server
            print(f"Running gRPC ModelServer at {a.bind_address}:{a.port} ...", flush=True)
        if a.rest_api_port:
            self.rest = RestServer(
                self.manager, a.bind_address, a.rest_api_port, a.rest_api_timeout_in_ms / 1000
            )
            self.rest.start()
            print(f"Exporting HTTP/REST API at:{a.bind_address}:{a.rest_api_port} ...", flush=True)
        if a.model_config_file is not None and a.model_config_file_poll_wait_seconds > 0:
            threading.Thread(target=self._poll_config, name="config-poll", daemon=True).start()

    def _poll_config(self) -> None:
        path = self.args.model_config_file
        assert path is not None
        while not self._stop.wait(self.args.model_config_file_poll_wait_seconds):
            text = self._read_config_text()
            if text is None or text == self._config_text:
                continue
            try:
                self.manager.apply(load_model_server_config(path))
                self._config_text = text
                log.info("applied new model config from %s", path)
            except (ConfigError, ServingError) as exc:
                log.error("new model config %s refused, previous kept: %s", path, exc)
                self._config_text = text  # do not retry the same bad text every period

    def wait(self) -> None:
        self._stop.wait()

    def stop(self) -> None:
        self._stop.set()
        if self.grpc_server is not None:
            self.grpc_server.stop(grace=1).wait()
        if self.rest is not None:
            self.rest.stop()
        self.manager.stop()


def serve(a: ServeArgs) -> int:
    """Run until SIGINT/SIGTERM; returns the exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        server = ModelServer(a)
        server.start()
    except (ConfigError, ServingError, OSError) as exc:
        msg = exc.message if isinstance(exc, ServingError) else str(exc)
        print(f"Failed to start server. Error: {msg}", flush=True)
        return 1
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: server._stop.set())
    server.wait()
    server.stop()
    return 0
