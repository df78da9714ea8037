"""Build a ``DailyContext`` from the sources' payloads: a pure function of its inputs.

``build_context`` never does I/O: given the same payloads (as stored in DuckDB) it builds the same
context, which is what makes ``context show`` / ``backfill`` exact. Sources without a payload leave
their fields neutral (0, no stance) and are marked not fresh.

Derived rates (FRED, percent): ``fed_funds_rate`` = DFF; ``yield_curve_slope`` = T10Y2Y (DGS10 -
DGS2 when missing); ``real_interest_rate`` = DGS10 - T10YIE; ``credit_spread`` = BAMLC0A0CM and
``high_yield_spread`` = BAMLH0A0HYM2 with their change over ``change_window_days``;
``inflation_expectation`` = T10YIE (T5YIE when missing); ``dollar_index`` = DTWEXBGS;
``unemployment_trend`` = UNRATE now minus ``unemployment_trend_months`` earlier; ``vix`` = VIXCLS.

Fed stance rule: the target range's upper bound (DFEDTARU) moved by >= 0.25 over the last 90 days:
up = hawkish, down = dovish. Otherwise the 2-year yield against the effective rate (DGS2 - DFF):
> +0.25 hawkish (markets price hikes), < -0.25 dovish (cuts priced), else neutral.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from relentless_fast._proto.relentless_fast_pb2 import DailyContext, FedStance, SymbolContext
from relentless_fast.context import embedding, legislation, sessions
from relentless_fast.context.config import ContextConfig
from relentless_fast.context.sectors import SECTORS, sector_for_sic
from relentless_fast.context.sources import fred, news, options, sec
from relentless_fast.context.sources.congress import Bill
from relentless_fast.context.universe import Member

STANCE_CODES = {
    "dovish": FedStance.FED_STANCE_DOVISH,
    "neutral": FedStance.FED_STANCE_NEUTRAL,
    "hawkish": FedStance.FED_STANCE_HAWKISH,
}
STANCE_TARGET_WINDOW_DAYS = 90
STANCE_THRESHOLD = 0.25


@dataclass(frozen=True)
class SourceInput:
    """A source's payload for a build and where it came from."""

    payload: dict[str, Any] | None
    fetched_unix_ns: int  # when the payload was fetched (0 when there is none)
    fresh: bool  # fetched in this run for this as-of date
    reason: str  # why not fresh ("" when fresh)


def _stats(
    payload: Mapping[str, Any], series_id: str, as_of: dt.date, cfg: ContextConfig
) -> fred.SeriesStats | None:
    rows = payload.get("series", {}).get(series_id)
    if not rows:
        return None
    obs = [
        fred.Observation(dt.date.fromisoformat(d), math.nan if v is None else float(v))
        for d, v in rows
    ]
    return fred.series_stats(
        series_id, obs, as_of, cfg.zscore_lookback_days, cfg.change_window_days
    )


def _value_at(payload: Mapping[str, Any], series_id: str, before: dt.date) -> float | None:
    """Latest non-missing value of a series dated on or before ``before``."""
    best: tuple[str, float] | None = None
    for d, v in payload.get("series", {}).get(series_id, []):
        if v is not None and d <= before.isoformat() and (best is None or d > best[0]):
            best = (d, float(v))
    return best[1] if best else None


def fed_stance(
    payload: Mapping[str, Any], as_of: dt.date, stats: Mapping[str, fred.SeriesStats]
) -> str:
    """The documented stance rule (module docstring); "" when the inputs are missing."""
    upper = stats.get("DFEDTARU")
    if upper is not None:
        then = _value_at(
            payload, "DFEDTARU", upper.last_date - dt.timedelta(days=STANCE_TARGET_WINDOW_DAYS)
        )
        if then is not None:
            moved = upper.value - then
            if moved >= STANCE_THRESHOLD:
                return "hawkish"
            if moved <= -STANCE_THRESHOLD:
                return "dovish"
    two, eff = stats.get("DGS2"), stats.get("DFF")
    if two is None or eff is None:
        return "" if upper is None else "neutral"
    gap = two.value - eff.value
    if gap > STANCE_THRESHOLD:
        return "hawkish"
    if gap < -STANCE_THRESHOLD:
        return "dovish"
    return "neutral"


