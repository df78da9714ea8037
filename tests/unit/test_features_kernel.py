"""The native feature kernel against the slow reference and against hand-computed values.

Tolerance: kernel and reference both keep float64 state and round each feature to float32 once;
they may differ only by summation order (realised volatility) and float64 rounding, so rows must
agree within ``rtol=1e-6, atol=1e-6`` (a few float32 ulps). Counters must agree exactly.
"""

from __future__ import annotations

import math
import tracemalloc
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relentless_fast._features import FeatureKernel
from relentless_fast.features import bar_features
from relentless_fast.features import schema as sc
from relentless_fast.features.reference import ReferenceFeatures
from relentless_fast.records import DTYPES, Kind
from tests.unit.fake_rings import (
    Event,
    FakeFeed,
    FakeRings,
    TickParseFeed,
    random_stream,
    split_frames,
    tickparse_available,
)

RTOL = 1e-6
ATOL = 1e-6
IX = sc.FEATURE_INDEX
NS = 1_000_000_000
# 2024-01-16 14:30:00 UTC = 09:30 EST; 2024-07-16 13:30:00 UTC = 09:30 EDT.
WINTER_OPEN = 1_705_415_400 * NS
SUMMER_OPEN = 1_721_136_600 * NS

FEEDS = [
    pytest.param(FakeFeed, id="fake-rings"),
    pytest.param(
        TickParseFeed,
        id="tickparse-rings",
        marks=pytest.mark.skipif(
            not tickparse_available(), reason="relentless_fast._tickparse is not built yet"
        ),
    ),
]


def _pair(feed: Any, n_symbols: int, **kw: Any) -> tuple[FeatureKernel, ReferenceFeatures]:
    return FeatureKernel(feed.rings, n_symbols, **kw), ReferenceFeatures(
        feed.rings, n_symbols, **kw
    )


def _assert_rows(kernel: FeatureKernel, ref: ReferenceFeatures) -> None:
    np.testing.assert_allclose(kernel.features, ref.features, rtol=RTOL, atol=ATOL)


def _assert_counters(kernel: FeatureKernel, ref: ReferenceFeatures) -> None:
    got = kernel.counters()
    for k in Kind:
        assert got[f"lost_{k.name.lower()}"] == int(ref.lost[k]), k.name
    for name, value in ref.counts.items():
        assert got[name] == value, name


def _feed_one(kernel: FeatureKernel, feed: FakeFeed, events: list[Event]) -> None:
    ids, n = feed.push(events)
    kernel.update(ids, n)


# -- kernel == reference on random streams -----------------------------------------------------


