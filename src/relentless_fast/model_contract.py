"""The contract between ``relentless_financial`` models and everything that runs them.

Pure Python, no TensorFlow: the engine (LiteRT and gRPC backends), the model server and the
training/export code all read the same names from here.

Model inputs (signature ``serving_default``, every version)
-----------------------------------------------------------
``ticks``    float32[B, F]  one feature row per symbol, feature schema v1
                            (``relentless_fast.features.schema``)
``context``  float32[B, C]  ``concat(global, per_symbol[symbol])``, context embedding v1
                            (``relentless_fast.context.embedding``)

Model outputs (every field of a signal, layout v1 of DESIGN.md)
----------------------------------------------------------------
``action_probs``     float32[B, 3]  softmax over (hold, buy, sell); action = argmax
``confidence``       float32[B]     0..1, probability that the chosen direction is right
``price_target_rel`` float32[B]     target as a fraction of the last price:
                                    ``target = last_price * (1 + price_target_rel)``
``stop_loss_rel``    float32[B]     stop as a fraction of the last price (negative for a long):
                                    ``stop = last_price * (1 + stop_loss_rel)``
``position_size``    float32[B]     0..1, fraction of the configured maximum position
``risk_score``       float32[B]     0..1 (the signal stores ``round(risk * 255)``)
``urgency``          float32[B]     0..1 (the signal stores ``round(urgency * 255)``)

What is stored with each version
--------------------------------
``<base_path>/<version>/assets.extra/relentless_model.json`` (:data:`CONTRACT_FILE`) holds the
:class:`ModelContract`: F and C, the feature schema and context embedding versions the model was
trained on, the feature names, and the input/output contract above. ``assets.extra/model.tflite``
(:data:`TFLITE_FILE`) is the same version converted for LiteRT, and
``assets.extra/tf_serving_warmup_requests`` (:data:`WARMUP_FILE`) the TF Serving warmup records.
Loaders call :func:`load_contract` then :meth:`ModelContract.check` (or :func:`check_io` on the
tensors a runtime reports); a mismatch raises :class:`ModelContractError` naming the tensor and both
sides.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MODEL_NAME = "relentless_financial"
SIGNATURE_NAME = "serving_default"
CONTRACT_VERSION = 1
"""Version of this input/output contract (bumped on any change of names, shapes or meaning)."""

INPUT_TICKS = "ticks"
INPUT_CONTEXT = "context"
INPUT_NAMES: tuple[str, str] = (INPUT_TICKS, INPUT_CONTEXT)
INPUT_DTYPE = "float32"

OUTPUT_ACTION_PROBS = "action_probs"
OUTPUT_CONFIDENCE = "confidence"
OUTPUT_PRICE_TARGET_REL = "price_target_rel"
OUTPUT_STOP_LOSS_REL = "stop_loss_rel"
OUTPUT_POSITION_SIZE = "position_size"
OUTPUT_RISK_SCORE = "risk_score"
OUTPUT_URGENCY = "urgency"

ACTIONS: tuple[str, str, str] = ("hold", "buy", "sell")
"""Column order of ``action_probs``; equals the signal's action codes 0, 1, 2."""

OUTPUT_TRAILING_SHAPES: dict[str, tuple[int, ...]] = {
    OUTPUT_ACTION_PROBS: (len(ACTIONS),),
    OUTPUT_CONFIDENCE: (),
    OUTPUT_PRICE_TARGET_REL: (),
    OUTPUT_STOP_LOSS_REL: (),
    OUTPUT_POSITION_SIZE: (),
    OUTPUT_RISK_SCORE: (),
    OUTPUT_URGENCY: (),
}
"""Every output's shape after the batch dimension (all float32)."""

OUTPUT_NAMES: tuple[str, ...] = tuple(OUTPUT_TRAILING_SHAPES)

OUTPUT_MEANINGS: dict[str, str] = {
    OUTPUT_ACTION_PROBS: "softmax over (hold, buy, sell); action = argmax",
    OUTPUT_CONFIDENCE: "0..1 probability that the predicted direction is right",
    OUTPUT_PRICE_TARGET_REL: "target = last_price * (1 + price_target_rel)",
    OUTPUT_STOP_LOSS_REL: "stop = last_price * (1 + stop_loss_rel)",
    OUTPUT_POSITION_SIZE: "0..1 fraction of the configured maximum position",
    OUTPUT_RISK_SCORE: "0..1 risk; signal stores round(risk * 255)",
    OUTPUT_URGENCY: "0..1 urgency; signal stores round(urgency * 255)",
}

