"""serve-model's REST API with httpx: status, metadata, predict (row and columnar), errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from relentless_fast import model_contract as mc
from relentless_fast.serving.launcher import ServerProcess
from tests.serving.conftest import direct, sample_inputs

M = f"/v1/models/{mc.MODEL_NAME}"


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.rest_url, timeout=30) as c:
        yield c


def test_status_all_versions(client: httpx.Client) -> None:
    r = client.get(M)
    assert r.status_code == 200
    assert r.json() == {
        "model_version_status": [
            {
                "version": str(v),
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
            for v in (1, 2, 3)
        ]
    }


@pytest.mark.parametrize(("path", "version"), [("/versions/2", 2), ("/labels/stable", 1)])
def test_status_one_version(client: httpx.Client, path: str, version: int) -> None:
    r = client.get(M + path)
    assert [s["version"] for s in r.json()["model_version_status"]] == [str(version)]


def test_metadata(client: httpx.Client) -> None:
    r = client.get(M + "/labels/canary/metadata")
    assert r.status_code == 200
    doc = r.json()
    assert doc["model_spec"] == {"name": mc.MODEL_NAME, "signature_name": "", "version": "2"}
    sig = doc["metadata"]["signature_def"]["signature_def"][mc.SIGNATURE_NAME]
    assert set(sig["inputs"]) == set(mc.INPUT_NAMES)
    assert set(sig["outputs"]) == set(mc.OUTPUT_NAMES)
    assert sig["inputs"]["ticks"]["dtype"] == "DT_FLOAT"
    assert sig["inputs"]["ticks"]["tensor_shape"]["dim"][0]["size"] == "-1"
    assert sig["method_name"] == "tensorflow/serving/predict"


def _close(got: dict[str, Any], want: dict[str, np.ndarray]) -> None:
    assert set(got) == set(want)
    for k, v in want.items():
        np.testing.assert_allclose(np.asarray(got[k], np.float32), v, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("version", [1, 2, 3])
def test_predict_row_format(
    client: httpx.Client, saved_models: dict[int, Any], version: int
) -> None:
    inputs = sample_inputs(4, seed=40 + version)
    instances = [{k: inputs[k][i].tolist() for k in inputs} for i in range(4)]
    r = client.post(f"{M}/versions/{version}:predict", json={"instances": instances})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert len(preds) == 4
    want = direct(saved_models[version], inputs)
    _close({k: [p[k] for p in preds] for k in preds[0]}, want)


@pytest.mark.parametrize(("label", "version"), [("stable", 1), ("canary", 2), ("dev", 3)])
def test_predict_columnar_by_label(
    client: httpx.Client, saved_models: dict[int, Any], label: str, version: int
) -> None:
    inputs = sample_inputs(3, seed=60 + version)
    body = {
        "signature_name": mc.SIGNATURE_NAME,
        "inputs": {k: v.tolist() for k, v in inputs.items()},
    }
    r = client.post(f"{M}/labels/{label}:predict", json=body)
    assert r.status_code == 200, r.text
    _close(r.json()["outputs"], direct(saved_models[version], inputs))


def test_paths_are_case_insensitive(client: httpx.Client) -> None:
    assert client.get(f"/V1/MODELS/{mc.MODEL_NAME}/VERSIONS/1").status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "status", "needle"),
    [
        (
            "/v1/models/nope:predict",
            {"instances": [1]},
            404,
            "Servable not found for request: Latest(nope)",
        ),
        (
            f"{M}/versions/9:predict",
            {"instances": [1]},
            404,
            f"Servable not found for request: Specific({mc.MODEL_NAME}, 9)",
        ),
        (
            f"{M}/labels/beta:predict",
            {"instances": [1]},
            400,
            "Unrecognized servable version label: beta",
        ),
        (
            f"{M}:predict",
            {"signature_name": "x", "instances": [1]},
            400,
            'Serving signature key "x" not found.',
        ),
        (
            f"{M}:predict",
            {"instances": [1], "inputs": [1]},
            400,
            "Not both of 'instances' and 'inputs' can be specified",
        ),
        (f"{M}:predict", {}, 400, "Missing 'inputs' or 'instances' key"),
        (
            f"{M}:predict",
            {"inputs": {"ticks": [[0.0] * 20]}},
            400,
            "Missing but required: {context}",
        ),
        (
            f"{M}:predict",
            {"inputs": {"ticks": [[0.0] * 3], "context": [[0.0] * 92]}},
            400,
            "'ticks'",
        ),
        (f"{M}:classify", {"examples": []}, 400, "tensorflow/serving/classify"),
    ],
)
def test_errors(
    client: httpx.Client, path: str, body: dict[str, Any], status: int, needle: str
) -> None:
    r = client.post(path, json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert needle in r.json()["error"]


def test_bad_json(client: httpx.Client) -> None:
    r = client.post(f"{M}:predict", content=b"{not json")
    assert r.status_code == 400 and "error" in r.json()


def test_unknown_model_status(client: httpx.Client) -> None:
    r = client.get("/v1/models/nope")
    assert r.status_code == 404
    assert r.json() == {"error": "Could not find any versions of model nope"}