def _apply_fred(
    ctx: DailyContext, payload: Mapping[str, Any], as_of: dt.date, cfg: ContextConfig
) -> None:
    stats = {s: st for s in payload.get("series", {}) if (st := _stats(payload, s, as_of, cfg))}
    for s, st in stats.items():
        ctx.series_zscore[s] = st.zscore

    def val(s: str) -> float | None:
        return stats[s].value if s in stats else None

    def setf(name: str, value: float | None) -> None:
        if value is not None and math.isfinite(value):
            setattr(ctx, name, value)

    setf("fed_funds_rate", val("DFF"))
    setf("fed_target_upper", val("DFEDTARU"))
    setf("ten_year_yield", val("DGS10"))
    slope = val("T10Y2Y")
    if slope is None and val("DGS10") is not None and val("DGS2") is not None:
        slope = val("DGS10") - val("DGS2")  # type: ignore[operator]
    setf("yield_curve_slope", slope)
    inflation = val("T10YIE") if val("T10YIE") is not None else val("T5YIE")
    setf("inflation_expectation", inflation)
    if val("DGS10") is not None and val("T10YIE") is not None:
        setf("real_interest_rate", val("DGS10") - val("T10YIE"))  # type: ignore[operator]
    setf("credit_spread", val("BAMLC0A0CM"))
    setf("credit_spread_delta", stats["BAMLC0A0CM"].change if "BAMLC0A0CM" in stats else None)
    setf("high_yield_spread", val("BAMLH0A0HYM2"))
    setf(
        "high_yield_spread_delta", stats["BAMLH0A0HYM2"].change if "BAMLH0A0HYM2" in stats else None
    )
    setf("dollar_index", val("DTWEXBGS"))
    setf("vix", val("VIXCLS"))
    if "UNRATE" in stats:
        st = stats["UNRATE"]
        # first of the month N months back (monthly series are dated on the 1st)
        m = st.last_date.month - cfg.unemployment_trend_months
        y = st.last_date.year + (m - 1) // 12
        ref_day = dt.date(y, (m - 1) % 12 + 1, 1)
        then = _value_at(payload, "UNRATE", ref_day)
        if then is not None:
            ctx.unemployment_trend = st.value - then
    stance = fed_stance(payload, as_of, stats)
    if stance:
        ctx.fed_stance = stance
        ctx.fed_stance_code = STANCE_CODES[stance]


def _apply_calendar(ctx: DailyContext, payload: Mapping[str, Any], as_of: dt.date) -> None:
    rows = [(int(rid), "", dt.date.fromisoformat(d)) for rid, d in payload.get("releases", [])]
    nxt = fred.next_events(rows, as_of)
    for kind in embedding.CALENDAR_KINDS:
        if kind in nxt:
            day, days = nxt[kind]
            ctx.calendar.add(kind=kind, date=day.isoformat(), days_until=days)
        else:
            ctx.calendar.add(kind=kind, date="", days_until=-1)


def _apply_congress(ctx: DailyContext, payload: Mapping[str, Any]) -> dict[str, float]:
    bills = [legislation.classify(Bill(**b)) for b in payload.get("bills", [])]
    summary = legislation.summarise(bills)
    ctx.legislative_risk_score = summary.legislative_risk_score
    ctx.regulatory_change_probability = summary.regulatory_change_probability
    ctx.pending_bills.extend(summary.pending_bills)
    for s in SECTORS:
        ctx.sector_scores[s] = summary.sector_scores.get(s, 0.0)
    for t, v in summary.topic_scores.items():
        ctx.topic_scores[t] = v
    return summary.sector_scores


@dataclass
class _SymbolFacts:
    sector: str = ""
    sic: int = 0
    insider: float = 0.0
    insider_n: int = 0
    earnings: sec.EarningsEstimate | None = None
    filings_8k: int = 0


def _sec_facts(
    payload: Mapping[str, Any] | None, members: Sequence[Member], as_of: dt.date, cfg: ContextConfig
) -> dict[str, _SymbolFacts]:
    facts = {m.ticker: _SymbolFacts(sector=m.sector, sic=m.sic) for m in members}
    if not payload:
        return facts
    window_start = sessions.lookback_start(as_of, cfg.sec_lookback_days)
    window_days = (as_of - window_start).days
    for ticker, comp in payload.get("companies", {}).items():
        f = facts.get(ticker)
        if f is None:
            continue
        f.sic = int(comp.get("sic") or f.sic)
        f.sector = sector_for_sic(f.sic) or f.sector
        filings = [
            sec.Filing(
                x["accession"],
                x["form"],
                dt.date.fromisoformat(x["filing_date"]),
                "",
                tuple(x["items"]),
                "",
            )
            for x in comp.get("filings", [])
        ]
        f.earnings = sec.earnings_estimate(filings, as_of, window_days)
        f.filings_8k = sum(1 for x in filings if x.form == "8-K" and x.filing_date >= window_start)
    for ticker, rows in payload.get("trades", {}).items():
        f = facts.get(ticker)
        if f is None or not rows:
            continue
        trades = [sec.InsiderTrade(**r) for r in rows]
        f.insider = sec.insider_signal(trades)
        f.insider_n = len(trades)
    return facts


