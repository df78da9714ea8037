"""Which model versions are loaded, their states and labels; the Predict path with batching.

Applying a config is synchronous and replaces the previous one entirely (TF Serving's rule):
versions the new config wants are loaded (contract checked, warmup replayed, then AVAILABLE),
versions it no longer wants are unloaded (END), models it no longer lists disappear. Labels may
only point at AVAILABLE versions unless ``allow_labels_for_unavailable`` is set; a config whose
labels are invalid is refused and the previous one stays in force.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from relentless_fast import model_contract as mc
from relentless_fast.serving.batching import BatchScheduler
from relentless_fast.serving.config import BatchingOptions, ModelEntry
from relentless_fast.serving.errors import ServingError, invalid, not_found, precondition
from relentless_fast.serving.servable import Servable, Signature, read_warmup_records

log = logging.getLogger(__name__)

Array = np.ndarray[Any, Any]

# ModelVersionStatus.State values
START, LOADING, AVAILABLE, UNLOADING, END = 10, 20, 30, 40, 50


@dataclass
class VersionState:
    version: int
    state: int = START
    error_code: int = 0  # tensorflow.error.Code
    error_message: str = ""
    servable: Servable | None = None
    schedulers: dict[str, BatchScheduler] = field(default_factory=dict)


@dataclass
class ModelState:
    entry: ModelEntry
    versions: dict[int, VersionState] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)


@dataclass
class ServerOptions:
    enable_batching: bool = False
    batching: BatchingOptions | None = None
    enable_model_warmup: bool = True
    allow_labels_for_unavailable: bool = False


def _reusable(cur: VersionState | None, e: ModelEntry, v: int) -> bool:
    """An AVAILABLE version loaded from the same path is kept as it is on reload."""
    return (
        cur is not None
        and cur.state == AVAILABLE
        and cur.servable is not None
        and cur.servable.path == e.base_path / str(v)
    )


# tensorflow.error.Code of a failed load
_UNKNOWN, _INVALID_ARGUMENT, _NOT_FOUND, _FAILED_PRECONDITION = 2, 3, 5, 9


class ModelManager:
    """Thread-safe registry of models and versions; resolves a ModelSpec to a servable."""

    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self._lock = threading.RLock()
        self._apply_lock = threading.Lock()
        self._models: dict[str, ModelState] = {}

    # -- config ---------------------------------------------------------------------------------
    def apply(self, entries: list[ModelEntry]) -> None:
        """Make the served set equal ``entries``; raises ServingError (previous config kept).

        Loading and warmup run without blocking requests: the served set is swapped in one step
        when the new config is complete (applies are serialised among themselves).
        """
        with self._apply_lock:
            with self._lock:
                current = dict(self._models)
            new_states: dict[str, ModelState] = {}
            loaded: list[VersionState] = []
            retired: list[VersionState] = []
            try:
                for e in entries:
                    old = current.get(e.name)
                    st = ModelState(e, dict(old.versions) if old else {})
                    wanted = e.wanted_versions(mc.list_versions(e.base_path))
                    for v in wanted:
                        cur = st.versions.get(v)
                        if not _reusable(cur, e, v):
                            st.versions[v] = self._load(e, v)
                            loaded.append(st.versions[v])
                            if cur is not None:
                                retired.append(cur)
                    for v, vs in list(st.versions.items()):
                        if v not in wanted and vs.state != END:
                            retired.append(vs)
                            st.versions[v] = VersionState(v, END)
                    st.labels = self._check_labels(e, st)
                    new_states[e.name] = st
            except ServingError:
                for vs in loaded:  # roll back: the previous config stays in force
                    self._unload(vs)
                raise
            for name, old in current.items():
                if name not in new_states:
                    retired.extend(old.versions.values())
            with self._lock:
                self._models = new_states
            for vs in retired:
                self._unload(vs)

    def _check_labels(self, e: ModelEntry, st: ModelState) -> dict[str, int]:
        for v in e.labels.values():
            vs = st.versions.get(v)
            ok = vs is not None and vs.state == AVAILABLE
            if not ok and not self.options.allow_labels_for_unavailable:
                raise precondition(
                    f"Request to assign label to version {v} of model {e.name}, "
                    "which is not currently available for inference"
                )
        return dict(e.labels)

    def _load(self, e: ModelEntry, v: int) -> VersionState:
        vs = VersionState(v, LOADING)
        path = e.base_path / str(v)
        try:
            mc.check_version_number(v)
            if not (path / "saved_model.pb").exists():
                raise FileNotFoundError(f"{path}: no saved_model.pb (version {v} of {e.name})")
            sv = Servable(e.name, v, path)
            if self.options.enable_model_warmup:
                n = sv.warmup(read_warmup_records(path / mc.WARMUP_FILE))
                log.info("model %s version %d: %d warmup requests replayed", e.name, v, n)
            vs.servable = sv
            if self.options.enable_batching and self.options.batching is not None:
                for key, sig in sv.signatures.items():
                    vs.schedulers[key] = BatchScheduler(
                        sig.run, self.options.batching, name=f"{e.name}-{v}-{key}"
                    )
            vs.state = AVAILABLE
        except mc.ModelContractError as exc:
            vs.state, vs.error_code, vs.error_message = END, _FAILED_PRECONDITION, str(exc)
        except FileNotFoundError as exc:
            vs.state, vs.error_code, vs.error_message = END, _NOT_FOUND, str(exc)
        except Exception as exc:  # any load failure is a status, not a crash
            vs.state, vs.error_code, vs.error_message = END, _UNKNOWN, f"{exc!r}"
        if vs.state != AVAILABLE:
            log.error("model %s version %d failed to load: %s", e.name, v, vs.error_message)
        else:
            log.info("model %s version %d AVAILABLE", e.name, v)
        return vs

    def _unload(self, vs: VersionState) -> None:
        for s in vs.schedulers.values():
            s.stop()

    def stop(self) -> None:
        with self._lock:
            for st in self._models.values():
                for vs in st.versions.values():
                    for s in vs.schedulers.values():
                        s.stop()

    # -- lookups --------------------------------------------------------------------------------
    def resolve(self, spec: Any) -> tuple[VersionState, Servable]:
        """The AVAILABLE version a ModelSpec names (version, label or latest)."""
        name = spec.name
        with self._lock:
            st = self._models.get(name)
            which = spec.WhichOneof("version_choice")
            if which == "version_label":
                label = spec.version_label
                if st is None or label not in st.labels:
                    raise invalid(f"Unrecognized servable version label: {label}")
                version: int | None = st.labels[label]
            elif which == "version":
                version = int(spec.version.value)
            else:
                version = None
            if st is not None:
                if version is None:
                    avail = [v for v, vs in st.versions.items() if vs.state == AVAILABLE]
                    version = max(avail) if avail else None
                vs = st.versions.get(version) if version is not None else None
                if vs is not None and vs.state == AVAILABLE and vs.servable is not None:
                    return vs, vs.servable
        if which == "version" or (which == "version_label" and version is not None):
            raise not_found(f"Servable not found for request: Specific({name}, {version})")
        raise not_found(f"Servable not found for request: Latest({name})")

    def status(self, name: str, version: int | None) -> list[VersionState]:
        with self._lock:
            st = self._models.get(name)
            if st is None:
                raise not_found(f"Could not find any versions of model {name}")
            if version is None:
                return sorted(st.versions.values(), key=lambda s: s.version)
            vs = st.versions.get(version)
            if vs is None:
                raise not_found(f"Could not find version {version} of model {name}")
            return [vs]

    def label_version(self, name: str, label: str) -> int:
        with self._lock:
            st = self._models.get(name)
            if st is None or label not in st.labels:
                raise invalid(f"Unrecognized servable version label: {label}")
            return st.labels[label]

    # -- inference ------------------------------------------------------------------------------
    def predict(
        self,
        spec: Any,
        inputs: Mapping[str, Array],
        output_filter: list[str],
        timeout_s: float | None = None,
    ) -> tuple[int, str, dict[str, Array]]:
        """Run Predict; returns (version, signature key, outputs)."""
        vs, sv = self.resolve(spec)
        key = spec.signature_name or mc.SIGNATURE_NAME
        sig: Signature = sv.signature(key)
        size = sig.check_inputs(inputs)
        names = sig.check_filter(output_filter)
        sched = vs.schedulers.get(key)
        if sched is None or size == 0:
            out = sig.run(inputs, names)
        else:
            fut = sched.submit(inputs, size)
            try:
                full = fut.result(timeout=timeout_s)
            except TimeoutError as exc:
                import grpc

                raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from exc
            out = {k: full[k] for k in names}
        return vs.version, key, out
