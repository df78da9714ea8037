"""A synthetic world of the daily APIs, in their documented shapes, for full loads.

Installs FRED, Congress.gov, EDGAR, an RSS feed and an options CSV on a :class:`ReplayServer`,
with the checks the real services make (FRED / Congress keys, EDGAR User-Agent) and their error
bodies. Values are generated, deterministic, and chosen so the built context can be asserted.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

from relentless_fast.context import sessions
from relentless_fast.context.config import ContextConfig
from tests.context.replay import ReplayServer, Reply, Request, json_reply

FRED_KEY = "abcdefghijklmnopqrstuvwxyz012345"
CONGRESS_KEY = "congress-test-key-0123456789"
USER_AGENT = "relentless-fast-tests tests@example.com"

# series -> (level, daily slope) for generated daily observations
SERIES_LEVELS: dict[str, tuple[float, float]] = {
    "DFF": (4.33, 0.0),
    "DGS1": (4.20, 0.0),
    "DGS2": (4.30, 0.0),
    "DGS10": (4.60, 0.001),
    "DGS30": (4.80, 0.0),
    "DFEDTARU": (4.50, 0.0),
    "DFEDTARL": (4.25, 0.0),
    "T10Y2Y": (0.30, 0.0),
    "T10Y3M": (0.25, 0.0),
    "BAMLH0A0HYM2": (2.90, 0.0),
    "BAMLC0A0CM": (0.80, 0.0),
    "T5YIE": (2.40, 0.0),
    "T10YIE": (2.35, 0.0),
    "DTWEXBGS": (129.0, 0.0),
    "VIXCLS": (16.0, 0.0),
}
MONTHLY = {"UNRATE": (4.0, 0.05), "CPIAUCSL": (310.0, 0.5), "CPILFESL": (315.0, 0.4)}
RELEASES = {10: "Consumer Price Index", 50: "Employment Situation", 101: "FOMC Press Release",
            53: "Gross Domestic Product", 9: "Advance Monthly Sales for Retail and Food Services",
            18: "H.15 Selected Interest Rates"}  # fmt: skip

FORM4 = """<?xml version="1.0"?>
<ownershipDocument>
  <schemaVersion>X0508</schemaVersion>
  <documentType>4</documentType>
  <periodOfReport>{day}</periodOfReport>
  <issuer><issuerCik>{cik:010d}</issuerCik><issuerName>{name}</issuerName>
    <issuerTradingSymbol>{ticker}</issuerTradingSymbol></issuer>
  <reportingOwner>
    <reportingOwnerId><rptOwnerCik>0009999999</rptOwnerCik><rptOwnerName>Test Owner</rptOwnerName>
    </reportingOwnerId>
    <reportingOwnerRelationship><isDirector>0</isDirector><isOfficer>1</isOfficer>
      <officerTitle>Chief Executive Officer</officerTitle></reportingOwnerRelationship>
  </reportingOwner>
  <aff10b5One>0</aff10b5One>
  <nonDerivativeTable>
    <nonDerivativeTransaction>
      <securityTitle><value>Common Stock</value></securityTitle>
      <transactionDate><value>{day}</value></transactionDate>
      <transactionCoding><transactionFormType>4</transactionFormType>
        <transactionCode>{code}</transactionCode><equitySwapInvolved>0</equitySwapInvolved>
      </transactionCoding>
      <transactionAmounts>
        <transactionShares><value>1000</value></transactionShares>
        <transactionPricePerShare><value>50.25</value></transactionPricePerShare>
        <transactionAcquiredDisposedCode><value>{ad}</value></transactionAcquiredDisposedCode>
      </transactionAmounts>
    </nonDerivativeTransaction>
    <nonDerivativeTransaction>
      <securityTitle><value>Common Stock</value></securityTitle>
      <transactionDate><value>{day}</value></transactionDate>
      <transactionCoding><transactionFormType>4</transactionFormType>
        <transactionCode>M</transactionCode></transactionCoding>
      <transactionAmounts><transactionShares><value>500</value></transactionShares>
        <transactionAcquiredDisposedCode><value>A</value></transactionAcquiredDisposedCode>
      </transactionAmounts>
    </nonDerivativeTransaction>
  </nonDerivativeTable>
