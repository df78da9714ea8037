"""The SEC part of a load: daily indexes first, submissions only where needed.

Normal path ("daily-index" mode):

1. the form-sorted daily index of every session in the window (``sec_lookback_days`` back, at
   least to the previous session; one request per day) lists the window's filings of every
   filer; rows of universe CIKs are kept;
2. a member's ``submissions`` JSON (SIC code, 8-K items, report history for the cadence) is
   fetched when it filed an 8-K, 10-Q or 10-K in the window, or when the copy carried from the
   previous stored payload is older than ``sec_refresh_days`` (or missing); other members carry
   their previous entry forward, with the window's index rows added;
3. each Form 4 row of a member is fetched as its full submission ``.txt`` and its
   ``ownershipDocument`` parsed; trades are kept only when the member is the issuer.

When no daily index can be read (a weekend-only window, an EDGAR outage, a 403 for every day),
the loader falls back to "submissions" mode: every member's submissions JSON and the Form 4 XML
named in it. Either way the payload holds everything the builder uses, so a rebuild is exact.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from typing import Any

from relentless_fast.context import sessions
from relentless_fast.context.sources import sec
from relentless_fast.context.sources.http import SourceError, SourceHttp
from relentless_fast.context.universe import Member

Payload = dict[str, Any]
REPORT_FORMS = ("8-K", "10-Q", "10-K")
HISTORY_DAYS = 3 * 366


def _filing_json(f: sec.Filing) -> dict[str, Any]:
    return {
        "accession": f.accession,
        "form": f.form,
        "filing_date": f.filing_date.isoformat(),
        "items": list(f.items),
    }


def _base_form(form: str) -> str:
    return form.split("/", 1)[0].strip()


class SecFetch:
    """One load's SEC fetch (state shared by the two modes)."""

    def __init__(
        self,
        client: sec.SecClient,
        members: list[Member],
        as_of: dt.date,
        *,
        lookback_days: int,
        refresh_days: int,
        form4_max: int,
        concurrency: int,
        previous: Payload | None,
    ) -> None:
        self.client = client
        self.members = members
        self.as_of = as_of
        self.window_start = sessions.lookback_start(as_of, lookback_days)
        self.history_start = as_of - dt.timedelta(days=HISTORY_DAYS)
        self.refresh_cut = as_of - dt.timedelta(days=refresh_days)
        self.form4_max = form4_max
        self.sem = asyncio.Semaphore(concurrency)
        self.previous = (previous or {}).get("companies", {})
        self.companies: dict[str, Any] = {}
        self.trades: dict[str, list[dict[str, Any]]] = {}
        self.errors: dict[str, str] = {}

    async def run(self) -> Payload:
        """Fetch; raises :class:`SourceError` when no company could be had at all."""
        rows, days, missing = await self._indexes()
        if rows is None:
            await asyncio.gather(*(self._submissions_mode(m) for m in self.members))
            mode = "submissions"
        else:
            await self._index_mode(rows)
            mode = "daily-index"
        if not self.companies:
            raise SourceError("sec", f"no company fetched: {next(iter(self.errors.values()), '')}")
        return {
            "mode": mode,
            "index_days": days,
            "index_missing": missing,
            "companies": self.companies,
            "trades": self.trades,
            "errors": dict(list(self.errors.items())[:50]),
        }

    async def _indexes(self) -> tuple[list[sec.IndexRow] | None, list[str], dict[str, str]]:
        try:
            days = sessions.sessions_in(self.window_start, self.as_of - dt.timedelta(days=1))
        except ValueError:
            days = []
        rows: list[sec.IndexRow] = []
        got: list[str] = []
        missing: dict[str, str] = {}
        for day in days:
            try:
                rows.extend(await self.client.daily_index(day))
                got.append(day.isoformat())
            except SourceError as exc:
                missing[day.isoformat()] = str(exc)
        return (rows if got else None), got, missing

    def _entry(self, company: sec.Company, m: Member) -> dict[str, Any]:
        keep = [
            f
            for f in company.filings
            if f.filing_date < self.as_of
            and (
                f.filing_date >= self.window_start
                or (
                    f.filing_date >= self.history_start
                    and (f.form in ("10-Q", "10-K") or sec.EARNINGS_ITEM in f.items)
                )
            )
        ]
        return {
            "cik": company.cik,
            "sic": company.sic or m.sic,
            "fetched": self.as_of.isoformat(),
            "filings": [_filing_json(f) for f in keep],
        }

    async def _fetch_company(self, m: Member) -> sec.Company | None:
        try:
            async with self.sem:
                return await self.client.submissions(m.cik)
        except SourceError as exc:
            self.errors[m.ticker] = str(exc)
            return None

    async def _submissions_mode(self, m: Member) -> None:
        company = await self._fetch_company(m)
        if company is None:
            return
        self.companies[m.ticker] = self._entry(company, m)
        form4s = [
            f
            for f in company.filings
            if f.form == "4" and self.window_start <= f.filing_date < self.as_of
        ]
        got: list[dict[str, Any]] = []
        for f in form4s[: self.form4_max]:
            try:
                async with self.sem:
                    got.extend(
                        dataclasses.asdict(t) for t in await self.client.form4(company.cik, f)
                    )
            except SourceError as exc:
                self.errors[f"{m.ticker}:{f.accession}"] = str(exc)
        self.trades[m.ticker] = got

    def _needs_refresh(self, m: Member, reported: bool) -> bool:
        prev = self.previous.get(m.ticker)
        if reported or not isinstance(prev, dict) or prev.get("cik") != m.cik:
            return True
        try:
            fetched = dt.date.fromisoformat(str(prev.get("fetched")))
        except ValueError:
            return True
        return fetched < self.refresh_cut

    async def _index_mode(self, rows: list[sec.IndexRow]) -> None:
        by_cik = {m.cik: m for m in self.members}
        mine: dict[str, list[sec.IndexRow]] = {}
        for r in rows:
            m = by_cik.get(r.cik)
            if m is not None and self.window_start <= r.date_filed < self.as_of:
                mine.setdefault(m.ticker, []).append(r)

        async def one(m: Member) -> None:
            own = mine.get(m.ticker, [])
            reported = any(_base_form(r.form) in REPORT_FORMS for r in own)
            entry: dict[str, Any] | None = None
            if self._needs_refresh(m, reported):
                company = await self._fetch_company(m)
                if company is not None:
                    entry = self._entry(company, m)
            if entry is None and isinstance(self.previous.get(m.ticker), dict):
                entry = self._carry(self.previous[m.ticker], own)
            if entry is not None:
                self.companies[m.ticker] = entry
            self.trades[m.ticker] = await self._form4s(m, own)

        await asyncio.gather(*(one(m) for m in self.members))

    def _carry(self, prev: dict[str, Any], own: list[sec.IndexRow]) -> dict[str, Any]:
        filings = [
            f
            for f in prev.get("filings", [])
            if f.get("filing_date", "") >= self.history_start.isoformat()
        ]
        seen = {f.get("accession") for f in filings}
        for r in own:
            if r.accession not in seen:
                seen.add(r.accession)
                filings.append(
                    {
                        "accession": r.accession,
                        "form": r.form,
                        "filing_date": r.date_filed.isoformat(),
                        "items": [],
                    }
                )
        return {**prev, "filings": filings}

    async def _form4s(self, m: Member, own: list[sec.IndexRow]) -> list[dict[str, Any]]:
        seen: set[str] = set()
        picked: list[sec.IndexRow] = []
        for r in own:
            if _base_form(r.form) == "4" and r.accession not in seen:
                seen.add(r.accession)
                picked.append(r)
        got: list[dict[str, Any]] = []
        for r in picked[: self.form4_max]:
            try:
                async with self.sem:
                    trades = await self.client.form4_from_index(r)
            except SourceError as exc:
                self.errors[f"{m.ticker}:{r.accession}"] = str(exc)
                continue
            got.extend(dataclasses.asdict(t) for t in trades if t.issuer_cik in (0, m.cik))
        return got


async def fetch_sec_payload(
    client: sec.SecClient,
    members: list[Member],
    as_of: dt.date,
    *,
    lookback_days: int,
    refresh_days: int,
    form4_max: int,
    concurrency: int,
    previous: Payload | None,
) -> Payload:
    """The SEC payload of one load (see the module docstring)."""
    job = SecFetch(
        client,
        members,
        as_of,
        lookback_days=lookback_days,
        refresh_days=refresh_days,
        form4_max=form4_max,
        concurrency=concurrency,
        previous=previous,
    )
    return await job.run()


def client_for(http: SourceHttp, data_base_url: str, archive_base_url: str) -> sec.SecClient:
    """An EDGAR client (raises :class:`SourceError` without a User-Agent)."""
    return sec.SecClient(http, data_base_url, archive_base_url)
