"""SEC EDGAR: recent filings of the universe, Form 4 insider trades, earnings cadence.

Every request carries the configured ``User-Agent`` ("<app> <contact email>"; EDGAR answers 403
without one) and ``Accept-Encoding: gzip, deflate``; the source's rate limiter keeps to at most 10
requests per second. Per company one ``data.sec.gov/submissions/CIK##########.json`` gives its SIC
code and its recent filings (columnar arrays, newest first); each Form 4 filed in the lookback
window is fetched as raw XML from the Archives and parsed with defusedxml.

Point in time: only filings with ``filingDate < as_of`` count, so a backfilled day never sees a
later filing.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET

from relentless_fast.context.sources.http import SourceError, SourceHttp

TRACKED_FORMS = ("8-K", "10-Q", "10-K", "DEF 14A", "4")
EARNINGS_ITEM = "2.02"
RECENT_REPORT_DAYS = 10  # within this many days after a report, days_to_earnings counts back


@dataclass(frozen=True)
class Filing:
    """One row of ``filings.recent``."""

    accession: str
    form: str
    filing_date: dt.date
    report_date: str
    items: tuple[str, ...]
    primary_document: str


@dataclass
class Company:
    """A company's submissions JSON, as much as the context needs."""

    cik: int
    name: str
    sic: int
    tickers: tuple[str, ...]
    filings: list[Filing] = field(default_factory=list)


@dataclass(frozen=True)
class InsiderTrade:
    """One open-market (P) or sale (S) non-derivative transaction of a Form 4."""

    code: str  # "P" or "S"
    shares: float
    price: float  # NaN when the form gives none
    acquired: bool  # A (True) or D (False)
    owner: str
    is_director: bool
    is_officer: bool
    is_ten_percent: bool
    officer_title: str
    plan_10b5_1: bool
    issuer_cik: int = 0


def cik10(cik: int) -> str:
    """CIK zero-padded to 10 digits, as data.sec.gov paths want it."""
    return f"{int(cik):010d}"


def parse_submissions(body: Any) -> Company:
    """A ``submissions/CIK##########.json`` body (``filings.recent`` zipped by index)."""
    if not isinstance(body, dict) or "cik" not in body:
        raise ValueError("not an EDGAR submissions body")
    recent = (body.get("filings") or {}).get("recent") or {}
    company = Company(
        cik=int(body["cik"]),
        name=str(body.get("name") or ""),
        sic=_int(body.get("sic")),
        tickers=tuple(str(t) for t in body.get("tickers") or ()),
    )
    company.filings = parse_filing_columns(recent)
    return company


def parse_filing_columns(cols: Any) -> list[Filing]:
    """Zip EDGAR's columnar filing arrays (``recent`` or an overflow page) into rows."""
    if not isinstance(cols, dict):
        return []
    forms = cols.get("form") or []
    out: list[Filing] = []
    for i, form in enumerate(forms):
        try:
            day = dt.date.fromisoformat(str(cols["filingDate"][i]))
            accession = str(cols["accessionNumber"][i])
        except (KeyError, IndexError, ValueError):
            continue
        items_raw = _at(cols, "items", i)
        out.append(
            Filing(
                accession=accession,
                form=str(form),
                filing_date=day,
                report_date=_at(cols, "reportDate", i),
                items=tuple(x.strip() for x in items_raw.split(",") if x.strip()),
                primary_document=_at(cols, "primaryDocument", i),
            )
        )
    return out


def _at(cols: dict[str, Any], key: str, i: int) -> str:
    seq = cols.get(key)
    if isinstance(seq, list) and i < len(seq) and seq[i] is not None:
        return str(seq[i])
    return ""


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def form4_xml_path(cik: int, filing: Filing) -> str:
    """Archive path of a Form 4's raw XML (the ``xslF345X..`` prefix is the rendered view)."""
    doc = filing.primary_document.rsplit("/", 1)[-1]
    return f"/Archives/edgar/data/{int(cik)}/{filing.accession.replace('-', '')}/{doc}"


def _text(el: Element | None, path: str) -> str:
    if el is None:
        return ""
    found = el.find(path)
    return (found.text or "").strip() if found is not None and found.text else ""


