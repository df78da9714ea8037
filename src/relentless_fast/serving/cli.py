"""``relentless-fast serve-model``: TF Serving's command-line flags, same names and defaults.

Flags take ``--flag=value`` or ``--flag value``; boolean flags also take no value (true).
Flags marked "accepted" exist so a real server's command line runs unchanged; they have no effect
here. ``--bind_address`` is ours (the real server binds every interface).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def _bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _flag(p: argparse.ArgumentParser, name: str, default: bool, help: str) -> None:
    p.add_argument(
        f"--{name}",
        type=_bool,
        nargs="?",
        const=True,
        default=default,
        metavar="BOOL",
        help=f"{help} (default {str(default).lower()})",
    )


ACCEPTED_ONLY: tuple[tuple[str, type, Any], ...] = (
    ("grpc_socket_path", str, ""),
    ("grpc_channel_arguments", str, ""),
    ("file_system_poll_wait_seconds", int, 1),
    ("num_load_threads", int, 0),
    ("num_unload_threads", int, 0),
    ("max_num_load_retries", int, 5),
    ("load_retry_interval_micros", int, 60_000_000),
    ("tensorflow_session_parallelism", int, 0),
    ("tensorflow_session_config_file", str, ""),
    ("ssl_config_file", str, ""),
    ("platform_config_file", str, ""),
    ("saved_model_tags", str, "serve"),
    ("num_request_iterations_for_warmup", int, 1),
    ("rest_api_num_threads", int, 0),
    ("monitoring_config_file", str, ""),
    ("thread_pool_factory_config_file", str, ""),
    ("mixed_precision", str, ""),
)
ACCEPTED_BOOLS: tuple[tuple[str, bool], ...] = (
    ("allow_version_labels", True),
    ("enable_per_model_batching_parameters", False),
    ("flush_filesystem_caches", True),
    ("use_alts_credentials", False),
    ("xla_cpu_compilation_enabled", False),
    ("enable_signature_method_name_check", False),
    ("remove_unused_fields_from_bundle_metagraph", True),
    ("prefer_tflite_model", False),
    ("rest_api_enable_cors_support", False),
    ("enable_profiler", True),
    ("skip_initialize_tpu", False),
)


def add_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=8500, help="gRPC port (0: no gRPC)")
    p.add_argument("--rest_api_port", type=int, default=0, help="REST port (0: no REST)")
    p.add_argument("--rest_api_timeout_in_ms", type=int, default=30_000)
    p.add_argument("--grpc_max_threads", type=int, default=64)
    p.add_argument("--bind_address", default="0.0.0.0", help="address both servers bind (ours)")
    p.add_argument(
        "--model_config_file",
        type=Path,
        default=None,
        help="text ModelServerConfig (relative base_path: relative to this file)",
    )
    p.add_argument(
        "--model_config_file_poll_wait_seconds",
        type=int,
        default=0,
        help="re-read the config file at this period (0: never)",
    )
    p.add_argument("--model_name", default="default", help="single model without a config file")
    p.add_argument("--model_base_path", type=Path, default=None)
    _flag(p, "enable_batching", False, "server-side batching")
    p.add_argument(
        "--batching_parameters_file",
        type=Path,
        default=None,
        help="text BatchingParameters (defaults when absent)",
    )
    _flag(p, "enable_model_warmup", True, "replay assets.extra/tf_serving_warmup_requests")
    _flag(
        p,
        "allow_version_labels_for_unavailable_models",
        False,
        "labels may point at versions that are not AVAILABLE",
    )
    _flag(
        p,
        "enable_serialization_as_tensor_content",
        False,
        "responses carry tensor_content instead of typed *_val fields",
    )
    p.add_argument(
        "--per_process_gpu_memory_fraction",
        type=float,
        default=0.0,
        help="GPU memory fraction (0: default); on TF2 GPUs: memory growth",
    )
    p.add_argument("--tensorflow_intra_op_parallelism", type=int, default=0)
    p.add_argument("--tensorflow_inter_op_parallelism", type=int, default=0)
    for name, typ, default in ACCEPTED_ONLY:
        p.add_argument(f"--{name}", type=typ, default=default, help="accepted, no effect")
    for name, bdefault in ACCEPTED_BOOLS:
        _flag(p, name, bdefault, "accepted, no effect")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "serve-model",
        help="TF-Serving-compatible model server (gRPC + REST) over models/",
        description="Serve SavedModels with TF Serving's gRPC and REST APIs and flags.",
    )
    add_flags(p)
    p.set_defaults(func=_run)


def serve_args(ns: argparse.Namespace) -> Any:
    from relentless_fast.serving.server import ServeArgs

    fields = ServeArgs.__dataclass_fields__
    return ServeArgs(**{k: getattr(ns, k) for k in fields if hasattr(ns, k)})


def _run(ns: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from relentless_fast.serving.server import serve

    code: int = serve(serve_args(ns))
    return code


def main(argv: list[str] | None = None) -> int:
    """``python -m relentless_fast.serving.cli`` (same as ``relentless-fast serve-model``)."""
    p = argparse.ArgumentParser(prog="serve-model")
    add_flags(p)
    return _run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