</ownershipDocument>
"""

BILLS = [
    ("Tax Relief for Working Families Act", "Passed House by recorded vote."),
    ("National Defense Authorization Act for Fiscal Year 2026", "Presented to President."),
    ("Clean Energy Investment Act", "Referred to the Committee on Energy and Commerce."),
    ("Tariff Enforcement and Import Restrictions Act", "Ordered to be Reported."),
    ("Medicare Drug Price Penalty Act", "Referred to the Committee on Finance."),
    ("A resolution honoring local libraries", "Submitted in the Senate."),
    ("Banking Regulation Modernization Act", "Became Public Law No: 119-12."),
    ("Highway and Bridge Funding Act", "Placed on the Union Calendar."),
]


@dataclass
class World:
    """The synthetic APIs for one as-of date and universe."""

    as_of: dt.date
    tickers: list[tuple[str, int, int, str]]  # ticker, cik, sic, name
    server: ReplayServer
    bills_per_topic_page: int = 3
    form4_per_company: int = 1
    fail: set[str] = field(default_factory=set)  # sources answering 503
    form4_every: int = 1  # every n-th member has a Form 4 on the day before the as-of
    index_status: int = 200  # the daily indexes' status (403 = EDGAR's "no such index")

    @property
    def prev_session(self) -> dt.date:
        """The session before the as-of date (filings are dated on it)."""
        return sessions.previous_session(self.as_of)

    def install(self) -> None:
        s = self.server
        s.route("/fred/series/observations", self._fred_obs)
        s.route("/fred/releases/dates", self._fred_releases)
        s.route("/v3/bill", self._bill_list)
        s.route("/v3/bill/", self._bill_detail)
        s.route("/submissions/", self._submissions)
        s.route("/Archives/edgar/data/", self._form4)
        s.route("/Archives/edgar/daily-index/", self._daily_index)
        s.route("/feeds/markets.xml", self._rss)
        s.route("/options/flow.csv", self._options)

    def config(self, tmp: Path, **overrides: object) -> ContextConfig:
        """A config pointing every source at the server."""
        universe = tmp / "universe.csv"
        lines = ["ticker,cik,sic,name"] + [f"{t},{c},{s},{n}" for t, c, s, n in self.tickers]
        universe.write_text("\n".join(lines) + "\n")
        base = self.server.url
        values: dict[str, object] = {
            "db_path": str(tmp / "ctx.duckdb"),
            "snapshot_path": str(tmp / "snap" / "context.pb"),
            "universe_path": str(universe),
            "fred_base_url": f"{base}/fred",
            "congress_base_url": f"{base}/v3",
            "sec_data_base_url": base,
            "sec_archive_base_url": base,
            "sec_user_agent": USER_AGENT,
            "news_feeds": (f"{base}/feeds/markets.xml",),
            "options_csv": f"{base}/options/flow.csv",
            "fred_max_rps": 200.0,
            "congress_max_rps": 200.0,
            "sec_max_rps": 10.0,
            "news_max_rps": 50.0,
            "http_timeout_s": 5.0,
            "backoff_base_s": 0.01,
            "backoff_max_s": 0.05,
            "max_attempts": 2,
        }
        values.update(overrides)
        return ContextConfig.from_mapping(values)

    # -- FRED ----------------------------------------------------------------------------
    def _fred_error(self, message: str, status: int = 400) -> Reply:
        return json_reply(json.dumps({"error_code": status, "error_message": message}), status)

    def _fred_obs(self, req: Request) -> Reply:
        if "fred" in self.fail:
            return Reply(503, "Service Unavailable")
        q = req.query
        if q.get("api_key") != FRED_KEY:
            return self._fred_error(
                "Bad Request.  The value for variable api_key is not registered."
            )
        sid = q.get("series_id", "")
        if sid not in SERIES_LEVELS and sid not in MONTHLY:
            return self._fred_error("Bad Request.  The series does not exist.")
        start = dt.date.fromisoformat(q["observation_start"])
        end = dt.date.fromisoformat(q["observation_end"])
        realtime = q["realtime_start"]
        rows = []
        day = start
        while day <= end:
            if sid in MONTHLY:
                if day.day == 1:
                    level, slope = MONTHLY[sid]
                    months = (day.year - 2020) * 12 + day.month
                    rows.append((day, f"{level + slope * months:.2f}"))
            elif day.weekday() < 5:
                level, slope = SERIES_LEVELS[sid]
                n = (day - dt.date(2020, 1, 1)).days
                value = "." if (day.month, day.day) == (1, 1) else f"{level + slope * (n % 50):.2f}"
                rows.append((day, value))
            day += dt.timedelta(days=1)
        obs = [
            {
                "realtime_start": realtime,
                "realtime_end": realtime,
                "date": d.isoformat(),
                "value": v,
            }
            for d, v in rows
        ]
        body = {
            "realtime_start": realtime, "realtime_end": realtime,
            "observation_start": start.isoformat(), "observation_end": end.isoformat(),
            "units": "lin", "output_type": 1, "file_type": "json", "order_by": "observation_date",
            "sort_order": "asc", "count": len(obs), "offset": 0, "limit": 100000,
            "observations": obs,
        }  # fmt: skip
        return json_reply(json.dumps(body))

    def _fred_releases(self, req: Request) -> Reply:
        if req.query.get("api_key") != FRED_KEY:
            return self._fred_error(
                "Bad Request.  The value for variable api_key is not registered."
            )
        start = dt.date.fromisoformat(req.query["realtime_start"])
        rows = []
        for rid, name in RELEASES.items():
            for k in range(3):
                day = start + dt.timedelta(days=(rid * 7 + k * 30) % 40)
                rows.append({"release_id": rid, "release_name": name, "date": day.isoformat()})
        rows.append({"release_id": 10, "release_name": RELEASES[10], "date": start.isoformat()})
        rows.sort(key=lambda r: (r["date"], r["release_id"]))
        limit = int(req.query.get("limit", 1000))
        offset = int(req.query.get("offset", 0))
        body = {
            "realtime_start": start.isoformat(), "realtime_end": req.query["realtime_end"],
            "order_by": "release_date", "sort_order": "asc", "count": len(rows),
            "offset": offset, "limit": limit, "release_dates": rows[offset : offset + limit],
        }  # fmt: skip
        return json_reply(json.dumps(body))

    # -- Congress.gov --------------------------------------------------------------------
    def _congress_key_error(self, req: Request) -> Reply | None:
        key = req.headers.get("x-api-key") or req.query.get("api_key")
        if not key:
            err = {"code": "API_KEY_MISSING", "message": "No api_key was supplied."}
            return json_reply(json.dumps({"error": err}), 403)
        if key != CONGRESS_KEY:
            err = {"code": "API_KEY_INVALID", "message": "An invalid api_key was supplied."}
            return json_reply(json.dumps({"error": err}), 403)
        return None

    def _bill_list(self, req: Request) -> Reply:
        if "congress" in self.fail:
            return Reply(503, "Service Unavailable")
        err = self._congress_key_error(req)
        if err:
            return err
        limit = min(250, int(req.query.get("limit", 20)))
        offset = int(req.query.get("offset", 0))
        bills = []
        for i, (title, action) in enumerate(BILLS):
            bills.append(
                {
                    "congress": 119,
                    "latestAction": {"actionDate": self.as_of.isoformat(), "text": action},
                    "number": str(1000 + i),
                    "originChamber": "House",
                    "originChamberCode": "H",
                    "title": title,
                    "type": "HR",
                    "updateDate": (self.as_of - dt.timedelta(days=1)).isoformat(),
                    "url": f"https://api.congress.gov/v3/bill/119/hr/{1000 + i}?format=json",
                }
            )
        page = bills[offset : offset + limit]
        pagination: dict[str, object] = {"count": len(bills)}
        if offset + limit < len(bills):
            pagination["next"] = (
                f"https://api.congress.gov/v3/bill?offset={offset + limit}&limit={limit}"
                "&format=json"
            )
        body = {"bills": page, "pagination": pagination, "request": {"format": "json"}}
        return json_reply(json.dumps(body, indent=4))

    def _bill_detail(self, req: Request) -> Reply:
        err = self._congress_key_error(req)
        if err:
            return err
        parts = req.path.split("/")  # /v3/bill/119/hr/1003[/actions]
        number = int(parts[5])
        title, action = BILLS[number - 1000]
        if len(parts) > 6 and parts[6] == "subjects":
            area = {"name": "Taxation" if "Tax" in title else "Commerce"}
            subj = {"legislativeSubjects": [{"name": "Federal appropriations"}], "policyArea": area}
            return json_reply(json.dumps({"subjects": subj, "pagination": {"count": 1}}))
        if len(parts) > 6 and parts[6] == "actions":
            acts = [{"actionDate": self.as_of.isoformat(), "text": action, "type": "Floor"},
                    {"actionDate": "2025-01-03", "text": "Introduced in House", "type": "IntroReferral"}]  # fmt: skip  # noqa: E501
            return json_reply(json.dumps({"actions": acts, "pagination": {"count": 2}}))
        bill = {
            "congress": 119, "number": str(number), "type": "HR", "title": title,
            "latestAction": {"actionDate": self.as_of.isoformat(), "text": action},
            "policyArea": {"name": "Taxation" if "Tax" in title else "Commerce"},
            "cosponsors": {"count": 12}, "committeeReports": [],
            "laws": [{"number": "119-12", "type": "Public Law"}] if "Public Law" in action else [],
            "updateDate": "2025-01-20T10:00:00Z",
        }  # fmt: skip
        return json_reply(json.dumps({"bill": bill, "request": {"format": "json"}}))

    # -- EDGAR ---------------------------------------------------------------------------
    def _ua_check(self, req: Request) -> Reply | None:
        if "@" not in req.headers.get("user-agent", ""):
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
                "<Message>Access Denied</Message></Error>"
            )
            return Reply(403, body, {"Content-Type": "application/xml"})
        return None

    def _submissions(self, req: Request) -> Reply:
        if "sec" in self.fail:
            return Reply(503, "Service Unavailable")
        err = self._ua_check(req)
        if err:
            return err
        cik = int(req.path.rsplit("CIK", 1)[1].split(".")[0])
        member = next((m for m in self.tickers if m[1] == cik), None)
        if member is None:
            missing = (
                '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code></Error>'
            )
            return Reply(404, missing, {"Content-Type": "application/xml"})
        ticker, _cik, sic, name = member
        prev = self.prev_session.isoformat()
        rows: list[tuple[str, str, str, str]] = [  # form, date, items, doc
            ("4", prev, "", f"xslF345X05/f4_{k}.xml") for k in range(self.form4_per_company)
        ]
        rows.append(("8-K", prev, "5.02,9.01", "a.htm"))
        for q in range(8):  # quarterly earnings 8-Ks, the last one 50 days ago
            day = self.as_of - dt.timedelta(days=50 + 91 * q)
            rows.append(("8-K", day.isoformat(), "2.02,9.01", "e.htm"))
            rows.append(("10-Q", (day + dt.timedelta(days=1)).isoformat(), "", "q.htm"))
        rows.append(("4", self.as_of.isoformat(), "", "xslF345X05/future.xml"))  # filed on as-of
        cols: dict[str, list[object]] = {
            k: []
            for k in ("accessionNumber", "filingDate", "reportDate", "acceptanceDateTime", "form",
                      "items", "primaryDocument", "isXBRL")
        }  # fmt: skip
        for i, (form, filed, items, doc) in enumerate(rows):
            cols["accessionNumber"].append(f"0000{cik:06d}-25-{i:06d}")
            cols["filingDate"].append(filed)
            cols["reportDate"].append(filed)
            cols["acceptanceDateTime"].append(f"{filed}T18:00:00.000Z")
            cols["form"].append(form)
            cols["items"].append(items)
            cols["primaryDocument"].append(doc)
            cols["isXBRL"].append(0)
        body: dict[str, object] = {
            "cik": f"{cik:010d}", "entityType": "operating", "sic": str(sic),
            "sicDescription": "", "name": name, "tickers": [ticker], "exchanges": ["Nasdaq"],
            "filings": {"recent": cols, "files": []},
        }  # fmt: skip
        return json_reply(json.dumps(body, separators=(",", ":")))

    def _daily_index(self, req: Request) -> Reply:
        err = self._ua_check(req)
        if err:
            return err
        if "sec" in self.fail:
            return Reply(503, "Service Unavailable")
        day = dt.datetime.strptime(req.path.rsplit(".", 2)[1], "%Y%m%d").date()
        if self.index_status != 200 or day >= self.as_of:
            denied = (
                '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code></Error>'
            )
            return Reply(403, denied, {"Content-Type": "application/xml"})
        head = (
            "Description:           Daily Index of EDGAR Dissemination Feed by Form Type\n"
            f"Last Data Received:    {day:%b %d, %Y}\n\n"
            f"{'Form Type':<12}{'Company Name':<62}{'CIK':<12}{'Date Filed':<12}File Name\n"
            + "-" * 141
            + "\n"
        )
        rows: list[tuple[str, str, int, dt.date, str]] = []
        for i, (_t, cik, _s, name) in enumerate(self.tickers):
            if day == self.prev_session and i % self.form4_every == 0:
                acc = f"0000{cik:06d}-25-9{i:05d}"
                rows.extend(  # the issuer's and the reporting owner's rows
                    ("4", name, filer, day, f"edgar/data/{filer}/{acc}.txt")
                    for filer in (cik, 9999999)
                )
            if day == self.prev_session and i == 0:
                rows.append(
                    ("8-K", name, cik, day, f"edgar/data/{cik}/0000{cik:06d}-25-800000.txt")
                )
        rows.append(("10-K", "Someone Else Inc", 123, day, "edgar/data/123/0000000123-25-1.txt"))
        rows.sort(key=lambda r: r[0])
        lines = [
            f"{form:<12}{name[:60]:<62}{cik:<12}{d:%Y%m%d}    {fn}"
            for form, name, cik, d, fn in rows
        ]
        return Reply(200, head + "\n".join(lines) + "\n", {"Content-Type": "text/plain"})

    def _form4(self, req: Request) -> Reply:
        err = self._ua_check(req)
        if err:
            return err
        cik = int(req.path.split("/")[4])
        if req.path.endswith(".txt"):
            if cik == 9999999:  # the owner's copy of the same filing is never asked for
                return Reply(404, "owner copy requested")
            member = next(m for m in self.tickers if m[1] == cik)
            xml = self._form4_xml(member)
            body = (
                "<SEC-DOCUMENT>0000.txt : 20250120\n<SEC-HEADER>...</SEC-HEADER>\n<DOCUMENT>\n"
                f"<TYPE>4\n<SEQUENCE>1\n<TEXT>\n<XML>\n{xml}</XML>\n</TEXT>\n</DOCUMENT>\n"
                "</SEC-DOCUMENT>\n"
            )
            return Reply(200, body, {"Content-Type": "text/plain"})
        member = next(m for m in self.tickers if m[1] == cik)
        return Reply(200, self._form4_xml(member), {"Content-Type": "text/xml"})

    def _form4_xml(self, member: tuple[str, int, int, str]) -> str:
        ticker, cik, _s, name = member
        buy = sum(map(ord, ticker)) % 2 == 0 if ticker not in ("AAA", "BBB") else ticker == "AAA"
        return FORM4.format(
            day=self.prev_session.isoformat(), cik=cik, name=name,
            ticker=ticker, code="P" if buy else "S", ad="A" if buy else "D",
        )  # fmt: skip

    # -- news and options ----------------------------------------------------------------
    def _rss(self, req: Request) -> Reply:
        pub = dt.datetime.combine(self.as_of - dt.timedelta(days=1), dt.time(20, 0))
        stamp = pub.strftime("%a, %d %b %Y %H:%M:%S GMT")
        items = [
            ("AAA beats estimates, shares surge", "g1"),
            ("BBB cuts guidance as demand weakens", "g2"),
            ("Banks rally on upbeat outlook", "g3"),
            ("Oil prices plunge on supply fears", "g4"),
            ("AAA beats estimates, shares surge", "g1"),  # duplicate guid
        ]
        body = ['<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>'
                "<link>http://x</link><description>d</description>"]  # fmt: skip
        for title, guid in items:
            body.append(
                f"<item><title>{title}</title><guid>{guid}</guid><pubDate>{stamp}</pubDate>"
                "<description>&lt;p&gt;Markets&lt;/p&gt;</description></item>"
            )
        old = "Mon, 01 Jan 2001 00:00:00 GMT"
        body.append(
            f"<item><title>AAA plunges</title><guid>old</guid><pubDate>{old}</pubDate></item>"
        )
        body.append("</channel></rss>")
        return Reply(200, "".join(body), {"Content-Type": "application/rss+xml"})

    def _options(self, req: Request) -> Reply:
        prev = (self.as_of - dt.timedelta(days=1)).isoformat()
        lines = ["date,symbol,call_volume,put_volume,call_open_interest,put_open_interest",
                 f"{prev},EQUITY,1000,700,,", f"{prev},AAA,2000,700,10,10",
                 f"{prev},BBB,100,400,,", f"{prev},CCC,notanumber,5,,",
                 f"{self.as_of.isoformat()},AAA,1,1000,,"]  # fmt: skip
        return Reply(200, "\n".join(lines) + "\n", {"Content-Type": "text/csv"})


def make_tickers(n: int) -> list[tuple[str, int, int, str]]:
    """``n`` members: AAA (tech, buyer), BBB (bank, seller), then generated ones."""
    base = [("AAA", 1000001, 3674, "Alpha Devices"), ("BBB", 1000002, 6021, "Beta Bancorp")]
    sics = (3571, 2834, 6021, 2911, 4911, 5331, 7372, 3721, 6798, 4813, 1311)
    base.extend(
        (f"S{i:04d}", 2000000 + i, sics[i % len(sics)], f"Company {i}")
        for i in range(max(0, n - 2))
    )
    return base[:n]


def env_keys(monkeypatch: object) -> None:
    """Put the test keys in the environment (pytest ``monkeypatch``)."""
    monkeypatch.setenv("FRED_API_KEY", FRED_KEY)  # type: ignore[attr-defined]
    monkeypatch.setenv("CONGRESS_API_KEY", CONGRESS_KEY)  # type: ignore[attr-defined]
