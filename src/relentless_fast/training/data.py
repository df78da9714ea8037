"""Training data: daily bars and macro series that ship inside PyPI packages, as model rows.

Rows. One row per (trading day ``t``, symbol) for the S&P 500 and NASDAQ Composite daily OHLCV of
``arch.data`` (1999-01-04 .. 2018-12-31). The row is what the engine would see at the close of
day ``t``: the ``ticks`` input is feature schema v1 computed by the feature kernel
(``relentless_fast._features``) over the bar series up to and including bar ``t``; the
``context`` input is context embedding v1 as built pre-market on day ``t`` (see
:func:`build_global_context`).

Bars as events. Each bar is stamped 16:00 America/New_York of its date (so ``time_of_day`` is 1),
``vwap`` is absent (the kernel uses ``(high + low + close) / 3``), ``trade_count`` is 0 (counted as
one event), and the trade-rate time constant is one day. Spread, book imbalance and has_quote are
neutral (0): a bar has no quote.

Labels (next-day ``t+1`` unless stated; ``r = log(close[t+1] / close[t])``, ``sigma`` = standard
deviation of the 20 daily log returns up to ``t``):

- ``action``: buy (1) when ``r > 0.25 sigma``, sell (2) when ``r < -0.25 sigma``, else hold (0).
- ``up``: 1 when ``r > 0`` (the direction metric of the model card).
- ``up_exc`` / ``down_exc``: ``log(high[t+1] / close[t])`` and ``log(low[t+1] / close[t])``,
  the best and worst price of the next day relative to today's close.
- ``risk``: realised volatility of ``t+1..t+5`` (``sqrt(sum r^2)``) as its percentile among the
  training rows (0..1).
- ``urgency``: ``|r[t+1]| / sum(|r[t+1..t+5]|)``: how much of the coming week's movement happens
  tomorrow (0..1).

No label uses anything at or before ``t`` as its target, and no input uses anything after ``t``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd  # type: ignore[import-untyped, unused-ignore]

from relentless_fast.context import embedding as emb
from relentless_fast.features import schema

SYMBOLS: tuple[str, ...] = ("SPX", "NDX")
"""Row symbols: S&P 500 (``arch.data.sp500``) and NASDAQ Composite (``arch.data.nasdaq``)."""

TRAIN_END = date(2010, 12, 31)
VALID_END = date(2013, 12, 31)
"""Time split: train 1999-2010, validation (early stopping) 2011-2013, test 2014-2018."""

HOLD_BAND_SIGMAS = 0.25
LABEL_HORIZON_DAYS = 5
VOL_WINDOW = 20
BAR_RATE_TAU_S = 86_400.0

Float32Array = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Rows:
    """Model rows, sorted by (date, symbol)."""

    dates: npt.NDArray[np.datetime64]
    symbol: npt.NDArray[np.int64]
    ticks: Float32Array
    context: Float32Array
    action: npt.NDArray[np.int64]
    up: npt.NDArray[np.int64]
    ret_today: Float32Array
    """``log(close[t] / close[t-1])``: the previous-direction baseline's input."""
    excursions: Float32Array
    """float32[N, 2]: (up_exc, down_exc)."""
    risk_raw: Float32Array
    urgency: Float32Array

    def __len__(self) -> int:
        return len(self.dates)

    def take(self, mask: npt.NDArray[np.bool_]) -> Rows:
        return Rows(**{k: getattr(self, k)[mask] for k in self.__dataclass_fields__})

    def split(self) -> tuple[Rows, Rows, Rows]:
        d = self.dates
        train = d <= np.datetime64(TRAIN_END)
        valid = (d > np.datetime64(TRAIN_END)) & (d <= np.datetime64(VALID_END))
        return self.take(train), self.take(valid), self.take(d > np.datetime64(VALID_END))


# -- market bars and tick features ------------------------------------------------------------


def load_bars() -> dict[str, pd.DataFrame]:
    """Daily OHLCV per symbol (arch's bundled CSVs; no network)."""
    from arch.data import nasdaq, sp500

    out = {}
    for sym, mod in zip(SYMBOLS, (sp500, nasdaq), strict=True):
        df = mod.load()[["Open", "High", "Low", "Close", "Volume"]].astype("float64")
        df.index = pd.DatetimeIndex(df.index).normalize()
        out[sym] = df.sort_index()
    return out


def kernel_name() -> str:
    """Which implementation of feature schema v1 :func:`bar_features` uses."""
    try:
        import relentless_fast._features  # noqa: F401
    except ImportError:
        return "reference"
    return "native"


