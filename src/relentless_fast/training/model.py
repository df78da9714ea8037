"""The ``relentless_financial`` Keras model and its training (imports TensorFlow).

Architecture: ``ticks`` is standardised (mean/variance of the training rows, baked into the model),
concatenated with ``context`` (already normalised by the embedding), one hidden ReLU layer, then
four heads: ``action`` (softmax over hold/buy/sell), ``excursions`` (next-day high and low relative
to the close, in percent), ``risk`` and ``urgency`` (sigmoid). The serving function derives the
signal outputs of :mod:`relentless_fast.model_contract` from them:

- ``confidence`` = the largest action probability;
- ``price_target_rel`` / ``stop_loss_rel`` = ``exp(excursion) - 1`` of the move in the action's
  direction / against it (both 0 for hold), the excursion clipped to +-0.25 log-return;
- ``position_size`` = ``clip(P(action) - P(opposite action), 0, 1) * (1 - risk)`` for buy/sell,
  0 for hold.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from relentless_fast import model_contract as mc

EXCURSION_SCALE = 100.0
"""Excursion head works in percent (log-return * 100) for well-scaled gradients."""
MAX_EXCURSION_LOG = 0.25
"""Predicted excursions are clipped to +-0.25 in log-return (about -22%..+28%) so inputs far
outside the training range can never give an infinite or absurd target/stop."""


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    seed: int = 7
    hidden: int = 32
    dropout: float = 0.1
    l2: float = 1e-4
    epochs: int = 60
    batch_size: int = 256
    learning_rate: float = 1e-3
    patience: int = 8
    """Early-stopping patience on the validation action loss; 0 trains all ``epochs``."""
    use_context: bool = True
    """False trains the same architecture with the context input held neutral (all zeros)."""


def quiet_tf() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def set_seed(seed: int) -> None:
    import keras  # type: ignore[import-untyped, unused-ignore]
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def build(
    n_features: int, context_dim: int, ticks_train: npt.NDArray[np.float32], cfg: TrainConfig
) -> Any:
    """An untrained Keras model with named inputs ``ticks`` and ``context``."""
    import keras  # type: ignore[import-untyped, unused-ignore]
    from keras import layers  # type: ignore[import-untyped, unused-ignore]

    reg = keras.regularizers.L2(cfg.l2)
    ticks = keras.Input((n_features,), name=mc.INPUT_TICKS, dtype="float32")
    context = keras.Input((context_dim,), name=mc.INPUT_CONTEXT, dtype="float32")
    norm = layers.Normalization(name="ticks_norm")
    norm.adapt(ticks_train)
    x = layers.Concatenate(name="fuse")([norm(ticks), context])
    x = layers.Dense(cfg.hidden, activation="relu", kernel_regularizer=reg, name="hidden")(x)
    x = layers.Dropout(cfg.dropout, name="dropout")(x)
    outputs = {
        "action": layers.Dense(3, activation="softmax", kernel_regularizer=reg, name="action")(x),
        "excursions": layers.Dense(2, kernel_regularizer=reg, name="excursions")(x),
        "risk": layers.Dense(1, activation="sigmoid", kernel_regularizer=reg, name="risk")(x),
        "urgency": layers.Dense(1, activation="sigmoid", kernel_regularizer=reg, name="urgency")(x),
    }
    return keras.Model({mc.INPUT_TICKS: ticks, mc.INPUT_CONTEXT: context}, outputs)


@dataclass(frozen=True)
class Targets:
    action: npt.NDArray[np.int64]
    excursions: npt.NDArray[np.float32]
    risk: npt.NDArray[np.float32]
    urgency: npt.NDArray[np.float32]

    def as_keras(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "excursions": self.excursions * EXCURSION_SCALE,
            "risk": self.risk[:, None],
            "urgency": self.urgency[:, None],
        }


def fit(
    model: Any,
    train: tuple[dict[str, npt.NDArray[np.float32]], Targets],
    valid: tuple[dict[str, npt.NDArray[np.float32]], Targets],
    cfg: TrainConfig,
) -> dict[str, list[float]]:
    """Train with early stopping on the validation action loss; returns the Keras history."""
    import keras  # type: ignore[import-untyped, unused-ignore]

    model.compile(
        optimizer=keras.optimizers.Adam(cfg.learning_rate),
        loss={
            "action": "sparse_categorical_crossentropy",
            "excursions": "huber",
            "risk": "mse",
            "urgency": "mse",
        },
        loss_weights={"action": 1.0, "excursions": 0.2, "risk": 0.5, "urgency": 0.5},
    )
    stop = keras.callbacks.EarlyStopping(
        monitor="val_action_loss", mode="min", patience=cfg.patience, restore_best_weights=True
    )
    hist = model.fit(
        train[0],
        train[1].as_keras(),
        validation_data=(valid[0], valid[1].as_keras()),
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        shuffle=True,
        callbacks=[stop] if cfg.patience > 0 else [],
        verbose=0,
    )
    return {k: [float(v) for v in vals] for k, vals in hist.history.items()}


def signal_outputs(raw: dict[str, Any]) -> dict[str, Any]:
    """The contract's outputs from the heads (TensorFlow ops; used inside the serving function)."""
    import tensorflow as tf

    probs = raw["action"]
    action = tf.argmax(probs, axis=1, output_type=tf.int32)
    conf = tf.reduce_max(probs, axis=1)
    log_exc = tf.clip_by_value(
        raw["excursions"] / EXCURSION_SCALE, -MAX_EXCURSION_LOG, MAX_EXCURSION_LOG
    )
    exc = tf.math.expm1(log_exc)
    up, down = exc[:, 0], exc[:, 1]
    is_buy = tf.equal(action, 1)
    is_sell = tf.equal(action, 2)
    zero = tf.zeros_like(up)
    target = tf.where(is_buy, up, tf.where(is_sell, down, zero))
    stop = tf.where(is_buy, down, tf.where(is_sell, up, zero))
    risk = raw["risk"][:, 0]
    edge = tf.where(
        is_buy, probs[:, 1] - probs[:, 2], tf.where(is_sell, probs[:, 2] - probs[:, 1], zero)
    )
    size = tf.clip_by_value(edge, 0.0, 1.0) * (1.0 - risk)
    return {
        mc.OUTPUT_ACTION_PROBS: tf.identity(probs),
        mc.OUTPUT_CONFIDENCE: conf,
        mc.OUTPUT_PRICE_TARGET_REL: target,
        mc.OUTPUT_STOP_LOSS_REL: stop,
        mc.OUTPUT_POSITION_SIZE: size,
        mc.OUTPUT_RISK_SCORE: risk,
        mc.OUTPUT_URGENCY: raw["urgency"][:, 0],
    }


def predict_heads(
    model: Any, ticks: npt.NDArray[np.float32], context: npt.NDArray[np.float32]
) -> dict[str, npt.NDArray[np.float32]]:
    out = model.predict(
        {mc.INPUT_TICKS: ticks, mc.INPUT_CONTEXT: context}, batch_size=4096, verbose=0
    )
    return {k: np.asarray(v) for k, v in out.items()}


def up_score(action_probs: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """Direction score ``P(buy) / (P(buy) + P(sell))``."""
    p = action_probs.astype(np.float64)
    return p[:, 1] / np.maximum(p[:, 1] + p[:, 2], 1e-12)
