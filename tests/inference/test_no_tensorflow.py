"""The engine side never imports TensorFlow (DESIGN.md, decided)."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import importlib, pkgutil, sys
import relentless_fast.inference as pkg
names = [m.name for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")]
for name in names:
    importlib.import_module(name)
bad = sorted(m for m in sys.modules if m == "tensorflow" or m.startswith(("tensorflow.",
             "tensorflow_serving", "keras", "tf_keras")))
print(len(names))
print(",".join(bad))
"""


def test_inference_package_never_imports_tensorflow() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, check=True, timeout=120
    ).stdout.splitlines()
    assert int(out[0]) >= 1, "no submodules found: the check would be vacuous"
    assert out[1:] == [""], f"TensorFlow imported by relentless_fast.inference: {out[1:]}"