@pytest.mark.parametrize("feed_cls", FEEDS)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_stream_matches_reference(feed_cls: Any, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_symbols = 7
    feed = feed_cls(n_symbols, capacity=32)
    kernel, ref = _pair(feed, n_symbols)
    events = random_stream(rng, n_symbols, 1500)
    consumed = 0
    for i, frame in enumerate(split_frames(rng, events, 12)):
        ids, n = feed.push(frame)
        consumed += kernel.update(ids, n)
        assert ref.update(ids, n) >= 0
        if i % 10 == 0:
            _assert_rows(kernel, ref)
    _assert_rows(kernel, ref)
    _assert_counters(kernel, ref)
    np.testing.assert_array_equal(kernel.cursors(), ref.cursors)
    # The stream was really consumed: every symbol has history, quotes and adjustments happened.
    assert consumed == len(events) or feed_cls is not FakeFeed
    assert consumed > 0.9 * len(events)
    assert (kernel.features[:, IX["history_frac"]] == 1.0).all()
    assert kernel.features[:, IX["has_quote"]].any()
    assert np.isfinite(kernel.features).all()
    assert kernel.counters()["adjust_unapplied"] > 0  # some corrections arrive on a later day


@pytest.mark.parametrize("feed_cls", FEEDS)
def test_wraparound_without_loss(feed_cls: Any) -> None:
    """Capacity 8, frames of <= 3 events per symbol: cursors cross the wrap many times, no loss."""
    rng = np.random.default_rng(7)
    feed = feed_cls(3, capacity=8)
    kernel, ref = _pair(feed, 3)
    for frame in split_frames(rng, random_stream(rng, 3, 900), 3):
        ids, n = feed.push(frame)
        kernel.update(ids, n)
        ref.update(ids, n)
    assert int(feed.rings.heads(Kind.TRADE).min()) > 8 * 10
    assert all(v == 0 for k, v in kernel.counters().items() if k.startswith("lost_"))
    _assert_rows(kernel, ref)
    _assert_counters(kernel, ref)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    cap=st.sampled_from([2, 3, 8, 64]),
    max_len=st.integers(1, 40),
    n_symbols=st.integers(1, 6),
    mean_gap_s=st.sampled_from([0.01, 30.0, 5000.0]),
)
def test_property_kernel_equals_reference(
    seed: int, cap: int, max_len: int, n_symbols: int, mean_gap_s: float
) -> None:
    """Any stream, frame cut and ring size (losses included): same rows, counters, cursors."""
    rng = np.random.default_rng(seed)
    feed = FakeFeed(n_symbols, cap)
    kernel, ref = _pair(feed, n_symbols)
    events = random_stream(rng, n_symbols, 200, mean_gap_s=mean_gap_s)
    for frame in split_frames(rng, events, max_len):
        ids, n = feed.push(frame)
        assert kernel.update(ids, n) == ref.update(ids, n)
    _assert_rows(kernel, ref)
    _assert_counters(kernel, ref)
    np.testing.assert_array_equal(kernel.cursors(), ref.cursors)


def test_overflow_counts_lost_and_resyncs() -> None:
    feed = FakeFeed(2, capacity=8)
    kernel, ref = _pair(feed, 2)
    ts = WINTER_OPEN
    events: list[Event] = [
        (Kind.TRADE, 0, {"ts_ns": ts + i * NS, "price": 100.0 + i, "size": 10.0}) for i in range(20)
    ]
    ids, n = feed.push(events)
    kernel.update(ids, n)
    ref.update(ids, n)
    assert kernel.counters()["lost_trade"] == 12
    _assert_counters(kernel, ref)
    _assert_rows(kernel, ref)
    # Only the 8 records still in the ring were seen: VWAP over prices 112..119.
    vwap = np.mean(np.arange(112, 120))
    assert kernel.row(0)[IX["vwap_dist"]] == pytest.approx(119 / vwap - 1, rel=1e-6)
    assert kernel.row(0)[IX["session_trades_log"]] == pytest.approx(math.log1p(8), rel=1e-6)


def test_many_small_frames_equal_one_big_frame() -> None:
    rng = np.random.default_rng(11)
    events = random_stream(rng, 5, 1200)
    cap = 2048  # one big frame must fit in the rings
    small_feed, big_feed = FakeFeed(5, cap), FakeFeed(5, cap)
    small, big = FeatureKernel(small_feed.rings, 5), FeatureKernel(big_feed.rings, 5)
    for frame in split_frames(rng, events, 4):
        _feed_one(small, small_feed, frame)
    _feed_one(big, big_feed, events)
    np.testing.assert_array_equal(small.features, big.features)  # bit-identical
    assert small.counters() == big.counters()


def test_update_allocates_no_python_object_per_record() -> None:
    rng = np.random.default_rng(4)
    events = random_stream(rng, 50, 6000, mean_gap_s=0.01)
    feed = FakeFeed(50, 1024)
    kernel = FeatureKernel(feed.rings, 50)
    _feed_one(kernel, feed, events[:100])  # warm: binds the touched array
    ids, n = feed.push(events[100:])
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        consumed = kernel.update(ids, n)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert consumed == 5900
    assert peak < 1024  # a few objects at most (the result int), not one per record


# -- hand-computed values ----------------------------------------------------------------------