def _freshness(ctx: DailyContext, inputs: Mapping[str, SourceInput], built_unix_ns: int) -> None:
    for source in embedding.SOURCES:
        inp = inputs.get(source)
        entry = ctx.sources.add(source=source)
        if inp is None or inp.payload is None:
            entry.fresh, entry.age_secs = False, -1.0
            entry.reason = inp.reason if inp else "not fetched"
            continue
        entry.fresh = inp.fresh
        entry.as_of_unix_ns = inp.fetched_unix_ns
        entry.age_secs = max(0.0, (built_unix_ns - inp.fetched_unix_ns) / 1e9)
        entry.reason = inp.reason


def _apply_news(
    ctx: DailyContext,
    payload: Mapping[str, Any],
    members: Sequence[Member],
    facts: Mapping[str, _SymbolFacts],
) -> news.NewsSummary:
    heads = [
        news.Headline(
            h["uid"],
            h["title"],
            h["summary"],
            dt.datetime.fromisoformat(h["published"]) if h.get("published") else None,
        )
        for h in payload.get("headlines", [])
    ]
    summary = news.summarise(
        heads,
        _lexicon(),
        {m.ticker: m.name for m in members},
        {t: f.sector for t, f in facts.items()},
    )
    ctx.news_sentiment = summary.overall
    for s in SECTORS:
        ctx.sector_news_sentiment[s] = summary.by_sector.get(s, 0.0)
    return summary


@functools.lru_cache(maxsize=1)
def _lexicon() -> news.Lexicon:
    return news.load_lexicon()


def build_context(
    as_of: dt.date,
    inputs: Mapping[str, SourceInput],
    members: Sequence[Member],
    symbol_ids: Mapping[str, int],
    cfg: ContextConfig,
    *,
    version: int,
    built_unix_ns: int,
) -> DailyContext:
    """The context for trading day ``as_of`` from the sources' payloads."""
    ctx = DailyContext(
        as_of_date=as_of.isoformat(),
        version=version,
        embedding_version=embedding.CONTEXT_EMBEDDING_VERSION,
        built_unix_ns=built_unix_ns,
    )
    _freshness(ctx, inputs, built_unix_ns)
    payload = {s: (inputs[s].payload if s in inputs else None) for s in embedding.SOURCES}

    if payload["fred"]:
        _apply_fred(ctx, payload["fred"], as_of, cfg)
    if payload["calendar"]:
        _apply_calendar(ctx, payload["calendar"], as_of)
    sector_leg = _apply_congress(ctx, payload["congress"]) if payload["congress"] else {}
    facts = _sec_facts(payload["sec"], members, as_of, cfg)

    news_sum = _apply_news(ctx, payload["news"], members, facts) if payload["news"] else None
    flow = None
    if payload["options"]:
        rows = [
            options.FlowRow(
                dt.date.fromisoformat(r["date"]),
                r["symbol"],
                r["call_volume"],
                r["put_volume"],
                r["call_oi"],
                r["put_oi"],
            )
            for r in payload["options"].get("rows", [])
        ]
        flow = options.summarise(rows, as_of)
        ctx.options_flow_sentiment = flow.market

    weighted = [(f.insider, f.insider_n) for f in facts.values() if f.insider_n]
    if weighted:
        ctx.insider_trading_signal = sum(s * n for s, n in weighted) / sum(n for _s, n in weighted)

    for m in members:
        sid = symbol_ids.get(m.ticker)
        if sid is None:
            continue
        f = facts[m.ticker]
        sym = SymbolContext(symbol=m.ticker, symbol_id=sid, sector=f.sector, sic=f.sic)
        sym.insider_trading_signal = f.insider
        sym.insider_transactions = f.insider_n
        sym.filings_8k = f.filings_8k
        if f.earnings is not None:
            sym.has_earnings_date = f.earnings.has_date
            sym.days_to_earnings = f.earnings.days_to_earnings
            sym.earnings_date_estimated = f.earnings.has_date
            sym.reported_recently = f.earnings.reported_recently
        if news_sum is not None:
            sym.news_sentiment = news_sum.by_symbol.get(m.ticker, 0.0)
            sym.news_mentions = news_sum.mentions.get(m.ticker, 0)
            sym.sector_sentiment = news_sum.by_sector.get(f.sector, 0.0)
        if flow is not None:
            sym.options_flow_sentiment = flow.by_symbol.get(m.ticker, 0.0)
        sym.sector_legislative_score = sector_leg.get(f.sector, 0.0)
        ctx.symbols.append(sym)
    ctx.global_embedding.extend(embedding.build_global(ctx).tolist())
    return ctx


def usable(ctx: DailyContext) -> bool:
    """Whether any source contributed (fresh or stale): otherwise nothing usable was built."""
    return any(s.as_of_unix_ns > 0 for s in ctx.sources)
