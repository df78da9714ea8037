"""The package's top level: the embedding API is reachable, and importing it stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest

import relentless_fast


def test_engine_is_exported_lazily() -> None:
    from relentless_fast.engine import Engine

    assert relentless_fast.Engine is Engine
    assert "Engine" in relentless_fast.__all__
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = relentless_fast.Nope  # type: ignore[attr-defined]


def test_plain_import_loads_neither_engine_nor_tensorflow() -> None:
    code = (
        "import sys, relentless_fast; "
        "print(any(m.startswith(('tensorflow', 'relentless_fast.engine')) for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
