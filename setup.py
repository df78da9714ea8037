"""Build of the compiled parts of relentless-fast that setuptools owns.

- Cython: every ``ext/<name>.pyx`` becomes ``relentless_fast.<name>``. All compiler directives live in
  the one ``cythonize`` call below. ``RF_CYTHON_ANNOTATE=1`` writes HTML annotation next to the
  sources; ``RF_CYTHON_COVERAGE=1`` builds with line tracing for coverage; ``RF_EXT=_tickparse``
  rebuilds one module only (``python setup.py build_ext --inplace`` during development).
- Protocol buffers: every ``proto/**/*.proto`` is compiled by grpcio-tools into
  ``relentless_fast/_proto`` (messages, gRPC stubs and ``.pyi`` stubs). Generated code is never
  committed nor edited by hand.

The Rust signal codec is a separate maturin-built distribution in ``rust/``; see README.md.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent.resolve()
PROTO_DIR = ROOT / "proto"
PROTO_OUT = ROOT / "src" / "relentless_fast" / "_proto"


def generate_protos() -> None:
    """Compile proto/ into relentless_fast/_proto with grpcio-tools (idempotent)."""
    from grpc_tools import protoc  # build requirement
    import grpc_tools

    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    if not protos:
        return
    PROTO_OUT.mkdir(parents=True, exist_ok=True)
    include = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--python_out={PROTO_OUT}",
        f"--pyi_out={PROTO_OUT}",
        f"--grpc_python_out={PROTO_OUT}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed on {protos}")
    # grpc_tools writes absolute `import x_pb2`; make them package-relative.
    for path in PROTO_OUT.rglob("*_pb2*.py"):
        text = path.read_text()
        fixed = _relativise_imports(text, protos)
        if fixed != text:
            path.write_text(fixed)
    (PROTO_OUT / "__init__.py").write_text('"""Generated from proto/ by the build. Do not edit."""\n')


def _relativise_imports(text: str, protos: list[str]) -> str:
    for proto in protos:
        module = proto[: -len(".proto")].replace("/", ".") + "_pb2"
        text = text.replace(f"\nimport {module} as ", f"\nfrom . import {module.rsplit('.', 1)[-1]} as ")
    return text


class BuildPyWithProtos(build_py):
    def run(self) -> None:
        generate_protos()
        super().run()


def extensions() -> list[Extension]:
    only = os.environ.get("RF_EXT")
    exts = []
    for pyx in sorted((ROOT / "ext").glob("*.pyx")):
        name = pyx.stem
        if only and name != only:
            continue
        exts.append(
            Extension(
                f"relentless_fast.{name}",
                [str(pyx.relative_to(ROOT))],
                include_dirs=[np.get_include(), "ext"],
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")],
                extra_compile_args=["-O3", "-fno-strict-aliasing", "-Wno-unused-function"],
            )
        )
    return exts


coverage = os.environ.get("RF_CYTHON_COVERAGE") == "1"
directives = {
    "language_level": 3,
    "boundscheck": False,
    "wraparound": False,
    "initializedcheck": False,
    "cdivision": True,
    "nonecheck": False,
    "embedsignature": True,
    "auto_pickle": False,
    "autotestdict": False,
    "linetrace": coverage,
    "warn.undeclared": False,
    "warn.unused": False,
}

# Always regenerate: cheap, idempotent, and covers build_ext --inplace and editable installs.
generate_protos()

setup(
    ext_modules=cythonize(
        extensions(),
        compiler_directives=directives,
        annotate=os.environ.get("RF_CYTHON_ANNOTATE") == "1",
        include_path=["ext"],
    ),
    cmdclass={"build_py": BuildPyWithProtos},
)