def bar_features(bars: pd.DataFrame) -> Float32Array:
    """Feature schema v1 after each bar of one symbol (float32[N, F]), by the feature kernel.

    Uses the native kernel (``relentless_fast._features.FeatureKernel``) in bar mode; where it is
    not built, the slow reference (``relentless_fast.features.reference``) that the kernel is tested
    against, which computes the same definitions.
    """
    kernel_cls: Any
    try:
        from relentless_fast import _features  # type: ignore[attr-defined, unused-ignore]

        kernel_cls = _features.FeatureKernel
    except ImportError:
        from relentless_fast.features import reference

        kernel_cls = reference.ReferenceFeatures
    kernel = kernel_cls(None, 1, bars=True, rate_tau_s=BAR_RATE_TAU_S)
    idx = pd.DatetimeIndex(bars.index)
    close_ts = (idx + pd.Timedelta(hours=16)).tz_localize(schema.SESSION_TZ).tz_convert("UTC")
    n = len(bars)
    rows: Float32Array = kernel.run_bars(
        0,
        np.asarray(close_ts.as_unit("ns").asi8, dtype=np.int64),
        bars["High"].to_numpy(np.float64),
        bars["Low"].to_numpy(np.float64),
        bars["Close"].to_numpy(np.float64),
        bars["Volume"].to_numpy(np.float64),
        np.full(n, np.nan),
        np.zeros(n, dtype=np.uint64),
    )
    return np.ascontiguousarray(rows, dtype=np.float32)


# -- daily context from macro series, with publication lags ------------------------------------


@dataclass(frozen=True)
class MacroSeries:
    """One observation series: ``value`` observed for ``period_end``, usable from ``available``."""

    field: str
    period_end: pd.DatetimeIndex
    available: pd.DatetimeIndex
    value: npt.NDArray[np.float64]
    max_age_days: int
    """Observations older than this (period end to row date) are stale: the slot stays neutral."""


def _monthly(s: pd.Series, lag_days: int) -> tuple[pd.DatetimeIndex, pd.DatetimeIndex]:
    start = pd.DatetimeIndex(s.index).to_period("M").to_timestamp()
    period_end = start + pd.offsets.MonthEnd(0)
    return period_end, start + pd.offsets.MonthBegin(1) + pd.Timedelta(days=lag_days)


PUBLICATION_LAGS: dict[str, str] = {
    "credit_spread": "Moody's BAA - AAA monthly average of month m: usable from day 8 of m+1",
    "credit_spread_delta": "change of that spread from m-1 to m: same lag",
    "inflation_expectation": "core CPI (CPILFESL) year-on-year % of month m, a proxy for "
    "expected inflation: BLS releases mid-month, usable from day 21 of m+1",
    "fed_funds_rate": "3-month T-bill rate, quarterly (statsmodels macrodata, proxy for the "
    "policy rate): quarter q usable 60 days after its end; stale after 200 days",
    "real_interest_rate": "real interest rate, quarterly (statsmodels macrodata): same lag",
    "unemployment_trend": "change of the unemployment rate over quarter q (statsmodels "
    "macrodata): same lag",
}
"""The publication-lag rule per filled context slot (also printed in the model card)."""


def macro_series() -> list[MacroSeries]:
    """Every macro series used for the context, with its period ends and availability dates."""
    from arch.data import core_cpi, default
    from statsmodels.datasets import macrodata

    out: list[MacroSeries] = []
    d = default.load()
    spread = (d["BAA"] - d["AAA"]).astype("float64")
    end, avail = _monthly(spread, 7)
    out.append(MacroSeries("credit_spread", end, avail, spread.to_numpy(), 62))
    out.append(MacroSeries("credit_spread_delta", end, avail, spread.diff().to_numpy(), 62))
    cpi = core_cpi.load()["CPILFESL"].astype("float64")
    yoy = (cpi / cpi.shift(12) - 1.0) * 100.0
    end, avail = _monthly(yoy, 20)
    out.append(MacroSeries("inflation_expectation", end, avail, yoy.to_numpy(), 62))
    md = macrodata.load_pandas().data
    q_end = (
        pd.PeriodIndex.from_fields(
            year=md["year"].astype(int), quarter=md["quarter"].astype(int), freq="Q"
        )
        .to_timestamp(how="end")
        .normalize()
    )
    q_avail = q_end + pd.Timedelta(days=60)
    for field, values in (
        ("fed_funds_rate", md["tbilrate"]),
        ("real_interest_rate", md["realint"]),
        ("unemployment_trend", md["unemp"].diff()),
    ):
        out.append(
            MacroSeries(
                field,
                pd.DatetimeIndex(q_end),
                pd.DatetimeIndex(q_avail),
                values.to_numpy(np.float64),
                200,
            )
        )
    return out


