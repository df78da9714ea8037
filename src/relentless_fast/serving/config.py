"""TF Serving's two config files: ``ModelServerConfig`` and ``BatchingParameters`` (text format).

``ModelServerConfig`` is tensorflow-serving-api's message; ``BatchingParameters`` is declared in
``proto/tf_serving_batching_parameters.proto`` with TF Serving's package, names and numbers (the
pip package does not ship it). A relative ``base_path`` is resolved against the config file's
directory (the real server resolves it against its working directory; the Docker image uses
``models/config.docker.pbtxt`` with absolute paths).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

from google.protobuf import text_format

from relentless_fast._proto.tf_serving_batching_parameters_pb2 import BatchingParameters


class ConfigError(ValueError):
    """A config file does not parse or is inconsistent (the message names file and field)."""


@dataclass(frozen=True)
class ModelEntry:
    """One model of the config, resolved."""

    name: str
    base_path: Path
    policy: str
    """``"specific"``, ``"latest"`` or ``"all"``."""
    versions: tuple[int, ...]
    """The versions of a ``specific`` policy."""
    num_latest: int
    labels: dict[str, int]

    def wanted_versions(self, on_disk: list[int]) -> list[int]:
        """Versions this policy serves, given the numeric sub-directories found on disk."""
        if self.policy == "specific":
            return sorted(self.versions)
        if self.policy == "all":
            return sorted(on_disk)
        return sorted(on_disk)[-self.num_latest :] if on_disk else []


def parse_model_server_config(text: str, *, source: str = "<config>") -> object:
    from tensorflow_serving.config import model_server_config_pb2

    msg = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, msg)
    except text_format.ParseError as exc:
        raise ConfigError(f"{source}: not a text ModelServerConfig: {exc}") from exc
    return msg


def model_entries(config: object, root: Path, *, source: str = "<config>") -> list[ModelEntry]:
    """Resolve a ``ModelServerConfig`` message (``root``: directory for relative base paths)."""
    if config.WhichOneof("config") != "model_config_list":  # type: ignore[attr-defined]
        raise ConfigError(f"{source}: only model_config_list is supported")
    out = []
    seen: set[str] = set()
    for mcfg in config.model_config_list.config:  # type: ignore[attr-defined]
        if not mcfg.name:
            raise ConfigError(f"{source}: a model config has no name")
        if mcfg.name in seen:
            raise ConfigError(f"{source}: model {mcfg.name!r} configured twice")
        seen.add(mcfg.name)
        if mcfg.model_platform not in ("", "tensorflow"):
            raise ConfigError(
                f"{source}: model {mcfg.name!r}: model_platform {mcfg.model_platform!r} "
                "is not supported (tensorflow only)"
            )
        base = Path(mcfg.base_path)
        if not base.is_absolute():
            base = root / base
        pol = mcfg.model_version_policy
        kind = pol.WhichOneof("policy_choice") or "latest"
        versions = tuple(int(v) for v in pol.specific.versions) if kind == "specific" else ()
        if kind == "specific" and not versions:
            raise ConfigError(f"{source}: model {mcfg.name!r}: specific policy lists no versions")
        n_latest = int(pol.latest.num_versions) or 1
        out.append(ModelEntry(mcfg.name, base, kind, versions, n_latest, dict(mcfg.version_labels)))
    return out


def load_model_server_config(path: Path) -> list[ModelEntry]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read model config: {exc}") from exc
    msg = parse_model_server_config(text, source=str(path))
    return model_entries(msg, path.parent.resolve(), source=str(path))


@dataclass(frozen=True)
class BatchingOptions:
    """``BatchingParameters`` with TF Serving's defaults filled in and checked."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = 4
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False

    def padded_size(self, n: int) -> int:
        """The smallest allowed batch size >= ``n`` (``n`` itself when none are configured)."""
        for size in self.allowed_batch_sizes:
            if size >= n:
                return size
        return n


def parse_batching_parameters(text: str, *, source: str = "<batching>") -> BatchingOptions:
    msg = BatchingParameters()
    try:
        text_format.Parse(text, msg)
    except text_format.ParseError as exc:
        raise ConfigError(f"{source}: not a text BatchingParameters: {exc}") from exc
    d = BatchingOptions()
    opts = BatchingOptions(
        max_batch_size=_wrapped(msg, "max_batch_size", d.max_batch_size),
        batch_timeout_micros=_wrapped(msg, "batch_timeout_micros", d.batch_timeout_micros),
        max_enqueued_batches=_wrapped(msg, "max_enqueued_batches", d.max_enqueued_batches),
        num_batch_threads=_wrapped(msg, "num_batch_threads", d.num_batch_threads),
        allowed_batch_sizes=tuple(int(x) for x in msg.allowed_batch_sizes),
        pad_variable_length_inputs=bool(msg.pad_variable_length_inputs),
    )
    _check_batching(opts, source)
    return opts


def _wrapped(msg: BatchingParameters, name: str, default: int) -> int:
    return int(getattr(msg, name).value) if msg.HasField(name) else default


def _check_batching(o: BatchingOptions, source: str) -> None:
    for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
        if getattr(o, name) <= 0:
            raise ConfigError(f"{source}: {name} must be > 0, got {getattr(o, name)}")
    if o.batch_timeout_micros < 0:
        raise ConfigError(f"{source}: batch_timeout_micros must be >= 0")
    sizes = o.allowed_batch_sizes
    if sizes:
        if any(b <= a for a, b in pairwise(sizes)) or sizes[0] <= 0:
            raise ConfigError(f"{source}: allowed_batch_sizes must be positive and increasing")
        if sizes[-1] != o.max_batch_size:
            raise ConfigError(
                f"{source}: the last allowed_batch_sizes entry ({sizes[-1]}) must equal "
                f"max_batch_size ({o.max_batch_size})"
            )


def load_batching_parameters(path: Path) -> BatchingOptions:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read batching parameters: {exc}") from exc
    return parse_batching_parameters(text, source=str(path))
