"""Context embedding v1: the documented float32 layout of a ``DailyContext``.

The model's ``context`` input for a row is ``concat(global, per_symbol[symbol_id])``, a
``float32[CONTEXT_DIM]`` vector. The global part (``GLOBAL_FIELDS``) holds rates, spreads, the Fed
stance, the economic calendar, legislative and market sentiment, sector scores in the fixed order of
:data:`relentless_fast.context.sectors.SECTORS` and per-source freshness flags. The per-symbol part
(``SYMBOL_FIELDS``) holds the symbol's insider signal, news, options flow, earnings proximity, its
sector's scores and a one-hot of its sector.

Encoding rules (all of v1):

- Levels in natural units are normalised as ``clip((x - centre) / scale, -4, 4)`` with the centre
  and scale of :data:`NUMERIC_SCALES` (fixed constants, not fitted, so a past day encodes the same
  way forever).
- Scores already in ``[-1, 1]`` or ``[0, 1]`` are passed through, clipped to ``[-1, 1]``.
- Stances and sectors are one-hot; an unknown stance or sector is all zeros.
- Calendar proximity is ``1 / (1 + days_until)`` (0 when no date is known); earnings proximity is
  ``exp(-|days| / 5)`` split into upcoming and recent.
- Counts are ``min(1, log1p(n) / log1p(cap))``.
- ``context_present`` / ``symbol_present`` are 1 for a real context and 0 in the neutral one.

The neutral context (``neutral_global()``, ``neutral_symbols(n)``) is all zeros: every level at its
centre, every score neutral, no stance, no sector, no fresh source. The engine uses it until a
context is present, and model training uses it for slots with no history.

Layout changes need a new ``CONTEXT_EMBEDDING_VERSION``; a model declares the version it was
trained on and the engine refuses a mismatch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from relentless_fast.context.sectors import SECTOR_INDEX, SECTORS

if TYPE_CHECKING:
    from relentless_fast._proto.relentless_fast_pb2 import DailyContext, SymbolContext

CONTEXT_EMBEDDING_VERSION = 1
"""Version of the layout below; bump on any change of fields, order or encoding."""

SOURCES: tuple[str, ...] = ("congress", "fred", "sec", "calendar", "news", "options")
"""Daily sources in the order of the ``fresh_*`` flags."""

CALENDAR_KINDS: tuple[str, ...] = ("cpi", "jobs", "fomc", "gdp", "retail_sales")
"""Economic release kinds tracked by the calendar, in embedding order."""

TOPICS: tuple[str, ...] = (
    "finance",
    "tax",
    "regulatory",
    "defense",
    "infrastructure",
    "healthcare",
    "energy_climate",
    "trade_tariffs",
)
"""Bill topics (the seed's), in embedding order."""

STANCES: tuple[str, ...] = ("dovish", "neutral", "hawkish")
"""Fed stances in one-hot order (matches FedStance codes 1, 2, 3)."""

NUMERIC_SCALES: Mapping[str, tuple[float, float]] = {
    # field: (centre, scale), natural units (percent, percentage points, index points)
    "fed_funds_rate": (2.5, 2.5),
    "ten_year_yield": (3.0, 1.5),
    "yield_curve_slope": (1.0, 1.0),
    "real_interest_rate": (0.5, 1.5),
    "credit_spread": (1.5, 0.75),
    "credit_spread_delta": (0.0, 0.25),
    "high_yield_spread": (4.5, 2.0),
    "high_yield_spread_delta": (0.0, 0.5),
    "inflation_expectation": (2.2, 0.5),
    "dollar_index": (115.0, 10.0),
    "unemployment_trend": (0.0, 0.3),
    "vix": (20.0, 8.0),
}
"""Centre and scale of every normalised level of the global part."""

SCORE_FIELDS: tuple[str, ...] = (
    "legislative_risk_score",
    "regulatory_change_probability",
    "news_sentiment",
    "options_flow_sentiment",
    "insider_trading_signal",
)
"""Global scores passed through (clipped to [-1, 1])."""

GLOBAL_FIELDS: tuple[str, ...] = (
    *NUMERIC_SCALES.keys(),
    *SCORE_FIELDS,
    *(f"fed_stance_{s}" for s in STANCES),
    *(f"{k}_today" for k in CALENDAR_KINDS),
    *(f"{k}_proximity" for k in CALENDAR_KINDS),
    *(f"topic_{t}" for t in TOPICS),
    *(f"sector_legislative_{s}" for s in SECTORS),
    *(f"sector_news_{s}" for s in SECTORS),
    *(f"fresh_{s}" for s in SOURCES),
    "context_present",
)
"""Names of the global part, in order."""

SYMBOL_FIELDS: tuple[str, ...] = (
    "symbol_present",
    "insider_trading_signal",
    "insider_activity",
    "news_sentiment",
    "news_mentions",
    "options_flow_sentiment",
    "has_earnings_date",
    "earnings_upcoming",
    "earnings_recent",
    "earnings_date_estimated",
    "reported_recently",
    "filings_8k",
    "sector_legislative_score",
    "sector_sentiment",
    *(f"sector_{s}" for s in SECTORS),
)
"""Names of the per-symbol part, in order."""

GLOBAL_DIM = len(GLOBAL_FIELDS)
SYMBOL_DIM = len(SYMBOL_FIELDS)
CONTEXT_DIM = GLOBAL_DIM + SYMBOL_DIM

GLOBAL_INDEX: dict[str, int] = {name: i for i, name in enumerate(GLOBAL_FIELDS)}
SYMBOL_INDEX: dict[str, int] = {name: i for i, name in enumerate(SYMBOL_FIELDS)}

CLIP = 4.0
"""Bound of normalised levels."""
EARNINGS_DECAY_DAYS = 5.0
INSIDER_COUNT_CAP = 20
NEWS_COUNT_CAP = 50
FILINGS_COUNT_CAP = 5

Float32Array = npt.NDArray[np.float32]


def neutral_global() -> Float32Array:
    """The neutral global part: float32[GLOBAL_DIM] of zeros."""
    return np.zeros(GLOBAL_DIM, dtype=np.float32)


def neutral_symbols(n: int) -> Float32Array:
    """The neutral per-symbol part for ``n`` symbols: float32[n, SYMBOL_DIM] of zeros."""
    if n < 0:
        raise ValueError(f"symbol count must be >= 0, got {n}")
    return np.zeros((n, SYMBOL_DIM), dtype=np.float32)


def build_global(ctx: DailyContext) -> Float32Array:
    """Encode the global part of ``ctx`` as float32[GLOBAL_DIM]."""
    out = neutral_global()
    for name, (centre, scale) in NUMERIC_SCALES.items():
        out[GLOBAL_INDEX[name]] = _norm(float(getattr(ctx, name)), centre, scale)
    for name in SCORE_FIELDS:
        out[GLOBAL_INDEX[name]] = _score(float(getattr(ctx, name)))
    stance = stance_name(ctx)
    if stance:
        out[GLOBAL_INDEX[f"fed_stance_{stance}"]] = 1.0
    for event in ctx.calendar:
        if event.kind in CALENDAR_KINDS and event.days_until >= 0:
            out[GLOBAL_INDEX[f"{event.kind}_today"]] = 1.0 if event.days_until == 0 else 0.0
            out[GLOBAL_INDEX[f"{event.kind}_proximity"]] = 1.0 / (1.0 + event.days_until)
    _put_map(out, "topic_", ctx.topic_scores, TOPICS)
    _put_map(out, "sector_legislative_", ctx.sector_scores, SECTORS)
    _put_map(out, "sector_news_", ctx.sector_news_sentiment, SECTORS)
    for src in ctx.sources:
        if src.source in SOURCES and src.fresh:
            out[GLOBAL_INDEX[f"fresh_{src.source}"]] = 1.0
    out[GLOBAL_INDEX["context_present"]] = 1.0
    return out


def symbol_row(sym: SymbolContext) -> list[float]:
    """One ``SymbolContext`` as the SYMBOL_FIELDS values, in order (plain floats)."""
    upcoming = recent = has_date = estimated = 0.0
    if sym.has_earnings_date and math.isfinite(sym.days_to_earnings):
        days = float(sym.days_to_earnings)
        has_date = 1.0
        proximity = math.exp(-abs(days) / EARNINGS_DECAY_DAYS)
        if days >= 0:
            upcoming = proximity
        else:
            recent = proximity
        estimated = 1.0 if sym.earnings_date_estimated else 0.0
    row = [
        1.0,  # symbol_present
        _score(sym.insider_trading_signal),
        _count(sym.insider_transactions, INSIDER_COUNT_CAP),
        _score(sym.news_sentiment),
        _count(sym.news_mentions, NEWS_COUNT_CAP),
        _score(sym.options_flow_sentiment),
        has_date,
        upcoming,
        recent,
        estimated,
        1.0 if sym.reported_recently else 0.0,
        _count(sym.filings_8k, FILINGS_COUNT_CAP),
        _score(sym.sector_legislative_score),
        _score(sym.sector_sentiment),
    ]
    onehot = [0.0] * len(SECTORS)
    sector = SECTOR_INDEX.get(sym.sector)
    if sector is not None:
        onehot[sector] = 1.0
    return row + onehot


def encode_symbol(sym: SymbolContext, out: Float32Array) -> None:
    """Encode one ``SymbolContext`` into ``out`` (float32[SYMBOL_DIM], overwritten)."""
    out[:] = symbol_row(sym)


def build_symbols(ctx: DailyContext, n_symbols: int) -> Float32Array:
    """Encode the per-symbol part as float32[n_symbols, SYMBOL_DIM], row = symbol id.

    Symbols of the table without a ``SymbolContext`` (and ids >= ``n_symbols``, which are ignored)
    keep the neutral row.
    """
    out = neutral_symbols(n_symbols)
    ids = [s.symbol_id for s in ctx.symbols if s.symbol_id < n_symbols]
    if ids:
        rows = [symbol_row(s) for s in ctx.symbols if s.symbol_id < n_symbols]
        out[ids] = np.asarray(rows, dtype=np.float32)
    return out


def build_symbols_by_name(ctx: DailyContext, symbol_ids: Mapping[str, int]) -> Float32Array:
    """Like :func:`build_symbols`, rows following ``symbol_ids`` (symbol -> id), not the context.

    Use this when the engine's symbol table differs from the one the loader used.
    """
    n = (max(symbol_ids.values()) + 1) if symbol_ids else 0
    out = neutral_symbols(n)
    picked = [(sid, sym) for sym in ctx.symbols if (sid := symbol_ids.get(sym.symbol)) is not None]
    if picked:
        out[[sid for sid, _s in picked]] = np.asarray(
            [symbol_row(s) for _sid, s in picked], dtype=np.float32
        )
    return out


def context_row(
    global_part: Float32Array, per_symbol: Float32Array, symbol_id: int
) -> Float32Array:
    """The model's ``context`` input for one row: ``concat(global, per_symbol[symbol_id])``."""
    return np.concatenate((global_part, per_symbol[symbol_id]))


def stance_name(ctx: DailyContext) -> str:
    """``"dovish"``, ``"neutral"``, ``"hawkish"`` or ``""`` (code first, then the string field)."""
    code = int(ctx.fed_stance_code)
    if 1 <= code <= 3:
        return STANCES[code - 1]
    text = ctx.fed_stance.strip().lower()
    return text if text in STANCES else ""


def _put_map(
    out: Float32Array, prefix: str, values: Mapping[str, float], keys: tuple[str, ...]
) -> None:
    for key, value in values.items():
        if key in keys:
            out[GLOBAL_INDEX[prefix + key]] = _score(value)


def _norm(x: float, centre: float, scale: float) -> float:
    if not math.isfinite(x):
        return 0.0
    return max(-CLIP, min(CLIP, (x - centre) / scale))


def _score(x: float) -> float:
    if not math.isfinite(x):
        return 0.0
    return max(-1.0, min(1.0, x))


def _count(n: int, cap: int) -> float:
    return min(1.0, math.log1p(max(0, n)) / math.log1p(cap))