def build_global_context(
    row_dates: pd.DatetimeIndex, series: list[MacroSeries] | None = None
) -> Float32Array:
    """Context embedding v1 global part for each date, as built pre-market on that date.

    A series value enters a row only when its ``available`` date is on or before the row's date
    (as-of join) and it is no older than ``max_age_days``; otherwise the slot keeps its neutral
    value. Filled slots are normalised exactly as the context embedding does
    (``clip((x - centre) / scale, -4, 4)``); ``fresh_fred`` is 1 when any macro slot is filled and
    ``context_present`` is 1 on every row. Every other slot (VIX, yields, scores, stances,
    calendar, topics, sectors, other sources) stays neutral: the packaged data has no history
    for it over the training years.
    """
    series = macro_series() if series is None else series
    out = np.tile(emb.neutral_global(), (len(row_dates), 1))
    rows = pd.DataFrame({"row_date": pd.DatetimeIndex(row_dates).normalize()})
    rows["pos"] = np.arange(len(rows))
    rows = rows.sort_values("row_date")
    any_filled = np.zeros(len(row_dates), dtype=bool)
    for s in series:
        obs = pd.DataFrame({"available": s.available, "period_end": s.period_end, "value": s.value})
        obs = obs.dropna().sort_values("available")
        joined = pd.merge_asof(
            rows, obs, left_on="row_date", right_on="available", direction="backward"
        )
        age = (joined["row_date"] - joined["period_end"]).dt.days
        ok = joined["value"].notna() & (age <= s.max_age_days)
        centre, scale = emb.NUMERIC_SCALES[s.field]
        enc = np.clip((joined["value"].to_numpy() - centre) / scale, -emb.CLIP, emb.CLIP)
        pos = joined["pos"].to_numpy()[ok.to_numpy()]
        out[pos, emb.GLOBAL_INDEX[s.field]] = enc[ok.to_numpy()]
        any_filled[pos] = True
    out[any_filled, emb.GLOBAL_INDEX["fresh_fred"]] = 1.0
    out[:, emb.GLOBAL_INDEX["context_present"]] = 1.0
    return out.astype(np.float32)


def context_rows(global_part: Float32Array) -> Float32Array:
    """``concat(global, per_symbol)`` with the neutral per-symbol part (no symbol history)."""
    n = len(global_part)
    return np.concatenate((global_part, emb.neutral_symbols(n)), axis=1).astype(np.float32)


# -- rows -----------------------------------------------------------------------------------------


def build_rows(context_shift_days: int = 0) -> Rows:
    """All labelled rows. ``context_shift_days`` > 0 builds each row's context as of that many
    trading days earlier (the look-ahead check of the model card)."""
    bars = load_bars()
    series = macro_series()
    parts: list[dict[str, np.ndarray]] = []
    for sid, sym in enumerate(SYMBOLS):
        b = bars[sym]
        feats = bar_features(b)
        close = b["Close"].to_numpy()
        logc = np.log(close)
        r = np.diff(logc, prepend=np.nan)  # r[t] = log(c[t]/c[t-1])
        nxt = np.roll(r, -1)  # r[t+1]
        sigma = pd.Series(r).rolling(VOL_WINDOW).std(ddof=0).to_numpy()
        fut = np.stack([np.roll(r, -k) for k in range(1, LABEL_HORIZON_DAYS + 1)], axis=1)
        valid = np.arange(len(b)) < len(b) - LABEL_HORIZON_DAYS
        valid &= np.isfinite(sigma) & (np.arange(len(b)) >= schema.HISTORY_FULL)
        action = np.where(
            nxt > HOLD_BAND_SIGMAS * sigma, 1, np.where(nxt < -HOLD_BAND_SIGMAS * sigma, 2, 0)
        )
        up_exc = np.log(np.roll(b["High"].to_numpy(), -1) / close)
        down_exc = np.log(np.roll(b["Low"].to_numpy(), -1) / close)
        abs_sum = np.abs(fut).sum(axis=1)
        ctx_dates = pd.DatetimeIndex(b.index)
        if context_shift_days:
            ctx_dates = pd.DatetimeIndex(np.roll(ctx_dates.to_numpy(), context_shift_days))
        glob = build_global_context(ctx_dates, series)
        if context_shift_days:
            glob[:context_shift_days] = emb.neutral_global()
        parts.append(
            {
                "dates": b.index.to_numpy(dtype="datetime64[D]")[valid],
                "symbol": np.full(valid.sum(), sid, dtype=np.int64),
                "ticks": feats[valid],
                "context": context_rows(glob[valid]),
                "action": action[valid].astype(np.int64),
                "up": (nxt[valid] > 0).astype(np.int64),
                "ret_today": r[valid].astype(np.float32),
                "excursions": np.stack([up_exc, down_exc], axis=1)[valid].astype(np.float32),
                "risk_raw": np.sqrt((fut**2).sum(axis=1))[valid].astype(np.float32),
                "urgency": np.where(
                    abs_sum > 0, np.abs(nxt) / np.where(abs_sum > 0, abs_sum, 1), 0
                )[valid].astype(np.float32),
            }
        )
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.lexsort((merged["symbol"], merged["dates"]))
    return Rows(**{k: v[order] for k, v in merged.items()})


def risk_percentiles(train_risk: Float32Array, risk: Float32Array) -> Float32Array:
    """Percentile of ``risk`` among the training rows' raw risk (the ``risk`` label, 0..1)."""
    ref = np.sort(train_risk)
    return (np.searchsorted(ref, risk, side="right") / max(len(ref), 1)).astype(np.float32)