def _trades(
    prices: list[float], sizes: list[float], t0: int = WINTER_OPEN, step_s: float = 1.0
) -> list[Event]:
    return [
        (Kind.TRADE, 0, {"ts_ns": t0 + int(i * step_s * NS), "price": p, "size": s})
        for i, (p, s) in enumerate(zip(prices, sizes, strict=True))
    ]


def _run(events: list[Event], n_symbols: int = 1, cap: int = 256) -> tuple[FeatureKernel, FakeFeed]:
    feed = FakeFeed(n_symbols, cap)
    kernel = FeatureKernel(feed.rings, n_symbols)
    _feed_one(kernel, feed, events)
    return kernel, feed


def test_neutral_row_before_any_event() -> None:
    kernel, _ = _run([], n_symbols=3)
    np.testing.assert_array_equal(kernel.features, np.tile(sc.NEUTRAL_VALUES, (3, 1)))
    assert kernel.row(1)[IX["rsi_14"]] == 0.5


def test_returns_ema_rsi_vwap_by_hand() -> None:
    prices = [100.0, 101.0, 100.5]
    kernel, _ = _run(_trades(prices, [10.0, 30.0, 60.0]))
    row = kernel.row(0)
    assert row[IX["ret_1"]] == pytest.approx(math.log(100.5 / 101.0), rel=1e-6)
    assert row[IX["ret_10"]] == 0.0  # fewer than 11 events
    a = 2 / 13
    ema = 100.0
    for p in prices[1:]:
        ema += a * (p - ema)
    assert row[IX["ema_fast_dist"]] == pytest.approx(ema / 100.5 - 1, rel=1e-5)
    gain, loss = 1.0, 0.0  # seeded by the first change, then Wilder smoothing
    gain, loss = gain + (0.0 - gain) / 14, loss + (0.5 - loss) / 14
    assert row[IX["rsi_14"]] == pytest.approx(gain / (gain + loss), rel=1e-6)
    vwap = (100 * 10 + 101 * 30 + 100.5 * 60) / 100
    assert row[IX["vwap_dist"]] == pytest.approx(100.5 / vwap - 1, rel=1e-5)
    assert row[IX["session_volume_log"]] == pytest.approx(math.log1p(100), rel=1e-6)
    rv = math.sqrt(math.log(1.01) ** 2 + math.log(100.5 / 101) ** 2)
    assert row[IX["realized_vol_20"]] == pytest.approx(rv, rel=1e-6)
    assert row[IX["history_frac"]] == pytest.approx(0.03)


def test_long_return_horizons_and_constant_price() -> None:
    prices = [50.0] * 100 + [55.0]
    kernel, _ = _run(_trades(prices, [1.0] * len(prices)))
    row = kernel.row(0)
    assert row[IX["ret_1"]] == pytest.approx(math.log(1.1), rel=1e-6)
    assert row[IX["ret_10"]] == pytest.approx(math.log(1.1), rel=1e-6)
    assert row[IX["ret_100"]] == pytest.approx(math.log(1.1), rel=1e-6)
    assert row[IX["rsi_14"]] == 1.0  # only gains
    assert row[IX["size_z"]] == 0.0  # constant size: zero variance
    assert row[IX["history_frac"]] == 1.0


def test_quote_spread_and_imbalance() -> None:
    events: list[Event] = [
        (Kind.QUOTE, 0, {"ts_ns": WINTER_OPEN, "bid_price": 99.0, "ask_price": 101.0,
                          "bid_size": 3.0, "ask_size": 1.0}),
    ]  # fmt: skip
    kernel, feed = _run(events)
    row = kernel.row(0)
    assert row[IX["spread_bps"]] == pytest.approx(200.0, rel=1e-6)
    assert row[IX["book_imbalance"]] == pytest.approx(0.5)
    assert row[IX["has_quote"]] == 1.0
    # A one-sided quote (bid 0) makes the book unknown: neutral values.
    _feed_one(kernel, feed, [(Kind.QUOTE, 0, {"ts_ns": WINTER_OPEN + NS, "bid_price": 0.0,
                                              "ask_price": 101.0, "bid_size": 0.0,
                                              "ask_size": 5.0})])  # fmt: skip
    row = kernel.row(0)
    assert (row[IX["spread_bps"]], row[IX["book_imbalance"]], row[IX["has_quote"]]) == (0, 0, 0)


