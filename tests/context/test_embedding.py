"""Context embedding v1: layout, encoding rules and the neutral context."""

from __future__ import annotations

import math

import numpy as np

from relentless_fast._proto.relentless_fast_pb2 import DailyContext, FedStance
from relentless_fast.context import embedding as emb
from relentless_fast.context.sectors import SECTORS, sector_for_sic


def _ctx() -> DailyContext:
    ctx = DailyContext(
        fed_funds_rate=5.0,
        yield_curve_slope=-0.5,
        vix=100.0,  # far outside: clipped
        legislative_risk_score=0.7,
        news_sentiment=-3.0,  # out of range: clipped
        fed_stance="neutral",
        fed_stance_code=FedStance.FED_STANCE_HAWKISH,
    )
    ctx.sector_scores["energy"] = 0.25
    ctx.sector_scores["not-a-sector"] = 0.9
    ctx.sector_news_sentiment["technology"] = -0.5
    ctx.topic_scores["tax"] = 0.4
    ev = ctx.calendar.add(kind="cpi", date="2025-01-15", days_until=0)
    ev = ctx.calendar.add(kind="fomc", date="2025-01-29", days_until=3)
    ev = ctx.calendar.add(kind="gdp", date="", days_until=-1)
    del ev
    ctx.sources.add(source="fred", fresh=True)
    ctx.sources.add(source="sec", fresh=False, reason="HTTP 503")
    ctx.symbols.add(
        symbol="AAPL",
        symbol_id=1,
        sector="technology",
        insider_trading_signal=-0.5,
        has_earnings_date=True,
        days_to_earnings=-5.0,
        earnings_date_estimated=True,
        news_mentions=50,
        reported_recently=True,
    )
    ctx.symbols.add(symbol="XOM", symbol_id=9, sector="energy")  # id outside the table
    return ctx


def test_dims_and_names_are_consistent() -> None:
    assert emb.CONTEXT_EMBEDDING_VERSION == 1
    assert emb.CONTEXT_DIM == emb.GLOBAL_DIM + emb.SYMBOL_DIM
    assert len(set(emb.GLOBAL_FIELDS)) == emb.GLOBAL_DIM
    assert len(set(emb.SYMBOL_FIELDS)) == emb.SYMBOL_DIM
    assert emb.GLOBAL_FIELDS[-1] == "context_present"
    assert emb.SYMBOL_FIELDS[-len(SECTORS) :] == tuple(f"sector_{s}" for s in SECTORS)


def test_neutral_is_zero_float32() -> None:
    g, s = emb.neutral_global(), emb.neutral_symbols(3)
    assert g.dtype == np.float32 and g.shape == (emb.GLOBAL_DIM,) and not g.any()
    assert s.dtype == np.float32 and s.shape == (3, emb.SYMBOL_DIM) and not s.any()


def test_empty_context_differs_from_neutral_only_by_presence() -> None:
    g = emb.build_global(DailyContext())
    present = emb.GLOBAL_INDEX["context_present"]
    assert g[present] == 1.0
    expected = np.array([-c / s for c, s in emb.NUMERIC_SCALES.values()], dtype=np.float32).clip(
        -emb.CLIP, emb.CLIP
    )
    np.testing.assert_allclose(g[: len(emb.NUMERIC_SCALES)], expected, rtol=1e-6)


def test_global_encoding() -> None:
    g = emb.build_global(_ctx())
    ix = emb.GLOBAL_INDEX
    assert g[ix["fed_funds_rate"]] == np.float32(1.0)  # (5 - 2.5) / 2.5
    assert g[ix["yield_curve_slope"]] == np.float32(-1.5)
    assert g[ix["vix"]] == emb.CLIP
    assert g[ix["news_sentiment"]] == -1.0
    assert math.isclose(g[ix["legislative_risk_score"]], 0.7, rel_tol=1e-6)
    # the code wins over the string form
    assert (
        g[ix["fed_stance_dovish"]],
        g[ix["fed_stance_neutral"]],
        g[ix["fed_stance_hawkish"]],
    ) == (
        0,
        0,
        1,
    )
    assert g[ix["cpi_today"]] == 1.0 and g[ix["cpi_proximity"]] == 1.0
    assert g[ix["fomc_today"]] == 0.0 and g[ix["fomc_proximity"]] == np.float32(0.25)
    assert g[ix["gdp_proximity"]] == 0.0
    assert g[ix["sector_legislative_energy"]] == 0.25
    assert g[ix["sector_news_technology"]] == -0.5
    assert math.isclose(g[ix["topic_tax"]], 0.4, rel_tol=1e-6)
    assert g[ix["fresh_fred"]] == 1.0 and g[ix["fresh_sec"]] == 0.0


def test_nan_levels_encode_as_centre() -> None:
    g = emb.build_global(DailyContext(fed_funds_rate=float("nan"), news_sentiment=float("inf")))
    assert g[emb.GLOBAL_INDEX["fed_funds_rate"]] == 0.0
    assert g[emb.GLOBAL_INDEX["news_sentiment"]] == 0.0


def test_symbol_rows_by_id_and_by_name() -> None:
    ctx = _ctx()
    s = emb.build_symbols(ctx, 3)
    ix = emb.SYMBOL_INDEX
    assert not s[0].any() and not s[2].any()
    row = s[1]
    assert row[ix["symbol_present"]] == 1.0
    assert row[ix["insider_trading_signal"]] == -0.5
    assert row[ix["news_mentions"]] == 1.0
    assert row[ix["earnings_upcoming"]] == 0.0
    assert math.isclose(row[ix["earnings_recent"]], math.exp(-1.0), rel_tol=1e-6)
    assert row[ix["earnings_date_estimated"]] == 1.0
    assert row[ix["sector_technology"]] == 1.0 and row[ix["sector_energy"]] == 0.0
    by_name = emb.build_symbols_by_name(ctx, {"XOM": 0, "AAPL": 2})
    np.testing.assert_array_equal(by_name[2], row)
    assert by_name[0][ix["sector_energy"]] == 1.0
    full = emb.context_row(emb.build_global(ctx), s, 1)
    assert full.shape == (emb.CONTEXT_DIM,) and full.dtype == np.float32


def test_sic_sectors() -> None:
    assert sector_for_sic(3571) == "technology"  # electronic computers
    assert sector_for_sic("2834") == "healthcare"  # pharmaceutical preparations
    assert sector_for_sic(6022) == "financials"  # state commercial banks
    assert sector_for_sic(1311) == "energy"
    assert sector_for_sic(6798) == "real_estate"
    assert sector_for_sic(4911) == "utilities"
    assert sector_for_sic(None) == "" and sector_for_sic("x") == "" and sector_for_sic(9999) == ""
