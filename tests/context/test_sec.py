"""EDGAR client on recorded responses: submissions, errors, Form 4; insider and cadence models."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import httpx
import pytest

from relentless_fast.context.sources import sec
from relentless_fast.context.sources.http import RetryPolicy, SourceError, SourceHttp
from tests.context.replay import ReplayServer, Reply, Request

UA = "relentless-fast-tests ops@example.com"


def _client(
    hc: httpx.AsyncClient, server: ReplayServer, ua: str = UA, rps: float = 10.0
) -> sec.SecClient:
    retry = RetryPolicy(max_attempts=2, backoff_base_s=0.01, backoff_max_s=0.01)
    http = SourceHttp(
        "sec",
        hc,
        max_rps=rps,
        retry=retry,
        headers={"User-Agent": ua, "Accept-Encoding": "gzip, deflate"},
    )
    return sec.SecClient(http, server.url, server.url)


def _edgar_ua_gate(body: bytes | str, content_type: str) -> object:
    """Answer like EDGAR: 403 AccessDenied XML without a contact User-Agent."""

    def handler(req: Request) -> Reply:
        if "@" not in req.headers.get("user-agent", ""):
            denied = (
                '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code></Error>'
            )
            return Reply(403, denied, {"Content-Type": "application/xml"})
        return Reply(200, body, {"Content-Type": content_type})

    return handler


async def test_recorded_submissions_aapl(server: ReplayServer, shared_fixtures: Path) -> None:
    body = (shared_fixtures / "sec" / "submissions_CIK0000320193_AAPL.json").read_bytes()
    server.route("/submissions/CIK0000320193.json", _edgar_ua_gate(body, "application/json"))  # type: ignore[arg-type]
    async with httpx.AsyncClient() as hc:
        company = await _client(hc, server).submissions(320193)
    assert company.cik == 320193 and company.sic == 3571 and company.tickers == ("AAPL",)
    assert len(company.filings) == 1005
    eight_k = [f for f in company.filings if f.form == "8-K"]
    assert eight_k and all(isinstance(i, str) for f in eight_k for i in f.items)
    assert any("2.02" in f.items for f in eight_k)
    f4 = next(f for f in company.filings if f.form == "4")
    assert f4.primary_document.startswith("xslF345X")
    path = sec.form4_xml_path(company.cik, f4)
    assert path.startswith("/Archives/edgar/data/320193/") and "xslF345" not in path
    (req,) = server.hits("/submissions/")
    assert req.headers["user-agent"] == UA and "gzip" in req.headers["accept-encoding"]


async def test_no_user_agent_gets_403(server: ReplayServer, shared_fixtures: Path) -> None:
    body = (shared_fixtures / "sec" / "submissions_CIK0000320193_AAPL.json").read_bytes()
    server.route("/submissions/CIK0000320193.json", _edgar_ua_gate(body, "application/json"))  # type: ignore[arg-type]
    async with httpx.AsyncClient() as hc:
        with pytest.raises(SourceError, match=r"HTTP 403.*AccessDenied"):
            await _client(hc, server, ua="python-httpx/0.28").submissions(320193)
    with pytest.raises(SourceError, match="User-Agent"):
        async with httpx.AsyncClient() as hc:
            _client(hc, server, ua="")


async def test_recorded_404_nosuchkey(server: ReplayServer, shared_fixtures: Path) -> None:
    body = (shared_fixtures / "sec" / "error_404_submissions_NoSuchKey.xml").read_text()
    server.route("/submissions/", Reply(404, body, {"Content-Type": "application/xml"}))
    async with httpx.AsyncClient() as hc:
        with pytest.raises(SourceError, match="NoSuchKey"):
            await _client(hc, server).submissions(1)
    assert len(server.hits()) == 1


def test_recorded_403_body_is_kept(shared_fixtures: Path) -> None:
    text = (shared_fixtures / "sec" / "error_403_full-index_2099_AccessDenied.xml").read_text()
    assert "AccessDenied" in text  # the shape the replay gate above answers with


def test_recorded_company_without_ticker_and_overflow_page(shared_fixtures: Path) -> None:
    main = json.loads((shared_fixtures / "sec" / "submissions_CIK0001009672.json").read_text())
    company = sec.parse_submissions(main)
    assert company.tickers == () and company.filings
    page = json.loads(
        (
            shared_fixtures / "sec" / "submissions_CIK0001009672-submissions-001_page.json"
        ).read_text()
    )
    rows = sec.parse_filing_columns(page)  # same columns, no "recent" wrapper
    assert len(rows) == 205


async def test_recorded_form4_snowflake(server: ReplayServer, shared_fixtures: Path) -> None:
    xml = (shared_fixtures / "sec" / "form4_Snowflake_SNOW_2022-12-13.xml").read_bytes()
    filing = sec.Filing(
        "0001209191-22-063403", "4", dt.date(2022, 12, 13), "", (), "xslF345X03/doc4.xml"
    )
    server.route(sec.form4_xml_path(1640147, filing), _edgar_ua_gate(xml, "text/xml"))  # type: ignore[arg-type]
    async with httpx.AsyncClient() as hc:
        trades = await _client(hc, server).form4(1640147, filing)
    assert len(trades) == 5  # the 5 S rows; the 2 M (exercise) rows are not trading decisions
    assert all(t.code == "S" and not t.acquired for t in trades)
    assert trades[0].is_officer and trades[0].officer_title == "Chief Financial Officer"
    assert trades[0].price == pytest.approx(150.841)
    assert sec.insider_signal(trades) == -1.0


def test_recorded_form4_grant_only(shared_fixtures: Path) -> None:
    xml = (shared_fixtures / "sec" / "form4_374Water_SCWO_2025-04-30.xml").read_bytes()
    assert sec.parse_form4(xml) == []  # an award (A) is no open-market trade


def test_form4_rejects_entity_expansion_and_other_documents() -> None:
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><ownershipDocument>&b;</ownershipDocument>'
    )
    with pytest.raises(Exception, match=r"(?i)entit"):
        sec.parse_form4(bomb)
    with pytest.raises(ValueError, match="ownershipDocument"):
        sec.parse_form4("<html/>")


async def test_malformed_form4_is_a_source_error(server: ReplayServer) -> None:
    filing = sec.Filing("0000000001-25-000001", "4", dt.date(2025, 1, 2), "", (), "f.xml")
    server.route(sec.form4_xml_path(1, filing), Reply(200, "<ownershipDocument><unclosed>"))
    async with httpx.AsyncClient() as hc:
        with pytest.raises(SourceError, match="Form 4"):
            await _client(hc, server).form4(1, filing)


def _trade(
    code: str, shares: float, price: float = 10.0, officer: bool = True, plan: bool = False
) -> sec.InsiderTrade:
    return sec.InsiderTrade(
        code, shares, price, code == "P", "x", False, officer, not officer, "", plan
    )


def test_insider_signal_weights() -> None:
    assert sec.insider_signal([]) == 0.0
    assert sec.insider_signal([_trade("P", 100), _trade("S", 100)]) == 0.0
    # a ten-percent owner's sale weighs half
    assert sec.insider_signal([_trade("P", 100), _trade("S", 100, officer=False)]) == pytest.approx(
        1 / 3
    )
    # a 10b5-1 plan sale weighs half
    assert sec.insider_signal([_trade("P", 100), _trade("S", 100, plan=True)]) == pytest.approx(
        1 / 3
    )
    # a missing price counts shares
    assert sec.insider_signal([_trade("P", 100, price=math.nan)]) == 1.0


def _f(form: str, day: dt.date, items: tuple[str, ...] = ()) -> sec.Filing:
    return sec.Filing(f"acc-{form}-{day}", form, day, "", items, "")


def test_earnings_estimate_from_cadence() -> None:
    reports = [
        _f("8-K", dt.date(2024, 1, 30) + dt.timedelta(days=91 * q), ("2.02",)) for q in range(4)
    ]
    last = reports[-1].filing_date  # 2024-10-30
    est = sec.earnings_estimate(reports, last + dt.timedelta(days=30), lookback_days=3)
    assert est.has_date and est.days_to_earnings == 61.0 and not est.reported_recently
    just = sec.earnings_estimate(reports, last + dt.timedelta(days=2), lookback_days=3)
    assert just.days_to_earnings == -2.0 and just.reported_recently
    # a report filed on the as-of day itself is not seen yet (point in time)
    # a report filed on the as-of day is not seen yet (point in time): it is expected today
    assert sec.earnings_estimate(reports, last, 3).days_to_earnings == 0.0
    none = sec.earnings_estimate(
        [_f("8-K", dt.date(2024, 1, 1), ("5.02",))], dt.date(2024, 6, 1), 3
    )
    assert not none.has_date
    quarterly = [
        _f("10-Q", dt.date(2024, 5, 1)),
        _f("10-Q", dt.date(2024, 8, 1)),
        _f("10-K", dt.date(2024, 11, 1)),
    ]
    q = sec.earnings_estimate(quarterly, dt.date(2024, 12, 1), 3)
    assert q.has_date and q.days_to_earnings == pytest.approx(61.0, abs=1)


def test_earnings_estimate_rolls_past_missed_reports() -> None:
    reports = [
        _f("8-K", dt.date(2023, 1, 30) + dt.timedelta(days=91 * q), ("2.02",)) for q in range(3)
    ]
    est = sec.earnings_estimate(reports, dt.date(2024, 6, 1), 3)
    assert est.has_date and 0 <= est.days_to_earnings < 91


async def test_rate_limit_at_most_10_per_second(
    server: ReplayServer, shared_fixtures: Path
) -> None:
    body = (shared_fixtures / "sec" / "submissions_CIK0001009672.json").read_bytes()
    server.route("/submissions/", _edgar_ua_gate(body, "application/json"))  # type: ignore[arg-type]
    import asyncio

    async with httpx.AsyncClient() as hc:
        client = _client(hc, server)
        await asyncio.gather(*(client.submissions(1009672) for _ in range(12)))
    assert len(server.hits("/submissions/")) == 12
    times = sorted(client.http.stats.start_times)
    # no 11 requests within one second (lower bound from the limiter's sleeps)
    assert all(times[i + 10] - times[i] >= 1.0 - 0.01 for i in range(len(times) - 10))


async def test_recorded_daily_index_through_client(
    server: ReplayServer, shared_fixtures: Path
) -> None:
    body = (shared_fixtures / "sec" / "daily_index_form.20200318_excerpt.idx").read_bytes()
    day = dt.date(2020, 3, 18)
    assert sec.daily_index_path(day) == "/Archives/edgar/daily-index/2020/QTR1/form.20200318.idx"
    server.route(sec.daily_index_path(day), _edgar_ua_gate(body, "text/plain"))  # type: ignore[arg-type]
    async with httpx.AsyncClient() as hc:
        rows = await _client(hc, server).daily_index(day)
    assert len(rows) == 375  # the excerpt's rows, header and dashes skipped
    assert sum(r.form == "4" for r in rows) + sum(r.form == "4/A" for r in rows) == 300
    first = rows[0]
    assert (first.form, first.cik, first.date_filed) == ("1-A", 1806014, day)
    assert first.company == "DLP Positive Note Fund LLC"
    assert first.accession == "0001140361-20-006155"
    assert all(r.filename.startswith(f"edgar/data/{r.cik}/") for r in rows)


async def test_recorded_403_for_a_missing_index(
    server: ReplayServer, shared_fixtures: Path
) -> None:
    body = (shared_fixtures / "sec" / "error_403_full-index_2099_AccessDenied.xml").read_text()
    server.route(
        "/Archives/edgar/daily-index/", Reply(403, body, {"Content-Type": "application/xml"})
    )
    async with httpx.AsyncClient() as hc:
        with pytest.raises(SourceError, match="AccessDenied") as err:
            await _client(hc, server).daily_index(dt.date(2099, 1, 2))
    assert err.value.status == 403 and len(server.hits()) == 1


def test_form_index_offsets_come_from_the_header() -> None:
    text = (
        "Description: x\n\n"
        "Form Type Company Name CIK Date Filed File Name\n"
        "-----------------------------------------------\n"
        "4         Acme Corp    42  20250120   edgar/data/42/0000000042-25-000001.txt\n"
        "garbage line\n"
    )
    rows, dropped = sec.parse_form_index(text)
    assert [(r.form, r.company, r.cik) for r in rows] == [("4", "Acme Corp", 42)]
    assert dropped == 1
    with pytest.raises(ValueError, match="Form Type"):
        sec.parse_form_index("no header here\n")


async def test_recorded_company_tickers(server: ReplayServer, shared_fixtures: Path) -> None:
    body = (shared_fixtures / "sec" / "company_tickers_first300_excerpt.json").read_bytes()
    server.route("/files/company_tickers.json", _edgar_ua_gate(body, "application/json"))  # type: ignore[arg-type]
    async with httpx.AsyncClient() as hc:
        tickers = await _client(hc, server).company_tickers()
    assert len(tickers) == 300
    assert tickers["AAPL"] == 320193 and tickers["MSFT"] == 789019


async def test_form4_from_full_submission_text(server: ReplayServer, shared_fixtures: Path) -> None:
    xml = (shared_fixtures / "sec" / "form4_Snowflake_SNOW_2022-12-13.xml").read_text()
    txt = (
        "<SEC-DOCUMENT>0001209191-22-063403.txt : 20221215\n<SEC-HEADER>...</SEC-HEADER>\n"
        f'<DOCUMENT>\n<TYPE>4\n<TEXT>\n<XML>\n<?xml version="1.0"?>\n{xml}\n</XML>\n</TEXT>\n'
        "</DOCUMENT>\n</SEC-DOCUMENT>\n"
    )
    row = sec.IndexRow("4", "Snowflake Inc.", 1640147, dt.date(2022, 12, 13),
                       "edgar/data/1640147/0001209191-22-063403.txt")  # fmt: skip
    server.route("/Archives/" + row.filename, _edgar_ua_gate(txt, "text/plain"))  # type: ignore[arg-type]
    async with httpx.AsyncClient() as hc:
        trades = await _client(hc, server).form4_from_index(row)
    assert len(trades) == 5 and all(t.issuer_cik == 1640147 for t in trades)
    with pytest.raises(ValueError, match="no ownershipDocument"):
        sec.extract_ownership_xml(b"<SEC-DOCUMENT>8-K only</SEC-DOCUMENT>")