@pytest.mark.parametrize(
    ("ts_ns", "expected"),
    [
        (WINTER_OPEN, 0.0),  # 09:30 EST
        (SUMMER_OPEN, 0.0),  # 09:30 EDT: same local time, one hour earlier in UTC
        (WINTER_OPEN + 390 * 60 * NS, 1.0),  # 16:00 EST
        (SUMMER_OPEN + 195 * 60 * NS, 0.5),
        # 2024-03-10 (US DST starts 07:00 UTC): 06:30 UTC is 01:30 EST, 07:30 UTC is 03:30 EDT.
        (1_710_052_200 * NS, (90 - 570) / 390),
        (1_710_055_800 * NS, (210 - 570) / 390),
        # 2024-11-03 (DST ends 06:00 UTC): 05:30 UTC is 01:30 EDT, 06:30 UTC is 01:30 EST.
        (1_730_611_800 * NS, (90 - 570) / 390),
        (1_730_615_400 * NS, (90 - 570) / 390),
    ],
)
def test_time_of_day_is_dst_exact(ts_ns: int, expected: float) -> None:
    kernel, _ = _run([(Kind.TRADE, 0, {"ts_ns": ts_ns, "price": 10.0, "size": 1.0})])
    assert kernel.row(0)[IX["time_of_day"]] == pytest.approx(expected, abs=1e-6)


def test_session_resets_vwap_on_new_local_date() -> None:
    # Day 1 at 15:59 EST, then 20:00 EST = 01:00 UTC next day (same NY date), then next NY date.
    t_late = WINTER_OPEN + 389 * 60 * NS
    events = [
        (Kind.TRADE, 0, {"ts_ns": t_late, "price": 10.0, "size": 100.0}),
        (Kind.TRADE, 0, {"ts_ns": t_late + 4 * 3600 * NS, "price": 20.0, "size": 100.0}),
    ]
    kernel, feed = _run(events)
    assert kernel.row(0)[IX["vwap_dist"]] == pytest.approx(20 / 15 - 1, rel=1e-6)
    assert kernel.row(0)[IX["session_trades_log"]] == pytest.approx(math.log1p(2))
    _feed_one(kernel, feed, [(Kind.TRADE, 0, {"ts_ns": WINTER_OPEN + 86400 * NS, "price": 30.0,
                                              "size": 1.0})])  # fmt: skip
    row = kernel.row(0)
    assert row[IX["vwap_dist"]] == 0.0  # only the new day's trade is in the VWAP
    assert row[IX["session_trades_log"]] == pytest.approx(math.log1p(1))
    assert row[IX["ret_1"]] == pytest.approx(math.log(1.5), rel=1e-6)  # returns carry over


