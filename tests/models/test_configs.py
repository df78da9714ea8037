"""models/config*.pbtxt parse with tensorflow-serving-api's ModelServerConfig, batching.config with
our BatchingParameters (TF Serving's package, names and numbers), and Dockerfile.gpu's flags with
serve-model's parser."""

from __future__ import annotations

import argparse
import json
import re
import shlex
from pathlib import Path

import pytest
from google.protobuf import descriptor_pool, text_format

from relentless_fast._proto import tf_serving_batching_parameters_pb2 as bp
from relentless_fast.serving.config import (
    ConfigError,
    load_batching_parameters,
    load_model_server_config,
    parse_batching_parameters,
)

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
msc = pytest.importorskip("tensorflow_serving.config.model_server_config_pb2")


def parse_official(path: Path) -> object:
    cfg = msc.ModelServerConfig()
    text_format.Parse(path.read_text(), cfg)
    return cfg


def test_config_pbtxt_is_stable_1_canary_2() -> None:
    cfg = parse_official(MODELS / "config.pbtxt")
    (m,) = cfg.model_config_list.config
    assert m.name == "relentless_financial"
    assert m.model_platform == "tensorflow"
    assert list(m.model_version_policy.specific.versions) == [1, 2]
    assert dict(m.version_labels) == {"stable": 1, "canary": 2}
    assert (MODELS / m.base_path).is_dir()


def test_docker_config_differs_only_in_base_path() -> None:
    a = parse_official(MODELS / "config.pbtxt")
    b = parse_official(MODELS / "config.docker.pbtxt")
    assert b.model_config_list.config[0].base_path == "/models/relentless_financial"
    b.model_config_list.config[0].base_path = a.model_config_list.config[0].base_path
    assert a == b


def test_all_versions_config_lists_1_2_3() -> None:
    (m,) = parse_official(MODELS / "config.all_versions.pbtxt").model_config_list.config
    assert list(m.model_version_policy.specific.versions) == [1, 2, 3]
    assert dict(m.version_labels) == {"stable": 1, "canary": 2, "dev": 3}
    entries = load_model_server_config(MODELS / "config.all_versions.pbtxt")
    assert entries[0].base_path == MODELS / "relentless_financial"
    for v in (1, 2, 3):
        assert (entries[0].base_path / str(v) / "saved_model.pb").is_file()


def test_batching_parameters_proto_matches_tf_serving() -> None:
    d = bp.BatchingParameters.DESCRIPTOR
    assert d.full_name == "tensorflow.serving.BatchingParameters"
    fields = {
        f.name: (f.number, f.message_type.full_name if f.message_type else None) for f in d.fields
    }
    assert fields == {
        "max_batch_size": (1, "google.protobuf.Int64Value"),
        "batch_timeout_micros": (2, "google.protobuf.Int64Value"),
        "max_enqueued_batches": (3, "google.protobuf.Int64Value"),
        "num_batch_threads": (4, "google.protobuf.Int64Value"),
        "thread_pool_name": (5, "google.protobuf.StringValue"),
        "allowed_batch_sizes": (6, None),
        "pad_variable_length_inputs": (7, None),
        "enable_large_batch_splitting": (8, "google.protobuf.BoolValue"),
        "max_execution_batch_size": (9, "google.protobuf.Int64Value"),
    }
    # Coexists with tensorflow-serving-api's files in the default pool (no name clash).
    import tensorflow_serving.apis.prediction_service_pb2  # noqa: F401

    pool = descriptor_pool.Default()
    assert pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters") is d
    assert pool.FindMessageTypeByName("tensorflow.serving.PredictRequest") is not None


def test_batching_config_parses() -> None:
    msg = bp.BatchingParameters()
    text_format.Parse((MODELS / "batching.config").read_text(), msg)
    assert msg.max_batch_size.value == 128
    assert list(msg.allowed_batch_sizes) == [1, 8, 32, 128]
    opts = load_batching_parameters(MODELS / "batching.config")
    assert opts.max_batch_size == 128 and opts.batch_timeout_micros == 1000
    assert opts.max_enqueued_batches == 16 and opts.num_batch_threads == 2
    assert [opts.padded_size(n) for n in (1, 2, 8, 9, 33, 128)] == [1, 8, 8, 32, 128, 128]


