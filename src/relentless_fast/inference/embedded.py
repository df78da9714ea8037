"""Embedded backend: LiteRT on a model version's ``assets.extra/model.tflite`` (no TensorFlow).

One interpreter per allowed batch size, each sized once at load, so the hot path never resizes or
reallocates: a batch of ``n`` rows runs on the smallest bucket ``>= n`` (padded; padding rows are
computed and discarded), and a batch above the largest bucket runs as several chunks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from relentless_fast.model_contract import (
    INPUT_CONTEXT,
    INPUT_TICKS,
    SIGNATURE_NAME,
    TFLITE_FILE,
    ModelContractError,
    check_io,
    check_version_number,
    load_contract,
)

Outputs = dict[str, npt.NDArray[np.float32]]
DEFAULT_BATCH_SIZES: tuple[int, ...] = (1, 8, 32, 128)


def _interpreter(path: Path, num_threads: int) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=str(path), num_threads=num_threads)


class _Bucket:
    """One interpreter sized for ``size`` rows, run through zero-copy views of its tensors.

    The views (``interp.tensor(i)()``) stay valid because the bucket is never resized after
    ``allocate_tensors``. Holding them makes the interpreter's public ``invoke`` refuse to run
    (its safety check counts references), so the bucket calls the wrapped interpreter's
    ``Invoke`` directly: the same C++ call, without the check and without the copies of
    ``set_tensor``/``get_tensor``. Rows past ``n`` keep their previous contents (computed and
    discarded: rows are independent).
    """

    __slots__ = ("context", "interp", "invoke", "outputs", "size", "ticks")

    def __init__(
        self, path: Path, size: int, widths: tuple[int, int], num_threads: int, signature: str
    ) -> None:
        self.size = size
        self.interp = _interpreter(path, num_threads)
        sig = self.interp._get_full_signature_list()[signature]
        ix_ticks: int = sig["inputs"][INPUT_TICKS]
        ix_context: int = sig["inputs"][INPUT_CONTEXT]
        self.interp.resize_tensor_input(ix_ticks, [size, widths[0]], strict=True)
        self.interp.resize_tensor_input(ix_context, [size, widths[1]], strict=True)
        self.interp.allocate_tensors()
        self.ticks: npt.NDArray[np.float32] = self.interp.tensor(ix_ticks)()
        self.context: npt.NDArray[np.float32] = self.interp.tensor(ix_context)()
        self.ticks[:] = 0.0
        self.context[:] = 0.0
        self.outputs: dict[str, npt.NDArray[np.float32]] = {
            name: self.interp.tensor(ix)() for name, ix in sorted(sig["outputs"].items())
        }
        """Output tensor views by name (overwritten by every invoke)."""
        self.invoke: Callable[[], None] = self.interp._interpreter.Invoke

    def run(self, ticks: npt.NDArray[np.float32], context: npt.NDArray[np.float32]) -> Outputs:
        """Outputs for ``n <= size`` rows, copied out of the tensors."""
        n = ticks.shape[0]
        if n == self.size:  # a full bucket: whole-tensor copies, no slicing
            self.ticks[...] = ticks
            self.context[...] = context
            self.invoke()
            return {name: v.copy() for name, v in self.outputs.items()}
        self.ticks[:n] = ticks
        self.context[:n] = context
        self.invoke()
        return {name: v[:n].copy() for name, v in self.outputs.items()}


class LiteRTModel:
    """One model version on LiteRT, ready for every allowed batch size.

    Parameters
    ----------
    tflite_path:
        The ``.tflite`` file (``<version>/assets.extra/model.tflite``).
    version:
        The model version the signals will carry.
    batch_sizes:
        Allowed batch sizes (buckets), increasing; one interpreter each.
    num_threads:
        LiteRT threads per interpreter (1: the engine owns one core).
    """

    def __init__(
        self,
        tflite_path: str | Path,
        *,
        version: int,
        batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
        num_threads: int = 1,
        signature: str = SIGNATURE_NAME,
    ) -> None:
        check_version_number(version)
        sizes = tuple(int(b) for b in batch_sizes)
        if not sizes or any(b <= 0 for b in sizes) or list(sizes) != sorted(set(sizes)):
            raise ValueError(f"batch_sizes must be positive and increasing, got {sizes}")
        self.path = Path(tflite_path)
        self.version = version
        self.batch_sizes = sizes
        probe = _interpreter(self.path, num_threads)
        sig_list = probe._get_full_signature_list()
        if signature not in sig_list:
            raise ModelContractError(
                f"{self.path}: signature {signature!r} missing (model has {sorted(sig_list)})"
            )
        sig = sig_list[signature]
        self.inputs = _details(probe, sig["inputs"])
        self.outputs = _details(probe, sig["outputs"])
        for name in (INPUT_TICKS, INPUT_CONTEXT):
            if name not in self.inputs:
                raise ModelContractError(
                    f"{self.path}: input {name!r} missing (model has {sorted(self.inputs)})"
                )
        widths = (int(self.inputs[INPUT_TICKS][1][1]), int(self.inputs[INPUT_CONTEXT][1][1]))
        self.n_features, self.context_dim = widths
        self.output_names: tuple[str, ...] = tuple(sorted(self.outputs))
        self.output_trailing: dict[str, tuple[int, ...]] = {
            k: tuple(int(d) for d in v[1][1:]) for k, v in self.outputs.items()
        }
        del probe
        self._buckets = tuple(_Bucket(self.path, b, widths, num_threads, signature) for b in sizes)
        self._bucket_of = np.searchsorted(np.array(sizes), np.arange(sizes[-1] + 1), side="left")

    @classmethod
    def from_version_dir(
        cls, version_dir: str | Path, *, check_contract: bool = True, **kwargs: Any
    ) -> LiteRTModel:
        """Load ``<version_dir>/assets.extra/model.tflite``; check its stored contract if asked."""
        vdir = Path(version_dir)
        model = cls(vdir / TFLITE_FILE, version=int(vdir.name), **kwargs)
        if check_contract:
            contract = load_contract(vdir)
            check_io(contract, model.inputs, model.outputs, runtime=f"LiteRT {model.path}")
        return model

    @property
    def max_batch(self) -> int:
        return self.batch_sizes[-1]

    def predict(self, ticks: npt.NDArray[np.float32], context: npt.NDArray[np.float32]) -> Outputs:
        """Outputs for ``n`` rows (any ``n``; padded to a bucket, chunked above the largest)."""
        n = ticks.shape[0]
        if context.shape[0] != n:
            raise ValueError(f"ticks has {n} rows, context {context.shape[0]}")
        if 0 < n <= self.batch_sizes[-1]:
            return self._buckets[self._bucket_of[n]].run(ticks, context)
        result = self._empty(n)
        step = self.batch_sizes[-1]
        for start in range(0, n, step):
            stop = min(start + step, n)
            part = self.predict(ticks[start:stop], context[start:stop])
            for k, v in part.items():
                result[k][start:stop] = v
        return result

    def _empty(self, n: int) -> Outputs:
        return {k: np.empty((n, *self.output_trailing[k]), np.float32) for k in self.output_names}

    def warmup(self) -> None:
        """Run every bucket once (first-call allocations happen here, not on the hot path)."""
        for b in self._buckets:
            b.invoke()

    @property
    def buckets(self) -> tuple[_Bucket, ...]:
        """The buckets in increasing size (their tensor views feed the engine's emitter)."""
        return self._buckets


def _details(interp: Any, index_by_name: Mapping[str, int]) -> dict[str, tuple[str, list[int]]]:
    by_index = {d["index"]: d for d in (*interp.get_input_details(), *interp.get_output_details())}
    out: dict[str, tuple[str, list[int]]] = {}
    for name, ix in index_by_name.items():
        d = by_index[ix]
        out[name] = (np.dtype(d["dtype"]).name, [int(x) for x in d["shape_signature"]])
    return out


class EmbeddedBackend:
    """The in-process backend: the stable version and, optionally, the canary version.

    ``run(label, ticks, context)`` serves label ``stable`` or ``canary`` synchronously on the
    caller's thread (LiteRT releases the GIL inside ``invoke``).
    """

    name = "embedded"

    def __init__(self, stable: LiteRTModel, canary: LiteRTModel | None = None) -> None:
        self.models: dict[str, LiteRTModel] = {"stable": stable}
        if canary is not None:
            if (canary.n_features, canary.context_dim) != (stable.n_features, stable.context_dim):
                raise ModelContractError(
                    f"canary {canary.path} has F={canary.n_features} C={canary.context_dim}, "
                    f"stable {stable.path} has F={stable.n_features} C={stable.context_dim}"
                )
            self.models["canary"] = canary
        self.n_features = stable.n_features
        self.context_dim = stable.context_dim
        self.batch_sizes = stable.batch_sizes

    @property
    def has_canary(self) -> bool:
        return "canary" in self.models

    def version(self, label: str) -> int:
        return self.models[label].version

    def run(
        self, label: str, ticks: npt.NDArray[np.float32], context: npt.NDArray[np.float32]
    ) -> Outputs:
        return self.models[label].predict(ticks, context)

    def warmup(self) -> None:
        for model in self.models.values():
            model.warmup()