def test_cancel_and_correction_adjust_session_aggregates_only() -> None:
    events = _trades([10.0, 20.0, 30.0], [100.0, 100.0, 100.0])
    kernel, feed = _run(events)
    before = kernel.row(0)
    _feed_one(kernel, feed, [(Kind.CANCEL, 0, {"ts_ns": WINTER_OPEN + 10 * NS, "trade_id": 2,
                                               "price": 20.0, "size": 100.0})])  # fmt: skip
    row = kernel.row(0)
    assert row[IX["vwap_dist"]] == pytest.approx(30 / 20 - 1, rel=1e-6)  # VWAP of 10 and 30
    assert row[IX["session_trades_log"]] == pytest.approx(math.log1p(2))
    assert row[IX["session_volume_log"]] == pytest.approx(math.log1p(200))
    for name in ("ema_fast_dist", "macd", "rsi_14", "ret_1", "realized_vol_20", "size_z"):
        assert row[IX[name]] == before[IX[name]], name  # not rewound
    _feed_one(kernel, feed, [(Kind.CORRECTION, 0, {
        "ts_ns": WINTER_OPEN + 11 * NS, "orig_id": 1, "orig_price": 10.0, "orig_size": 100.0,
        "corr_id": 9, "corr_price": 30.0, "corr_size": 300.0})])  # fmt: skip
    row = kernel.row(0)
    assert row[IX["vwap_dist"]] == 0.0  # every remaining share at 30
    assert row[IX["session_volume_log"]] == pytest.approx(math.log1p(400))
    assert row[IX["session_trades_log"]] == pytest.approx(math.log1p(2))
    # An adjustment dated another day is not applied, only counted.
    _feed_one(kernel, feed, [(Kind.CANCEL, 0, {"ts_ns": WINTER_OPEN - 86400 * NS, "trade_id": 3,
                                               "price": 30.0, "size": 100.0})])  # fmt: skip
    assert kernel.counters()["adjust_unapplied"] == 1
    assert kernel.row(0)[IX["session_volume_log"]] == pytest.approx(math.log1p(400))


def test_trade_rate_and_size_z() -> None:
    events = _trades([10.0] * 4, [10.0, 20.0, 10.0, 40.0], step_s=30.0)
    kernel, _ = _run(events)
    tau = sc.RATE_TAU_S
    rate = 1 / tau
    for _ in range(3):
        rate = rate * math.exp(-30 / tau) + 1 / tau
    row = kernel.row(0)
    assert row[IX["trade_rate_log"]] == pytest.approx(math.log1p(rate), rel=1e-6)
    a = 2 / 51
    xs = [math.log1p(s) for s in (10.0, 20.0, 10.0)]
    mean, var = xs[0], 0.0
    for x in xs[1:]:
        diff = x - mean
        mean += a * diff
        var = (1 - a) * (var + diff * a * diff)
    z = (math.log1p(40) - mean) / math.sqrt(var)
    assert 2 < z < sc.SIZE_Z_CLIP  # a larger trade stands out, below the clip
    assert row[IX["size_z"]] == pytest.approx(z, rel=1e-5)


def test_rows_stay_finite_after_long_constant_runs() -> None:
    """Equal sizes shrink the size variance towards 0: size_z is clipped, never inf."""
    sizes = [10.0, 20.0] + [10.0] * 6000 + [500.0]
    kernel, _ = _run(_trades([10.0] * len(sizes), sizes, step_s=0.001), cap=8192)
    row = kernel.row(0)
    assert np.isfinite(row).all()
    assert row[IX["size_z"]] == sc.SIZE_Z_CLIP


# -- bars --------------------------------------------------------------------------------------


def _bars(rng: np.random.Generator, n: int, step_s: int = 60) -> dict[str, Any]:
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    return {
        "ts_ns": SUMMER_OPEN + np.arange(n, dtype=np.int64) * step_s * NS,
        "high": close * 1.01,
        "low": close * 0.99,
        "close": close,
        "volume": rng.integers(1, 10_000, n).astype(np.float64),
        "vwap": np.where(rng.random(n) < 0.3, np.nan, close * 1.001),
        "trade_count": rng.integers(0, 100, n).astype(np.uint64),
    }


@pytest.mark.parametrize("step_s", [60, 86400])
def test_bar_series_matches_reference(step_s: int) -> None:
    b = _bars(np.random.default_rng(5), 400, step_s)
    rows = bar_features(**b)
    ref = ReferenceFeatures(None, 1).run_bars(0, **b)
    assert rows.shape == (400, sc.N_FEATURES) and rows.dtype == np.float32
    np.testing.assert_allclose(rows, ref, rtol=RTOL, atol=ATOL)
    for name in ("spread_bps", "book_imbalance", "has_quote"):
        assert (rows[:, IX[name]] == 0).all()
    if step_s == 86400:  # each daily bar is its own session: VWAP is the bar's own
        vw = np.where(np.isnan(b["vwap"]), (b["high"] + b["low"] + b["close"]) / 3, b["vwap"])
        np.testing.assert_allclose(
            rows[:, IX["vwap_dist"]], b["close"] / vw - 1, rtol=1e-5, atol=1e-7
        )


