"""relentless_fast.model_contract: stored with each version, checked with clear errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from relentless_fast import model_contract as mc


def contract(**kw: object) -> mc.ModelContract:
    base: dict[str, object] = {
        "n_features": 20,
        "context_dim": 92,
        "feature_schema_version": 1,
        "context_embedding_version": 1,
    }
    base.update(kw)
    return mc.ModelContract(**base)  # type: ignore[arg-type]


def test_json_round_trip() -> None:
    c = contract(feature_names=("a", "b"), trained={"seed": 7})
    assert mc.ModelContract.from_json(c.to_json()) == c


def test_current_expectations_match_the_schema_modules() -> None:
    from relentless_fast.context import embedding
    from relentless_fast.features import schema

    assert mc.current_expectations() == {
        "n_features": schema.N_FEATURES,
        "feature_schema_version": schema.FEATURE_SCHEMA_VERSION,
        "context_dim": embedding.CONTEXT_DIM,
        "context_embedding_version": embedding.CONTEXT_EMBEDDING_VERSION,
    }


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"n_features": 21}, "input 'ticks' F: model has 21, engine expects 20"),
        ({"context_dim": 90}, "input 'context' C: model has 90, engine expects 92"),
        (
            {"feature_schema_version": 2},
            "input 'ticks' feature_schema_version: model has 2, engine expects 1",
        ),
        (
            {"context_embedding_version": 3},
            "input 'context' context_embedding_version: model has 3, engine expects 1",
        ),
        ({"contract_version": 9}, "contract_version: model has 9, code expects 1"),
    ],
)
def test_mismatch_names_tensor_and_both_sides(kw: dict[str, int], message: str) -> None:
    with pytest.raises(mc.ModelContractError) as err:
        contract(**kw).check(
            n_features=20, context_dim=92, feature_schema_version=1, context_embedding_version=1
        )
    assert str(err.value) == message


def test_output_contract_checked() -> None:
    outputs = {k: list(v) for k, v in mc.OUTPUT_TRAILING_SHAPES.items()}
    outputs[mc.OUTPUT_ACTION_PROBS] = [2]
    with pytest.raises(mc.ModelContractError, match="output 'action_probs' trailing shape"):
        contract(outputs=outputs).check(**mc.current_expectations())
    del outputs[mc.OUTPUT_URGENCY]
    outputs[mc.OUTPUT_ACTION_PROBS] = [3]
    with pytest.raises(mc.ModelContractError, match="output 'urgency': missing"):
        contract(outputs=outputs).check(**mc.current_expectations())


def _io(
    ticks: tuple[str, list[int | None]] = ("float32", [None, 20]),
) -> tuple[dict[str, tuple[str, list[int | None]]], dict[str, tuple[str, list[int | None]]]]:
    ins = {mc.INPUT_TICKS: ticks, mc.INPUT_CONTEXT: ("float32", [-1, 92])}
    outs: dict[str, tuple[str, list[int | None]]] = {
        k: ("float32", [1, *v]) for k, v in mc.OUTPUT_TRAILING_SHAPES.items()
    }
    return ins, outs


def test_check_io_accepts_any_batch_dim() -> None:
    ins, outs = _io()
    mc.check_io(contract(), ins, outs, runtime="LiteRT")


@pytest.mark.parametrize(
    ("ticks", "message"),
    [
        (("float64", [None, 20]), "input 'ticks' dtype: LiteRT has 'float64', contract expects"),
        (
            ("float32", [None, 19]),
            "input 'ticks' shape[1:]: LiteRT has (19,), contract expects (20,)",
        ),
    ],
)
def test_check_io_errors(ticks: tuple[str, list[int | None]], message: str) -> None:
    ins, outs = _io(ticks)
    with pytest.raises(mc.ModelContractError) as err:
        mc.check_io(contract(), ins, outs, runtime="LiteRT")
    assert str(err.value).startswith(message)


def test_check_io_missing_tensor() -> None:
    ins, outs = _io()
    del outs[mc.OUTPUT_RISK_SCORE]
    with pytest.raises(mc.ModelContractError, match=r"missing \['risk_score'\]"):
        mc.check_io(contract(), ins, outs, runtime="LiteRT")


def test_versions(tmp_path: Path) -> None:
    for name in ("1", "2", "10", "x", "3.bak"):
        (tmp_path / name).mkdir()
    assert mc.list_versions(tmp_path) == [1, 2, 10]
    assert mc.list_versions(tmp_path / "absent") == []
    with pytest.raises(mc.ModelContractError, match="u16"):
        mc.version_dir(tmp_path, 70000)
    with pytest.raises(mc.ModelContractError, match="missing"):
        mc.load_contract(tmp_path / "1")
    (tmp_path / "1" / "assets.extra").mkdir()
    (tmp_path / "1" / mc.CONTRACT_FILE).write_text("{}")
    with pytest.raises(mc.ModelContractError, match="not a valid model contract"):
        mc.load_contract(tmp_path / "1")


def test_contract_module_never_imports_tensorflow() -> None:
    code = (
        "import sys, relentless_fast.model_contract as m; m.current_expectations(); "
        "import relentless_fast.serving.launcher; "
        "bad = sorted(k for k in sys.modules if k.startswith('tensorflow')); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