MAX_MODEL_VERSION = 0xFFFF
"""Signals carry the version as u16; a higher version is refused at load."""

CONTRACT_FILE = "assets.extra/relentless_model.json"
TFLITE_FILE = "assets.extra/model.tflite"
WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"

_VERSION_DIR = re.compile(r"^[0-9]+$")


class ModelContractError(ValueError):
    """A model does not match its caller (the message names the tensor and both sides)."""


@dataclass(frozen=True, kw_only=True)
class ModelContract:
    """What a model version was trained on and what it promises; stored as :data:`CONTRACT_FILE`."""

    n_features: int
    context_dim: int
    feature_schema_version: int
    context_embedding_version: int
    feature_names: tuple[str, ...] = ()
    contract_version: int = CONTRACT_VERSION
    model_name: str = MODEL_NAME
    signature_name: str = SIGNATURE_NAME
    outputs: dict[str, list[int]] = field(
        default_factory=lambda: {k: list(v) for k, v in OUTPUT_TRAILING_SHAPES.items()}
    )
    trained: dict[str, Any] = field(default_factory=dict)
    """Free-form training provenance (data range, seed, metrics); never checked."""

    def to_json(self) -> str:
        d = asdict(self)
        d["feature_names"] = list(self.feature_names)
        d["inputs"] = {
            INPUT_TICKS: {"dtype": INPUT_DTYPE, "shape": [-1, self.n_features]},
            INPUT_CONTEXT: {"dtype": INPUT_DTYPE, "shape": [-1, self.context_dim]},
        }
        d["output_meanings"] = OUTPUT_MEANINGS
        return json.dumps(d, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, *, source: str = "<contract>") -> ModelContract:
        try:
            d = json.loads(text)
            return cls(
                n_features=int(d["n_features"]),
                context_dim=int(d["context_dim"]),
                feature_schema_version=int(d["feature_schema_version"]),
                context_embedding_version=int(d["context_embedding_version"]),
                feature_names=tuple(d.get("feature_names", ())),
                contract_version=int(d["contract_version"]),
                model_name=str(d.get("model_name", MODEL_NAME)),
                signature_name=str(d.get("signature_name", SIGNATURE_NAME)),
                outputs={str(k): [int(x) for x in v] for k, v in d["outputs"].items()},
                trained=dict(d.get("trained", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelContractError(f"{source}: not a valid model contract: {exc!r}") from exc

    def check(
        self,
        *,
        n_features: int,
        context_dim: int,
        feature_schema_version: int,
        context_embedding_version: int,
    ) -> None:
        """Raise :class:`ModelContractError` unless this model fits the caller's schema versions."""
        _expect("contract_version", "model", self.contract_version, "code", CONTRACT_VERSION)
        _expect(f"input {INPUT_TICKS!r} F", "model", self.n_features, "engine", n_features)
        _expect(
            f"input {INPUT_TICKS!r} feature_schema_version",
            "model",
            self.feature_schema_version,
            "engine",
            feature_schema_version,
        )
        _expect(f"input {INPUT_CONTEXT!r} C", "model", self.context_dim, "engine", context_dim)
        _expect(
            f"input {INPUT_CONTEXT!r} context_embedding_version",
            "model",
            self.context_embedding_version,
            "engine",
            context_embedding_version,
        )
        for name, shape in OUTPUT_TRAILING_SHAPES.items():
            got = self.outputs.get(name)
            if got is None:
                raise ModelContractError(f"output {name!r}: missing from the model's contract")
            _expect(f"output {name!r} trailing shape", "model", tuple(got), "code", shape)

    def check_current(self) -> None:
        """:meth:`check` against the feature schema and context embedding this code base ships."""
        self.check(**current_expectations())


def _expect(what: str, left: str, lval: object, right: str, rval: object) -> None:
    if lval != rval:
        raise ModelContractError(f"{what}: {left} has {lval!r}, {right} expects {rval!r}")


def current_expectations() -> dict[str, int]:
    """F, C and the schema versions of this code base (imports the feature and context modules)."""
    from relentless_fast.context import embedding
    from relentless_fast.features import schema

    return {
        "n_features": int(schema.N_FEATURES),
        "feature_schema_version": int(_first_attr(schema, _FEATURE_VERSION_NAMES)),
        "context_dim": int(embedding.CONTEXT_DIM),
        "context_embedding_version": int(embedding.CONTEXT_EMBEDDING_VERSION),
    }


_FEATURE_VERSION_NAMES = ("FEATURE_SCHEMA_VERSION", "SCHEMA_VERSION", "VERSION")


def _first_attr(module: object, names: Sequence[str]) -> Any:
    for name in names:
        if hasattr(module, name):
            return getattr(module, name)
    raise ModelContractError(f"{module!r} defines none of {list(names)}")


MODELS_DIR_ENV = "RELENTLESS_MODELS_DIR"


def models_dir() -> Path:
    """The model repository (``models/`` with ``config.pbtxt`` and ``relentless_financial/``).

    ``$RELENTLESS_MODELS_DIR`` when set; else ``models/`` of the working directory (the
    repository root, where the README's commands run); else the source checkout's ``models/``
    (an editable install run from elsewhere). The repository is not packaged into the wheel.
    """
    env = os.environ.get(MODELS_DIR_ENV)
    if env:
        return Path(env)
    here = Path("models")
    if (here / MODEL_NAME).is_dir():
        return here.resolve()
    return Path(__file__).resolve().parents[2] / "models"


def version_dir(base_path: str | Path, version: int) -> Path:
    """``<base_path>/<version>``, refusing versions a signal cannot carry."""
    check_version_number(version)
    return Path(base_path) / str(version)


def check_version_number(version: int) -> None:
    if not 0 < version <= MAX_MODEL_VERSION:
        raise ModelContractError(
            f"model version {version}: signals carry a u16 version, expected 1..{MAX_MODEL_VERSION}"
        )


def list_versions(base_path: str | Path) -> list[int]:
    """Numeric version sub-directories of a model's base path, ascending (TF Serving's layout)."""
    base = Path(base_path)
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and _VERSION_DIR.match(p.name))


def load_contract(version_path: str | Path) -> ModelContract:
    """Read :data:`CONTRACT_FILE` of one version directory."""
    path = Path(version_path) / CONTRACT_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ModelContractError(
            f"{path}: missing; every model version must ship its contract"
        ) from None
    return ModelContract.from_json(text, source=str(path))


def check_io(
    contract: ModelContract,
    inputs: Mapping[str, tuple[str, Sequence[int | None]]],
    outputs: Mapping[str, tuple[str, Sequence[int | None]]],
    *,
    runtime: str,
) -> None:
    """Check tensors reported by a runtime (LiteRT, SavedModel signature) against the contract.

    ``inputs``/``outputs`` map a tensor name to ``(numpy dtype name, shape)``; the batch dimension
    (first) may be anything (-1, None or a fixed size). ``runtime`` names the other side in errors.
    """
    want_in = {INPUT_TICKS: contract.n_features, INPUT_CONTEXT: contract.context_dim}
    _check_names("input", want_in, inputs, runtime)
    for name, width in want_in.items():
        dtype, shape = inputs[name]
        _expect(f"input {name!r} dtype", runtime, dtype, "contract", INPUT_DTYPE)
        _expect(f"input {name!r} shape[1:]", runtime, _trailing(shape), "contract", (width,))
    want_out = {k: tuple(v) for k, v in contract.outputs.items()}
    _check_names("output", want_out, outputs, runtime)
    for name, trailing in want_out.items():
        dtype, shape = outputs[name]
        _expect(f"output {name!r} dtype", runtime, dtype, "contract", INPUT_DTYPE)
        _expect(f"output {name!r} shape[1:]", runtime, _trailing(shape), "contract", trailing)


def _trailing(shape: Iterable[int | None]) -> tuple[int | None, ...]:
    return tuple(None if d is None else int(d) for d in list(shape)[1:])


def _check_names(kind: str, want: Mapping[str, object], got: Mapping[str, object], rt: str) -> None:
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    if missing or extra:
        raise ModelContractError(
            f"{kind} tensors: {rt} has {sorted(got)}, contract expects {sorted(want)} "
            f"(missing {missing}, extra {extra})"
        )