def test_bars_before_1970_match_reference() -> None:
    """Negative timestamps: the session day and time of day use floor division."""
    b = _bars(np.random.default_rng(9), 300, 86400)
    b["ts_ns"] = b["ts_ns"] - 60 * 365 * 86400 * NS  # 1964
    assert int(b["ts_ns"][-1]) < 0
    rows = bar_features(**b)
    np.testing.assert_allclose(
        rows, ReferenceFeatures(None, 1).run_bars(0, **b), rtol=RTOL, atol=ATOL
    )
    first = datetime.fromtimestamp(int(b["ts_ns"][0]) // NS, ZoneInfo("America/New_York"))
    minutes = first.hour * 60 + first.minute + first.second / 60
    assert rows[0, IX["time_of_day"]] == pytest.approx((minutes - 570) / 390, abs=1e-6)


@pytest.mark.parametrize("feed_cls", FEEDS)
def test_bars_from_rings_equal_run_bars(feed_cls: Any) -> None:
    b = _bars(np.random.default_rng(6), 120)
    feed = feed_cls(2, {Kind.BAR: 256})
    events: list[Event] = []
    for i in range(120):
        fields = {k: v[i] for k, v in b.items()} | {"open": b["close"][i], "bar_type": ord("b")}
        events.append((Kind.BAR, 1, fields))
        if i % 10 == 0:  # an updated bar restating this one: skipped in bar mode
            events.append((Kind.BAR, 1, fields | {"bar_type": ord("u"), "volume": 1e9}))
    kernel = FeatureKernel(feed.rings, 2, bars=True)
    ref = ReferenceFeatures(feed.rings, 2, bars=True)
    for frame in split_frames(np.random.default_rng(0), events, 5):
        ids, n = feed.push(frame)
        kernel.update(ids, n)
        ref.update(ids, n)
    direct = bar_features(**b)
    np.testing.assert_array_equal(kernel.row(1), direct[-1])
    _assert_rows(kernel, ref)
    assert kernel.counters()["bar_updates_skipped"] == 12 == ref.counts["bar_updates_skipped"]
    np.testing.assert_array_equal(kernel.row(0), sc.NEUTRAL_VALUES)


def test_run_bars_continues_state_and_fills_out() -> None:
    b = _bars(np.random.default_rng(8), 50)
    whole = bar_features(**b)
    kernel = FeatureKernel(None, 3)
    first = {k: np.ascontiguousarray(v[:20]) for k, v in b.items()}
    rest = {k: np.ascontiguousarray(v[20:]) for k, v in b.items()}
    kernel.run_bars(2, **first)
    out = np.zeros((30, sc.N_FEATURES), dtype=np.float32)
    assert kernel.run_bars(2, **rest, out=out) is out
    np.testing.assert_array_equal(out, whole[20:])
    np.testing.assert_array_equal(kernel.row(2), whole[-1])


# -- reset, errors, counters -------------------------------------------------------------------


def test_reset_forgets_state_and_skips_buffered_records() -> None:
    events = _trades([10.0, 11.0, 12.0], [1.0, 1.0, 1.0])
    feed = FakeFeed(2, 64)
    kernel, ref = _pair(feed, 2)
    for frame in (events, _trades([13.0], [1.0], t0=WINTER_OPEN + 100 * NS)):
        ids, n = feed.push(frame)
        if frame is events:  # the second frame stays buffered, not consumed
            kernel.update(ids, n)
            ref.update(ids, n)
    kernel.reset(0)
    ref.reset(0)
    np.testing.assert_array_equal(kernel.row(0), sc.NEUTRAL_VALUES)
    ids, n = feed.push(_trades([20.0, 21.0], [1.0, 1.0], t0=WINTER_OPEN + 200 * NS))
    kernel.update(ids, n)
    ref.update(ids, n)
    _assert_rows(kernel, ref)
    np.testing.assert_array_equal(kernel.cursors(), ref.cursors)
    row = kernel.row(0)
    assert row[IX["history_frac"]] == pytest.approx(0.02)  # only the two new trades
    assert row[IX["ret_1"]] == pytest.approx(math.log(21 / 20), rel=1e-6)


def test_bad_input_is_counted_or_refused() -> None:
    feed = FakeFeed(2, 16)
    kernel = FeatureKernel(feed.rings, 2)
    ids, n = feed.push([
        (Kind.TRADE, 0, {"ts_ns": WINTER_OPEN, "price": float("nan"), "size": 1.0}),
        (Kind.TRADE, 0, {"ts_ns": WINTER_OPEN, "price": -1.0, "size": 1.0}),
        (Kind.TRADE, 0, {"ts_ns": WINTER_OPEN, "price": 5.0, "size": -1.0}),
    ])  # fmt: skip
    kernel.update(ids, n)
    assert kernel.counters()["bad_record"] == 3
    np.testing.assert_array_equal(
        kernel.row(0)[: IX["time_of_day"]], sc.NEUTRAL_VALUES[: IX["time_of_day"]]
    )
    kernel.update(np.array([0, 5, 1 << 31], dtype=np.uint32), 3)
    assert kernel.counters()["bad_symbol_id"] == 2
    with pytest.raises(ValueError, match="outside"):
        kernel.update(np.zeros(2, dtype=np.uint32), 3)
    with pytest.raises(TypeError, match="uint32"):
        kernel.update(np.zeros(2, dtype=np.int64), 1)
    with pytest.raises(TypeError, match="uint32"):
        kernel.update(np.zeros(4, dtype=np.uint32)[::2], 1)
    with pytest.raises(IndexError):
        kernel.row(2)
    with pytest.raises(IndexError):
        kernel.reset(-1)
    with pytest.raises(RuntimeError, match="no rings"):
        FeatureKernel(None, 1).update(np.zeros(1, dtype=np.uint32), 1)
    with pytest.raises(ValueError, match="n_symbols"):
        FeatureKernel(feed.rings, 0)
    with pytest.raises(ValueError, match="must be C-contiguous"):
        FeatureKernel(feed.rings, 3)  # rings hold only 2 symbols
    with pytest.raises(ValueError, match="differ in length"):
        f8 = np.zeros(2)
        FeatureKernel(None, 1).run_bars(
            0, np.zeros(2, np.int64), f8, f8, f8, f8, f8, np.zeros(3, np.uint64)
        )


class _WrongDtypeRings(FakeRings):
    def data(self, kind: int) -> npt.NDArray[np.void]:
        arr = super().data(kind)
        return arr.view(np.uint8) if kind == Kind.QUOTE else arr


class _CopyingRings(FakeRings):
    """Hands out a fresh copy of heads per call: the kernel must re-read it every update."""

    def heads(self, kind: int) -> npt.NDArray[np.uint64]:
        return super().heads(kind).copy()


def test_rings_contract_is_checked() -> None:
    with pytest.raises(TypeError, match="QUOTE"):
        FeatureKernel(_WrongDtypeRings(2, 8), 2)
    rings = _CopyingRings(1, 8)
    kernel = FeatureKernel(rings, 1)
    rings.write(Kind.TRADE, 0, {"ts_ns": WINTER_OPEN, "price": 10.0, "size": 1.0})
    assert kernel.update(np.zeros(1, dtype=np.uint32), 1) == 1
    assert kernel.row(0)[IX["history_frac"]] == pytest.approx(0.01)


def test_record_sizes_match_dtypes() -> None:
    feed = FakeFeed(1, 4)
    kernel = FeatureKernel(feed.rings, 1)  # would raise TypeError on a size mismatch
    assert kernel.features.shape == (1, sc.N_FEATURES)
    assert all(DTYPES[k].itemsize > 0 for k in Kind)