def _flag(text: str) -> bool:
    return text.strip().lower() in ("1", "true")


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def parse_form4(xml: bytes | str) -> list[InsiderTrade]:
    """Open-market buys (P) and sales (S) of a Form 4 ``ownershipDocument``.

    Parsed with defusedxml (entity expansion and external entities refused). Other codes (grants,
    exercises, tax withholding, gifts) are not trading decisions and are skipped.
    """
    root = SafeET.fromstring(xml)
    if root.tag != "ownershipDocument":
        raise ValueError(f"not an ownershipDocument: <{root.tag}>")
    owner = root.find("reportingOwner")
    rel = owner.find("reportingOwnerRelationship") if owner is not None else None
    owner_name = _text(owner, "reportingOwnerId/rptOwnerName")
    plan = _flag(_text(root, "aff10b5One"))
    issuer_cik = _int(_text(root, "issuer/issuerCik"))
    out: list[InsiderTrade] = []
    for tx in root.iterfind("nonDerivativeTable/nonDerivativeTransaction"):
        code = _text(tx, "transactionCoding/transactionCode").upper()
        if code not in ("P", "S"):
            continue
        shares = _float(_text(tx, "transactionAmounts/transactionShares/value"))
        if not math.isfinite(shares) or shares <= 0:
            continue
        out.append(
            InsiderTrade(
                code=code,
                shares=shares,
                price=_float(_text(tx, "transactionAmounts/transactionPricePerShare/value")),
                acquired=_text(tx, "transactionAmounts/transactionAcquiredDisposedCode/value")
                == "A",
                owner=owner_name,
                is_director=_flag(_text(rel, "isDirector")),
                is_officer=_flag(_text(rel, "isOfficer")),
                is_ten_percent=_flag(_text(rel, "isTenPercentOwner")),
                officer_title=_text(rel, "officerTitle"),
                plan_10b5_1=plan,
                issuer_cik=issuer_cik,
            )
        )
    return out


def extract_ownership_xml(text: bytes) -> bytes:
    """The ``ownershipDocument`` of a raw Form 4 XML or of a full submission ``.txt``.

    A full submission wraps each document in ``<DOCUMENT>``/``<XML>`` blocks; the ownership XML is
    cut out from its opening to its closing tag (without any XML declaration, which is optional).
    """
    start = text.find(b"<ownershipDocument")
    end = text.find(b"</ownershipDocument>")
    if start < 0 or end < start:
        raise ValueError("no ownershipDocument in the filing")
    return text[start : end + len(b"</ownershipDocument>")]


@dataclass(frozen=True)
class IndexRow:
    """One row of an EDGAR ``form.YYYYMMDD.idx`` daily index."""

    form: str
    company: str
    cik: int
    date_filed: dt.date
    filename: str  # edgar/data/<cik>/<accession>.txt

    @property
    def accession(self) -> str:
        """Accession number (from the file name)."""
        return self.filename.rsplit("/", 1)[-1].removesuffix(".txt")


_INDEX_COLUMNS = ("Form Type", "Company Name", "CIK", "Date Filed", "File Name")


def parse_form_index(text: str) -> tuple[list[IndexRow], int]:
    """(rows, dropped) of a form-sorted index; column offsets come from its header line."""
    lines = text.splitlines()
    header_at = next((i for i, line in enumerate(lines) if line.startswith("Form Type")), None)
    if header_at is None:
        raise ValueError("no 'Form Type' header line in the index")
    header = lines[header_at]
    try:
        starts = [header.index(name) for name in _INDEX_COLUMNS]
    except ValueError as exc:
        raise ValueError(f"index header lacks a column: {header!r}") from exc
    rows: list[IndexRow] = []
    dropped = 0
    for line in lines[header_at + 1 :]:
        if not line.strip() or set(line.strip()) == {"-"}:
            continue
        cut = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        try:
            day = (
                dt.datetime.strptime(cut[3], "%Y%m%d").date()
                if "-" not in cut[3]
                else (dt.date.fromisoformat(cut[3]))
            )
            rows.append(IndexRow(cut[0], cut[1], int(cut[2]), day, cut[4]))
        except ValueError:
            dropped += 1
    return rows, dropped


def daily_index_path(day: dt.date) -> str:
    """Archive path of the form-sorted daily index of ``day`` (business days only)."""
    quarter = (day.month - 1) // 3 + 1
    return f"/Archives/edgar/daily-index/{day.year}/QTR{quarter}/form.{day:%Y%m%d}.idx"


def parse_company_tickers(body: Any) -> dict[str, int]:
    """Ticker -> CIK of EDGAR's ``company_tickers.json`` (``{"0": {cik_str, ticker, title}}``)."""
    if not isinstance(body, dict):
        raise ValueError("not a company_tickers body")
    out: dict[str, int] = {}
    for entry in body.values():
        if isinstance(entry, dict) and entry.get("ticker") and entry.get("cik_str") is not None:
            out.setdefault(str(entry["ticker"]).upper(), int(entry["cik_str"]))
    return out


def insider_signal(trades: Sequence[InsiderTrade]) -> float:
    """Net insider buying in [-1, 1]: (buy value - sell value) / (buy value + sell value).

    Value is shares x price (shares alone when a price is missing). Officers and directors weigh 1,
    ten-percent owners and others 0.5; sales under a 10b5-1 plan weigh half (pre-planned).
    """
    buy = sell = 0.0
    for t in trades:
        value = t.shares * (t.price if math.isfinite(t.price) and t.price > 0 else 1.0)
        weight = 1.0 if (t.is_officer or t.is_director) else 0.5
        if t.code == "P":
            buy += value * weight
        else:
            sell += value * weight * (0.5 if t.plan_10b5_1 else 1.0)
    total = buy + sell
    return (buy - sell) / total if total > 0 else 0.0


