"""Train the shipped versions of ``relentless_financial`` and export them (imports TensorFlow).

Versions (all trained on rows up to 2010 unless stated, same data and labels):

- 1 (production, label ``stable``): hidden 32, seed 7, early stopping on 2011-2013.
- 2 (canary, label ``canary``): hidden 64, seed 11, early stopping on 2011-2013.
- 3 (development): hidden 32, seed 7, trained on 1999-2013 (train + validation years) for the
  number of epochs version 1 stopped at.

The test years (2014-2018) are never seen by any version.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from relentless_fast import model_contract as mc
from relentless_fast.context import embedding as emb
from relentless_fast.features import schema
from relentless_fast.training import data
from relentless_fast.training import model as mdl

VERSION_CONFIGS: dict[int, mdl.TrainConfig] = {
    1: mdl.TrainConfig(seed=7, hidden=32),
    2: mdl.TrainConfig(seed=11, hidden=64),
    3: mdl.TrainConfig(seed=7, hidden=32),
}
FULL_DATA_VERSIONS = frozenset({3})


@dataclass(frozen=True)
class Prepared:
    rows: data.Rows
    train: data.Rows
    valid: data.Rows
    test: data.Rows

    def targets(self, r: data.Rows) -> mdl.Targets:
        risk = data.risk_percentiles(self.train.risk_raw, r.risk_raw)
        return mdl.Targets(r.action, r.excursions, risk, r.urgency)


def prepare(context_shift_days: int = 0) -> Prepared:
    rows = data.build_rows(context_shift_days)
    return Prepared(rows, *rows.split())


def inputs(r: data.Rows, use_context: bool) -> dict[str, npt.NDArray[np.float32]]:
    ctx = r.context if use_context else np.zeros_like(r.context)
    return {mc.INPUT_TICKS: r.ticks, mc.INPUT_CONTEXT: ctx}


def train_model(
    prep: Prepared, cfg: mdl.TrainConfig, *, full_data_epochs: int | None = None
) -> tuple[Any, dict[str, list[float]]]:
    """Train one model; with ``full_data_epochs`` on train + validation for that many epochs."""
    mdl.quiet_tf()
    mdl.set_seed(cfg.seed)
    train, valid = prep.train, prep.valid
    if full_data_epochs is not None:
        train = data.Rows(
            **{
                k: np.concatenate([getattr(prep.train, k), getattr(prep.valid, k)])
                for k in data.Rows.__dataclass_fields__
            }
        )
        cfg = replace(cfg, epochs=full_data_epochs, patience=0)
    model = mdl.build(schema.N_FEATURES, emb.CONTEXT_DIM, prep.train.ticks, cfg)
    hist = mdl.fit(
        model,
        (inputs(train, cfg.use_context), prep.targets(train)),
        (inputs(valid, cfg.use_context), prep.targets(valid)),
        cfg,
    )
    return model, hist


def best_epochs(hist: dict[str, list[float]]) -> int:
    return int(np.argmin(hist["val_action_loss"])) + 1


def contract_for(cfg: mdl.TrainConfig, version: int, epochs: int, end: str) -> mc.ModelContract:
    return mc.ModelContract(
        n_features=schema.N_FEATURES,
        context_dim=emb.CONTEXT_DIM,
        feature_schema_version=schema.FEATURE_SCHEMA_VERSION,
        context_embedding_version=emb.CONTEXT_EMBEDDING_VERSION,
        feature_names=tuple(schema.FEATURE_NAMES),
        trained={
            "version": version,
            "seed": cfg.seed,
            "hidden": cfg.hidden,
            "epochs": epochs,
            "train_rows_through": end,
            "symbols": list(data.SYMBOLS),
            "feature_kernel": data.kernel_name(),
            "exported_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    )


def train_versions(base_path: Path, versions: tuple[int, ...] = (1, 2, 3)) -> dict[int, int]:
    """Train and export every version into ``base_path/<version>``; returns epochs per version."""
    from relentless_fast.training.export import export_version

    prep = prepare()
    warm = prep.valid.take(np.arange(len(prep.valid)) < 128)
    epochs: dict[int, int] = {}
    v1_epochs: int | None = None
    for v in sorted(versions):
        cfg = VERSION_CONFIGS[v]
        if v in FULL_DATA_VERSIONS:
            if v1_epochs is None:
                _, h1 = train_model(prep, VERSION_CONFIGS[1])
                v1_epochs = best_epochs(h1)
            model, _ = train_model(prep, cfg, full_data_epochs=v1_epochs)
            epochs[v], end = v1_epochs, str(data.VALID_END)
        else:
            model, hist = train_model(prep, cfg)
            epochs[v], end = best_epochs(hist), str(data.TRAIN_END)
            if v == 1:
                v1_epochs = epochs[v]
        contract = contract_for(cfg, v, epochs[v], end)
        export_version(model, contract, mc.version_dir(base_path, v), warm.ticks, warm.context)
    return epochs
