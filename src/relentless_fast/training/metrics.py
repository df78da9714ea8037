"""Direction metrics with block-bootstrap intervals (numpy only, no TensorFlow).

The direction task of the model card: will the next close be above today's (``up`` = 1)? A model
scores it with ``P(buy) / (P(buy) + P(sell))`` from its ``action_probs``. Intervals come from a
moving-block bootstrap over trading days (blocks of :data:`BLOCK_DAYS` consecutive days, every
symbol's rows of a day kept together), which respects the serial dependence of daily returns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

BLOCK_DAYS = 20
N_BOOT = 1000
EPS = 1e-7

Scores = npt.NDArray[np.float64]
Labels = npt.NDArray[np.int64]


def accuracy(y: Labels, p: Scores) -> float:
    return float(np.mean((p > 0.5) == (y == 1)))


def log_loss(y: Labels, p: Scores) -> float:
    q = np.clip(p, EPS, 1 - EPS)
    return float(-np.mean(np.where(y == 1, np.log(q), np.log(1 - q))))


def auc(y: Labels, p: Scores) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half); 0.5 for a constant score."""
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p), dtype=np.float64)
    sp = p[order]
    # average ranks over ties
    _, first, counts = np.unique(sp, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


METRICS: Mapping[str, Callable[[Labels, Scores], float]] = {
    "accuracy": accuracy,
    "auc": auc,
    "log_loss": log_loss,
}


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float

    def fmt(self, digits: int = 3) -> str:
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def block_indices(
    day_of_row: npt.NDArray[np.int64], rng: np.random.Generator, block: int = BLOCK_DAYS
) -> npt.NDArray[np.int64]:
    """Row indices of one moving-block bootstrap sample over days (rows grouped by day)."""
    n_days = int(day_of_row.max()) + 1
    starts = rng.integers(0, max(n_days - block + 1, 1), size=-(-n_days // block))
    days = (starts[:, None] + np.arange(block)[None, :]).ravel()[:n_days]
    days = days[days < n_days]
    order = np.argsort(day_of_row, kind="stable")
    bounds = np.searchsorted(day_of_row[order], np.arange(n_days + 1))
    parts = [order[bounds[d] : bounds[d + 1]] for d in days]
    return np.concatenate(parts)


def day_ids(dates: npt.NDArray[np.datetime64]) -> npt.NDArray[np.int64]:
    _, inv = np.unique(dates, return_inverse=True)
    return inv.astype(np.int64)


def bootstrap(
    y: Labels,
    scores: Mapping[str, Scores],
    dates: npt.NDArray[np.datetime64],
    *,
    seed: int = 0,
    n_boot: int = N_BOOT,
    diffs: tuple[tuple[str, str], ...] = (),
) -> dict[str, dict[str, Estimate]]:
    """Every metric of every model with 95% block-bootstrap intervals.

    All models share the same resamples, so ``diffs`` (pairs ``(a, b)``) give intervals for
    ``metric(a) - metric(b)`` under the key ``"a - b"``.
    """
    rng = np.random.default_rng(seed)
    days = day_ids(dates)
    keys = list(scores) + [f"{a} - {b}" for a, b in diffs]
    samples: dict[str, dict[str, list[float]]] = {k: {m: [] for m in METRICS} for k in keys}
    for _ in range(n_boot):
        idx = block_indices(days, rng)
        yb = y[idx]
        vals = {name: {m: f(yb, s[idx]) for m, f in METRICS.items()} for name, s in scores.items()}
        for name, v in vals.items():
            for m, x in v.items():
                samples[name][m].append(x)
        for a, b in diffs:
            for m in METRICS:
                samples[f"{a} - {b}"][m].append(vals[a][m] - vals[b][m])
    out: dict[str, dict[str, Estimate]] = {}
    for k in keys:
        out[k] = {}
        for m, f in METRICS.items():
            if " - " in k:
                a, b = k.split(" - ")
                point = f(y, scores[a]) - f(y, scores[b])
            else:
                point = f(y, scores[k])
            lo, hi = np.nanpercentile(samples[k][m], [2.5, 97.5])
            out[k][m] = Estimate(point, float(lo), float(hi))
    return out