@dataclass(frozen=True)
class EarningsEstimate:
    """Days to the next report estimated from the filing cadence (always an estimate)."""

    has_date: bool
    days_to_earnings: float
    reported_recently: bool


def earnings_estimate(
    filings: Sequence[Filing], as_of: dt.date, lookback_days: int
) -> EarningsEstimate:
    """Estimate from 8-K item 2.02 filings (or 10-Q/10-K when a company files no 2.02).

    The next report is the last one plus the median gap between past reports. Within
    ``RECENT_REPORT_DAYS`` after a report, ``days_to_earnings`` is minus the days since it.
    """
    past = [f for f in filings if f.filing_date < as_of]
    events = sorted({f.filing_date for f in past if f.form == "8-K" and EARNINGS_ITEM in f.items})
    if len(events) < 2:
        events = sorted({f.filing_date for f in past if f.form in ("10-Q", "10-K")})
    window_start = as_of - dt.timedelta(days=lookback_days)
    recent = any(
        f.filing_date >= window_start
        and (f.form in ("10-Q", "10-K") or (f.form == "8-K" and EARNINGS_ITEM in f.items))
        for f in past
    )
    if len(events) < 2:
        return EarningsEstimate(False, 0.0, recent)
    gaps = [
        (b - a).days for a, b in zip(events[-9:], events[-8:], strict=False) if (b - a).days > 20
    ]
    gap = statistics.median(gaps) if gaps else 91.0
    last = events[-1]
    since = (as_of - last).days
    if since <= RECENT_REPORT_DAYS:
        return EarningsEstimate(True, -float(since), recent)
    nxt = last + dt.timedelta(days=gap)
    while nxt < as_of:  # missed reports: roll forward by the cadence
        nxt += dt.timedelta(days=gap)
    return EarningsEstimate(True, float((nxt - as_of).days), recent)


class SecClient:
    """Async EDGAR client (submissions JSON, Archives documents)."""

    def __init__(self, http: SourceHttp, data_base_url: str, archive_base_url: str) -> None:
        if not http.headers.get("User-Agent"):
            raise SourceError("sec", "EDGAR needs a User-Agent '<app> <contact email>'")
        self.http = http
        self.data_base_url = data_base_url.rstrip("/")
        self.archive_base_url = archive_base_url.rstrip("/")

    async def submissions(self, cik: int) -> Company:
        """The company's submissions JSON."""
        body = await self.http.get_json(f"{self.data_base_url}/submissions/CIK{cik10(cik)}.json")
        try:
            return parse_submissions(body)
        except (ValueError, TypeError) as exc:
            raise SourceError("sec", f"CIK {cik}: {exc}") from exc

    async def daily_index(self, day: dt.date) -> list[IndexRow]:
        """The form-sorted daily index of ``day`` (EDGAR answers 403 for a missing one)."""
        resp = await self.http.get(self.archive_base_url + daily_index_path(day))
        try:
            rows, _dropped = parse_form_index(resp.content.decode("latin-1"))
        except ValueError as exc:
            raise SourceError("sec", f"daily index {day}: {exc}") from exc
        return rows

    async def form4_from_index(self, row: IndexRow) -> list[InsiderTrade]:
        """Insider trades of a Form 4 named by a daily-index row (its full submission text)."""
        resp = await self.http.get(f"{self.archive_base_url}/Archives/{row.filename}")
        try:
            return parse_form4(extract_ownership_xml(resp.content))
        except Exception as exc:  # defusedxml raises several types; all mean a bad document
            raise SourceError(
                "sec", f"Form 4 {row.accession}: {type(exc).__name__}: {exc}"
            ) from exc

    async def company_tickers(self) -> dict[str, int]:
        """Ticker -> CIK from ``/files/company_tickers.json`` (to write a universe file)."""
        body = await self.http.get_json(f"{self.archive_base_url}/files/company_tickers.json")
        try:
            return parse_company_tickers(body)
        except (ValueError, TypeError) as exc:
            raise SourceError("sec", f"company_tickers: {exc}") from exc

    async def form4(self, cik: int, filing: Filing) -> list[InsiderTrade]:
        """Insider trades of one Form 4 filing."""
        resp = await self.http.get(self.archive_base_url + form4_xml_path(cik, filing))
        try:
            return parse_form4(resp.content)
        except Exception as exc:  # defusedxml raises several types; all mean a bad document
            raise SourceError(
                "sec", f"Form 4 {filing.accession}: {type(exc).__name__}: {exc}"
            ) from exc
