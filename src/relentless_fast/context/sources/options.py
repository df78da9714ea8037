"""Options flow: a daily CSV of put/call volumes and open interest -> sentiment.

Columns (header required, order free, extra columns ignored)::

    date,symbol,call_volume,put_volume,call_open_interest,put_open_interest

Lines starting with ``#`` are comments. ``date`` is the trading day the numbers are for
(YYYY-MM-DD). ``symbol`` is a ticker or one of the aggregate rows ``EQUITY``, ``TOTAL`` or
``INDEX`` (the market row used for the global score is the first of those present, in that
order). Open-interest columns may be empty.

Score of a row: ``clip(log(baseline / pc) / log(2), -1, 1)`` where ``pc`` is the put/call volume
ratio (open interest when volume is zero) and ``baseline`` 0.7 (a typical equity put/call
ratio): a ratio twice the baseline scores -1 (put heavy), half of it +1 (call heavy). The loader
uses the latest date strictly before the as-of date.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
from dataclasses import dataclass
from pathlib import Path

from relentless_fast.context.sources.http import SourceError, SourceHttp

COLUMNS = ("date", "symbol", "call_volume", "put_volume", "call_open_interest", "put_open_interest")
MARKET_ROWS = ("EQUITY", "TOTAL", "INDEX")
PC_BASELINE = 0.7


@dataclass(frozen=True)
class FlowRow:
    """One CSV row."""

    date: dt.date
    symbol: str
    call_volume: float
    put_volume: float
    call_oi: float
    put_oi: float

    def sentiment(self, baseline: float = PC_BASELINE) -> float | None:
        """Score in [-1, 1]; None when neither volume nor open interest gives a ratio."""
        calls, puts = self.call_volume, self.put_volume
        if calls + puts <= 0:
            calls, puts = self.call_oi, self.put_oi
        if calls <= 0 or puts <= 0:
            if calls > 0:
                return 1.0
            if puts > 0:
                return -1.0
            return None
        return max(-1.0, min(1.0, math.log(baseline / (puts / calls)) / math.log(2.0)))


def _num(text: str | None) -> float:
    if text is None or not text.strip():
        return 0.0
    value = float(text.replace(",", ""))
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"bad count {text!r}")
    return value


def parse_csv(text: str) -> tuple[list[FlowRow], int]:
    """(rows, dropped) of an options-flow CSV; malformed rows are counted and dropped."""
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    reader = csv.DictReader(io.StringIO(body))
    missing = [c for c in COLUMNS[:4] if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"options CSV lacks columns {missing}")
    rows: list[FlowRow] = []
    dropped = 0
    for rec in reader:
        try:
            rows.append(
                FlowRow(
                    date=dt.date.fromisoformat((rec["date"] or "").strip()),
                    symbol=(rec["symbol"] or "").strip().upper(),
                    call_volume=_num(rec["call_volume"]),
                    put_volume=_num(rec["put_volume"]),
                    call_oi=_num(rec.get("call_open_interest")),
                    put_oi=_num(rec.get("put_open_interest")),
                )
            )
        except (ValueError, TypeError, AttributeError):
            dropped += 1
    return rows, dropped


@dataclass(frozen=True)
class FlowSummary:
    """The context's options fields."""

    day: dt.date | None
    market: float
    by_symbol: dict[str, float]
    dropped: int


def summarise(rows: list[FlowRow], as_of: dt.date, dropped: int = 0) -> FlowSummary:
    """Scores of the latest date before ``as_of``."""
    days = sorted({r.date for r in rows if r.date < as_of})
    if not days:
        return FlowSummary(None, 0.0, {}, dropped)
    day = days[-1]
    scores: dict[str, float] = {}
    for r in rows:
        if r.date == day:
            s = r.sentiment()
            if s is not None:
                scores[r.symbol] = s
    market = next((scores[m] for m in MARKET_ROWS if m in scores), None)
    per_symbol = {k: v for k, v in scores.items() if k not in MARKET_ROWS}
    if market is None:
        market = sum(per_symbol.values()) / len(per_symbol) if per_symbol else 0.0
    return FlowSummary(day, market, per_symbol, dropped)


async def read_source(location: str, http: SourceHttp | None) -> str:
    """The CSV text from an ``http(s)://`` URL (through ``http``) or a local path."""
    if location.startswith(("http://", "https://")):
        if http is None:
            raise SourceError("options", "an HTTP options source needs a client")
        resp = await http.get(location)
        return resp.text
    try:
        return Path(location).read_text(encoding="utf-8")
    except OSError as exc:
        raise SourceError("options", f"{location}: {exc}") from exc
