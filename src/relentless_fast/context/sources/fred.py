"""FRED: series observations as known on a date (ALFRED real-time periods) and release dates.

Every history request pins ``realtime_start = realtime_end = as_of - 1 day``: a context built (or
rebuilt) for trading day D sees only the values FRED had published by the day before, never later
revisions. ``"."`` values (holidays, not yet published) parse to NaN and are skipped by the
statistics. Errors come back as ``{"error_code": ..., "error_message": ...}`` JSON whatever the
content type; the message is kept in the raised :class:`SourceError`.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from relentless_fast.context.sources.http import SourceError, SourceHttp

PAGE_LIMIT = 100_000
RELEASES_PAGE_LIMIT = 1000

CALENDAR_RELEASES: dict[int, str] = {
    10: "cpi",  # Consumer Price Index
    50: "jobs",  # Employment Situation
    101: "fomc",  # FOMC Press Release
    53: "gdp",  # Gross Domestic Product
    9: "retail_sales",  # Advance Monthly Sales for Retail and Food Services
}
"""FRED release id -> calendar kind of the context."""


@dataclass(frozen=True)
class Observation:
    """One observation: its date and value (NaN when FRED sent ".")."""

    date: dt.date
    value: float


@dataclass(frozen=True)
class SeriesStats:
    """Latest value of a series and where it stands over the lookback."""

    series_id: str
    last_date: dt.date
    value: float
    change: float  # value minus the latest value at least change_window_days older
    zscore: float  # (value - mean) / std over the lookback; 0 when std is 0
    percentile: float  # share of lookback values <= value, 0..1
    n: int  # non-missing observations in the lookback


def parse_value(text: Any) -> float:
    """FRED's string value as a float; ``"."``, empty or garbage -> NaN."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return math.nan
    return value if math.isfinite(value) else math.nan


def parse_observations(body: Any) -> list[Observation]:
    """Observations of a ``series/observations`` JSON body (malformed rows skipped)."""
    if not isinstance(body, dict) or not isinstance(body.get("observations"), list):
        raise ValueError("not a FRED observations body")
    out: list[Observation] = []
    for row in body["observations"]:
        if not isinstance(row, dict):
            continue
        try:
            day = dt.date.fromisoformat(str(row.get("date")))
        except ValueError:
            continue
        out.append(Observation(day, parse_value(row.get("value"))))
    return out


def error_message(body: Any) -> str:
    """The ``error_message`` of a FRED error body, or ``""``."""
    if isinstance(body, dict) and "error_message" in body:
        return f"{body.get('error_code', '?')}: {body['error_message']}"
    return ""


def series_stats(
    series_id: str,
    observations: Sequence[Observation],
    as_of: dt.date,
    lookback_days: int,
    change_window_days: int,
) -> SeriesStats | None:
    """Statistics of the latest non-missing value before ``as_of``; None when there is none.

    Monthly series work the same way: the change compares with the latest value at least
    ``change_window_days`` older, which for a monthly series is the previous month.
    """
    valid = [o for o in observations if o.date < as_of and not math.isnan(o.value)]
    if not valid:
        return None
    valid.sort(key=lambda o: o.date)
    last = valid[-1]
    ref_cut = last.date - dt.timedelta(days=change_window_days)
    ref = next((o for o in reversed(valid) if o.date <= ref_cut), None)
    change = last.value - ref.value if ref is not None else 0.0
    start = as_of - dt.timedelta(days=lookback_days)
    window = [o.value for o in valid if o.date >= start] or [last.value]
    mean = sum(window) / len(window)
    var = sum((v - mean) ** 2 for v in window) / len(window)
    std = math.sqrt(var)
    # a flat window gives a rounding-noise std: treat it as zero
    z = (last.value - mean) / std if std > 1e-9 * max(1.0, abs(mean)) else 0.0
    pct = sum(1 for v in window if v <= last.value) / len(window)
    return SeriesStats(series_id, last.date, last.value, change, z, pct, len(window))


class FredClient:
    """Async FRED client (``fred/series/observations``, ``fred/releases/dates``)."""

    def __init__(self, http: SourceHttp, base_url: str, api_key: str) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self._key = api_key

    async def _get(self, path: str, params: dict[str, Any]) -> Any:
        full = {**params, "api_key": self._key, "file_type": "json"}
        resp = await self.http.get(f"{self.base_url}/{path}", full)
        try:
            return resp.json()
        except ValueError as exc:
            raise SourceError("fred", f"malformed JSON from {path}: {exc}") from exc

    async def observations(
        self, series_id: str, start: dt.date, end: dt.date, realtime: dt.date
    ) -> list[Observation]:
        """Observations of ``series_id`` in [start, end] as FRED knew them on ``realtime``."""
        out: list[Observation] = []
        offset = 0
        while True:
            body = await self._get(
                "series/observations",
                {
                    "series_id": series_id,
                    "observation_start": start.isoformat(),
                    "observation_end": end.isoformat(),
                    "realtime_start": realtime.isoformat(),
                    "realtime_end": realtime.isoformat(),
                    "sort_order": "asc",
                    "limit": PAGE_LIMIT,
                    "offset": offset,
                },
            )
            msg = error_message(body)
            if msg:
                raise SourceError("fred", f"{series_id}: {msg}")
            try:
                page = parse_observations(body)
            except ValueError as exc:
                raise SourceError("fred", f"{series_id}: {exc}") from exc
            out.extend(page)
            count = int(body.get("count", len(out)) or 0)
            offset += len(page)
            if not page or offset >= count:
                return out

    async def release_dates(self, start: dt.date, end: dt.date) -> list[tuple[int, str, dt.date]]:
        """Scheduled release dates in [start, end] (``include_release_dates_with_no_data``)."""
        out: list[tuple[int, str, dt.date]] = []
        offset = 0
        while True:
            body = await self._get(
                "releases/dates",
                {
                    "realtime_start": start.isoformat(),
                    "realtime_end": end.isoformat(),
                    "include_release_dates_with_no_data": "true",
                    "order_by": "release_date",
                    "sort_order": "asc",
                    "limit": RELEASES_PAGE_LIMIT,
                    "offset": offset,
                },
            )
            msg = error_message(body)
            if msg:
                raise SourceError("fred", f"releases/dates: {msg}")
            rows = body.get("release_dates") if isinstance(body, dict) else None
            if not isinstance(rows, list):
                raise SourceError("fred", "releases/dates: no release_dates list")
            for row in rows:
                try:
                    day = dt.date.fromisoformat(str(row["date"]))
                    out.append((int(row["release_id"]), str(row.get("release_name", "")), day))
                except (KeyError, TypeError, ValueError):
                    continue
            offset += len(rows)
            if not rows or offset >= int(body.get("count", 0) or 0):
                return out


def next_events(
    releases: Sequence[tuple[int, str, dt.date]], as_of: dt.date
) -> dict[str, tuple[dt.date, int]]:
    """For each calendar kind, its first release on or after ``as_of``: (date, days until)."""
    out: dict[str, tuple[dt.date, int]] = {}
    for release_id, _name, day in sorted(releases, key=lambda r: r[2]):
        kind = CALENDAR_RELEASES.get(release_id)
        if kind is None or day < as_of or kind in out:
            continue
        out[kind] = (day, (day - as_of).days)
    return out
