"""Shared fixtures of the inference tests.

TensorFlow is allowed in tests (never in ``relentless_fast.inference``): it builds the reference
protos and a tiny stand-in model with the production input/output names.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_MODEL_DIR = REPO_ROOT / "models" / "relentless_financial"


@pytest.fixture(scope="session")
def predict_pb2() -> ModuleType:
    """``tensorflow_serving.apis.predict_pb2`` (skips when the serve extra is absent)."""
    module: ModuleType = pytest.importorskip("tensorflow_serving.apis.predict_pb2")
    return module


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A tiny SavedModel + .tflite pair with the production inputs and output names."""
    from tests.inference.standin_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"))
