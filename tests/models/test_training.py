"""Training data guards: publication lags (no look-ahead), labels, metrics, and the shifted-context
check of the model card."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("arch", reason="the train extra (arch) is not installed")
pytest.importorskip("statsmodels", reason="the train extra (statsmodels) is not installed")

from relentless_fast.context import embedding as emb
from relentless_fast.training import data, metrics


@pytest.fixture(scope="module")
def series() -> list[data.MacroSeries]:
    return data.macro_series()


@pytest.fixture(scope="module")
def rows() -> data.Rows:
    return data.build_rows()


def test_every_observation_is_used_only_after_its_period(series: list[data.MacroSeries]) -> None:
    for s in series:
        assert (s.available > s.period_end).all(), s.field


@pytest.mark.parametrize("cut", ["2003-06-16", "2008-09-15", "2016-11-09"])
def test_changing_later_observations_never_changes_earlier_context(
    series: list[data.MacroSeries], cut: str
) -> None:
    """Look-ahead guard: rewrite every observation published after ``cut``; the context of
    every row on or before ``cut`` must be bit-identical."""
    days = pd.bdate_range("2000-01-01", "2018-12-31")
    before = data.build_global_context(days, series)
    rng = np.random.default_rng(0)
    cut_ts = pd.Timestamp(cut)
    changed = [
        data.MacroSeries(
            s.field,
            s.period_end,
            s.available,
            np.where(s.available > cut_ts, rng.normal(0, 5, len(s.value)), s.value),
            s.max_age_days,
        )
        for s in series
    ]
    after = data.build_global_context(days, changed)
    early = days <= cut_ts
    np.testing.assert_array_equal(before[early], after[early])
    assert not np.array_equal(before[~early], after[~early])  # the change is visible later


def test_monthly_value_appears_only_after_its_lag(series: list[data.MacroSeries]) -> None:
    spread = next(s for s in series if s.field == "credit_spread")
    i = int(np.searchsorted(spread.period_end, pd.Timestamp("2010-03-31")))
    assert spread.available[i] == pd.Timestamp("2010-04-08")
    ctx = data.build_global_context(pd.DatetimeIndex(["2010-04-07", "2010-04-08"]), series)
    col = emb.GLOBAL_INDEX["credit_spread"]
    centre, scale = emb.NUMERIC_SCALES["credit_spread"]
    assert ctx[1, col] == pytest.approx((spread.value[i] - centre) / scale, rel=1e-6)
    assert ctx[0, col] == pytest.approx((spread.value[i - 1] - centre) / scale, rel=1e-6)


def test_stale_quarterly_slots_go_neutral(series: list[data.MacroSeries]) -> None:
    ctx = data.build_global_context(pd.DatetimeIndex(["2005-06-01", "2015-06-01"]), series)
    col = emb.GLOBAL_INDEX["fed_funds_rate"]
    assert ctx[0, col] != 0.0  # statsmodels macrodata covers 2005
    assert ctx[1, col] == 0.0  # ends 2009Q3: stale by 2015, neutral
    assert (ctx[:, emb.GLOBAL_INDEX["vix"]] == 0).all()  # documented neutral slot
    assert (ctx[:, emb.GLOBAL_INDEX["context_present"]] == 1).all()


def test_rows_shapes_split_and_neutral_bar_features(rows: data.Rows) -> None:
    from relentless_fast.features import schema

    assert rows.ticks.shape[1] == schema.N_FEATURES
    assert rows.context.shape[1] == emb.CONTEXT_DIM
    assert np.isfinite(rows.ticks).all() and np.isfinite(rows.context).all()
    for name in ("spread_bps", "book_imbalance", "has_quote"):
        assert (rows.ticks[:, schema.FEATURE_INDEX[name]] == 0).all(), name
    assert (rows.ticks[:, schema.FEATURE_INDEX["time_of_day"]] == 1).all()
    assert (rows.context[:, emb.GLOBAL_DIM :] == 0).all()  # no per-symbol history
    train, valid, test = rows.split()
    assert train.dates.max() < valid.dates.min() and valid.dates.max() < test.dates.min()
    assert len(train) + len(valid) + len(test) == len(rows)


def test_labels_follow_their_definitions(rows: data.Rows) -> None:
    bars = data.load_bars()["SPX"]
    close = bars["Close"]
    sel = np.flatnonzero(rows.symbol == 0)[[0, 500, 2000]]
    for i in sel:
        day = pd.Timestamp(rows.dates[i])
        t = close.index.get_loc(day)
        r_next = np.log(close.iloc[t + 1] / close.iloc[t])
        assert rows.up[i] == int(r_next > 0)
        assert rows.ret_today[i] == pytest.approx(
            np.log(close.iloc[t] / close.iloc[t - 1]), rel=1e-5
        )
        up_exc = np.log(bars["High"].iloc[t + 1] / close.iloc[t])
        assert rows.excursions[i, 0] == pytest.approx(up_exc, rel=1e-5)
        sigma = np.log(close).diff().iloc[t - 19 : t + 1].std(ddof=0)
        want = 1 if r_next > 0.25 * sigma else 2 if r_next < -0.25 * sigma else 0
        assert rows.action[i] == want
    assert ((rows.urgency >= 0) & (rows.urgency <= 1)).all()


def test_auc_matches_pair_count() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    p = np.round(rng.random(200), 1)  # ties on purpose
    pos, neg = p[y == 1], p[y == 0]
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert metrics.auc(y, p) == pytest.approx(pairs / (len(pos) * len(neg)))
    assert metrics.auc(y, np.full(200, 0.3)) == 0.5


def test_bootstrap_intervals_bracket_the_estimate() -> None:
    rng = np.random.default_rng(2)
    dates = np.repeat(np.arange("2014-01-01", "2015-01-01", dtype="datetime64[D]"), 2)
    y = rng.integers(0, 2, len(dates))
    good = np.clip(y * 0.3 + 0.35 + rng.normal(0, 0.1, len(y)), 0.01, 0.99)
    est = metrics.bootstrap(
        y,
        {"good": good, "flat": np.full(len(y), 0.5)},
        dates,
        n_boot=200,
        diffs=(("good", "flat"),),
    )
    for e in est["good"].values():
        assert e.low <= e.value <= e.high
    assert est["good - flat"]["accuracy"].low > 0  # a real edge is detected
    assert est["good - flat"]["log_loss"].high < 0


def test_shifted_context_does_not_improve_results() -> None:
    """The model card's look-ahead check, rerun: context one day later must not do better."""
    pytest.importorskip("tensorflow")
    from relentless_fast.training import evaluate, train

    check = evaluate.lookahead_check(
        train.prepare(), train.prepare(context_shift_days=1), n_boot=200
    )
    assert not check.improves, check.shifted_minus_aligned


def test_native_kernel_matches_reference_on_daily_bars() -> None:
    """Training uses the native kernel when built; it must equal the reference on our bars."""
    from relentless_fast.features.reference import ReferenceFeatures

    bars = data.load_bars()["NDX"].iloc[:600]
    if data.kernel_name() != "native":
        pytest.skip("relentless_fast._features is not built")
    native = data.bar_features(bars)
    idx = pd.DatetimeIndex(bars.index)
    ts = (idx + pd.Timedelta(hours=16)).tz_localize("America/New_York").tz_convert("UTC")
    ref = ReferenceFeatures(None, 1, bars=True, rate_tau_s=data.BAR_RATE_TAU_S).run_bars(
        0,
        np.asarray(ts.as_unit("ns").asi8, dtype=np.int64),
        bars["High"].to_numpy(np.float64),
        bars["Low"].to_numpy(np.float64),
        bars["Close"].to_numpy(np.float64),
        bars["Volume"].to_numpy(np.float64),
        np.full(len(bars), np.nan),
        np.zeros(len(bars), dtype=np.uint64),
    )
    np.testing.assert_allclose(native, ref, rtol=1e-5, atol=1e-6)