def test_warmup_batch_sizes_are_the_allowed_sizes() -> None:
    from relentless_fast.training.export import WARMUP_BATCH_SIZES

    opts = load_batching_parameters(MODELS / "batching.config")
    assert opts.allowed_batch_sizes == WARMUP_BATCH_SIZES


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("max_batch_size { value: 8 } allowed_batch_sizes: 4 allowed_batch_sizes: 2", "increasing"),
        ("max_batch_size { value: 8 } allowed_batch_sizes: 4", "must equal max_batch_size"),
        ("max_batch_size { value: 0 }", "max_batch_size must be > 0"),
        ("max_batch_size: 8", "not a text BatchingParameters"),
    ],
)
def test_bad_batching_config_is_a_clear_error(text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        parse_batching_parameters(text)


# -- Dockerfile.gpu -------------------------------------------------------------------------------


def dockerfile_cmd() -> list[str]:
    text = (ROOT / "Dockerfile.gpu").read_text()
    assert re.search(r"^FROM tensorflow/serving:latest-gpu\s*$", text, re.M)
    m = re.search(r"^CMD\s+(\[.*?\])\s*$", text, re.M | re.S)
    assert m, "Dockerfile.gpu needs an exec-form CMD (flags only)"
    cmd = json.loads(m.group(1).replace("\\\n", ""))
    assert all(a.startswith("--") for a in cmd), "CMD holds flags only (entrypoint is the server)"
    return list(cmd)


def test_dockerfile_paths_exist() -> None:
    text = (ROOT / "Dockerfile.gpu").read_text()
    copies = re.findall(r"^COPY\s+(\S+)\s+(\S+)\s*$", text, re.M)
    assert ("models/", "/models/") in copies
    for src, _ in copies:
        assert (ROOT / src).exists(), src
    paths = [a.split("=", 1)[1] for a in dockerfile_cmd() if "=" in a and "/" in a.split("=", 1)[1]]
    assert paths
    for p in paths:
        assert p.startswith("/models/"), p
        assert (MODELS / p.removeprefix("/models/")).exists(), p
    cfg = parse_official(MODELS / "config.docker.pbtxt")
    for m in cfg.model_config_list.config:
        local = MODELS / m.base_path.removeprefix("/models/")
        assert local.is_dir()
        for v in m.model_version_policy.specific.versions:
            assert (local / str(v) / "assets.extra" / "tf_serving_warmup_requests").is_file()


def test_dockerfile_flags_are_serve_model_flags() -> None:
    from relentless_fast.serving.cli import add_flags, serve_args

    p = argparse.ArgumentParser(exit_on_error=False)
    add_flags(p)
    entrypoint = shlex.split(
        "--port=8500 --rest_api_port=8501 --model_name=relentless_financial "
        "--model_base_path=/models/relentless_financial"
    )
    ns = p.parse_args(entrypoint + dockerfile_cmd())
    a = serve_args(ns)
    assert a.enable_batching and a.enable_model_warmup
    assert str(a.model_config_file) == "/models/config.docker.pbtxt"
    assert str(a.batching_parameters_file) == "/models/batching.config"
    assert 0 < a.per_process_gpu_memory_fraction <= 1
    assert a.allow_version_labels_for_unavailable_models


def test_serve_model_rejects_unknown_flags() -> None:
    from relentless_fast.serving.cli import add_flags

    p = argparse.ArgumentParser(exit_on_error=False)
    add_flags(p)
    with pytest.raises(SystemExit):
        p.parse_args(["--no_such_flag=1"])
    ns = p.parse_args(["--enable_batching", "--enable_model_warmup=false"])
    assert ns.enable_batching is True and ns.enable_model_warmup is False
