"""Congress.gov client against recorded responses, its error shapes, and the bill model."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import httpx
import pytest

from relentless_fast.context import embedding, legislation
from relentless_fast.context.sources import congress
from relentless_fast.context.sources.congress import Bill
from relentless_fast.context.sources.http import RetryPolicy, SourceError, SourceHttp
from tests.context.replay import ReplayServer, Reply, Request, json_reply

KEY = "test-congress-key"
START = dt.datetime(2022, 4, 2, tzinfo=dt.UTC)
END = dt.datetime(2022, 4, 3, tzinfo=dt.UTC)


def _client(hc: httpx.AsyncClient, server: ReplayServer) -> congress.CongressClient:
    retry = RetryPolicy(max_attempts=3, backoff_base_s=0.01, backoff_max_s=0.01)
    return congress.CongressClient(
        SourceHttp("congress", hc, max_rps=500, retry=retry), server.url + "/v3", KEY
    )


async def test_recorded_list_pages_follow_next(server: ReplayServer, shared_fixtures: Path) -> None:
    page1 = (shared_fixtures / "congress" / "bill_list_2022-04-03_limit20.json").read_text()
    last = (shared_fixtures / "congress" / "bill_list_sort_updateDate_limit1.json").read_text()

    def handler(req: Request) -> Reply:
        return json_reply(
            page1 if req.query.get("offset") == "0" else last.replace('"next"', '"nx"')
        )

    server.route("/v3/bill", handler)
    async with httpx.AsyncClient() as hc:
        bills = await _client(hc, server).bills_updated(START, END, max_bills=100)
    assert len(bills) == 21
    first = bills[0]
    assert (first.congress, first.bill_type, first.number, first.title) == (
        117,
        "hr",
        "3617",
        "MORE Act",
    )
    assert first.latest_action_text.startswith("Motion to reconsider")
    hits = server.hits("/v3/bill")
    assert len(hits) == 2
    q0, q1 = hits[0].query, hits[1].query
    assert hits[0].headers["x-api-key"] == KEY and q0["format"] == "json"
    assert "api_key" not in q0  # the key never travels in a URL
    assert (
        q0["fromDateTime"] == "2022-04-02T00:00:00Z" and q0["toDateTime"] == "2022-04-03T00:00:00Z"
    )
    assert q0["sort"] == "updateDate desc"
    # next's offset/limit are used, the key (which next omits) is added back, filters kept
    assert q1["offset"] == "20" and q1["limit"] == "20" and hits[1].headers["x-api-key"] == KEY
    assert q1["fromDateTime"] == q0["fromDateTime"]


async def test_max_bills_stops_paging(server: ReplayServer, shared_fixtures: Path) -> None:
    page1 = (shared_fixtures / "congress" / "bill_list_2022-04-03_limit20.json").read_text()
    server.route("/v3/bill", json_reply(page1))
    async with httpx.AsyncClient() as hc:
        bills = await _client(hc, server).bills_updated(START, END, max_bills=20)
    assert len(bills) == 20 and len(server.hits("/v3/bill")) == 1
    assert server.hits("/v3/bill")[0].query["limit"] == "20"


@pytest.mark.parametrize(
    ("detail", "actions", "area", "cosponsors", "n_actions"),
    [
        (
            "bill_119_s_1947.json",
            "bill_119_s_1947_actions.json",
            "Public Lands and Natural Resources",
            2,
            2,
        ),
        (
            "bill_117_hr_21.json",
            "bill_117_hr_21_actions.json",
            "Government Operations and Politics",
            2,
            None,
        ),
    ],
)
async def test_recorded_detail_and_actions(
    server: ReplayServer,
    shared_fixtures: Path,
    detail: str,
    actions: str,
    area: str,
    cosponsors: int,
    n_actions: int | None,
) -> None:
    d = json.loads((shared_fixtures / "congress" / detail).read_text())["bill"]
    path = f"/v3/bill/{d['congress']}/{d['type'].lower()}/{d['number']}"
    server.route(path, json_reply((shared_fixtures / "congress" / detail).read_text()))
    server.route(
        path + "/actions", json_reply((shared_fixtures / "congress" / actions).read_text())
    )
    subjects = {"subjects": {"legislativeSubjects": [{"name": "Marine pollution"}],
                             "policyArea": {"name": area}}}  # fmt: skip
    server.route(path + "/subjects", json_reply(json.dumps(subjects)))
    bill = Bill(d["congress"], d["type"].lower(), d["number"], "", "", "", "")
    async with httpx.AsyncClient() as hc:
        await _client(hc, server).detail(bill)
    assert bill.policy_area == area and bill.cosponsors == cosponsors
    assert bill.title == d["title"] and not bill.became_law
    assert bill.action_texts and all(isinstance(t, str) for t in bill.action_texts)
    if n_actions is not None:
        assert len(bill.action_texts) == n_actions
    assert bill.subjects == ["Marine pollution", area]
    assert [h.path for h in server.hits("/v3/")] == [path, path + "/actions", path + "/subjects"]
    assert all(h.headers["x-api-key"] == KEY for h in server.hits("/v3/"))


@pytest.mark.parametrize(
    ("status", "body", "needle"),
    [
        (
            403,
            {"error": {"code": "API_KEY_MISSING", "message": "No api_key was supplied."}},
            "API_KEY_MISSING",
        ),
        (403, {"error": {"code": "API_KEY_INVALID", "message": "bad key"}}, "API_KEY_INVALID"),
        (404, {"error": "Unknown resource: bill/119/xx"}, "Unknown resource"),
        (200, {"error": "Something went wrong", "request": {"format": "json"}}, "went wrong"),
    ],
)
async def test_error_shapes(server: ReplayServer, status: int, body: object, needle: str) -> None:
    server.route("/v3/bill", json_reply(json.dumps(body), status))
    async with httpx.AsyncClient() as hc:
        with pytest.raises(SourceError, match=needle):
            await _client(hc, server).bills_updated(START, END, 10)
    assert len(server.hits("/v3/bill")) == 1


async def test_over_rate_limit_is_retried(server: ReplayServer) -> None:
    over = {"error": {"code": "OVER_RATE_LIMIT", "message": "You have exceeded your rate limit."}}
    ok = {"bills": [], "pagination": {"count": 0}}
    server.sequence(
        "/v3/bill",
        [json_reply(json.dumps(over), 429, **{"Retry-After": "0"}), json_reply(json.dumps(ok))],
    )
    async with httpx.AsyncClient() as hc:
        assert await _client(hc, server).bills_updated(START, END, 10) == []
    assert len(server.hits("/v3/bill")) == 2


async def test_malformed_list(server: ReplayServer) -> None:
    server.route("/v3/bill", json_reply('{"bills": "nope"}'))
    async with httpx.AsyncClient() as hc:
        with pytest.raises(SourceError, match="not a bill list"):
            await _client(hc, server).bills_updated(START, END, 10)


def _bill(title: str, action: str = "Referred to committee.", **kw: object) -> Bill:
    return Bill(119, "hr", "1", title, "2025-01-01", action, "2025-01-02", **kw)  # type: ignore[arg-type]


def test_topics() -> None:
    assert legislation.topics_of(_bill("A bill", subjects=["Tariffs", "Customs"])) == (
        "trade_tariffs",
    )
    assert legislation.topics_of(_bill("Tax Relief for Families Act")) == ("tax",)
    assert "defense" in legislation.topics_of(_bill("National Defense Authorization Act"))
    assert legislation.topics_of(_bill("Honoring libraries")) == ()
    assert legislation.topics_of(_bill("A bill", policy_area="Health")) == ("healthcare",)
    # whole words only: "taxi" is not "tax"
    assert legislation.topics_of(_bill("Taxi Medallion Act")) == ()


def test_stages() -> None:
    assert legislation.stage_likelihood(_bill("x", "Became Public Law No: 119-1.")) == (1.0, True)
    assert legislation.stage_likelihood(_bill("x", "Presented to President."))[0] == pytest.approx(
        0.85
    )
    assert legislation.stage_likelihood(_bill("x", "Passed House by voice vote."))[
        0
    ] == pytest.approx(0.35)
    both = _bill("x", "Passed Senate.", action_texts=["Passed House.", "Introduced"])
    assert legislation.stage_likelihood(both)[0] == pytest.approx(0.85)
    assert legislation.stage_likelihood(_bill("x", "Placed on the Union Calendar."))[
        0
    ] == pytest.approx(0.15)
    assert legislation.stage_likelihood(_bill("x", committee_reports=1))[0] == pytest.approx(0.15)
    assert legislation.stage_likelihood(_bill("x"))[0] == pytest.approx(0.03)
    assert legislation.stage_likelihood(_bill("x", cosponsors=100))[0] == pytest.approx(0.08)
    assert legislation.stage_likelihood(_bill("x", became_law=True))[1]


def test_recorded_bill_stage(shared_fixtures: Path) -> None:
    d = json.loads((shared_fixtures / "congress" / "bill_117_hr_21.json").read_text())
    bill = congress.parse_bill_detail(d)
    # "Received in the Senate and Read twice and referred ..." = passed the House
    assert legislation.stage_likelihood(bill)[0] == pytest.approx(0.35 + 0.004)


def test_direction_and_summary() -> None:
    relief = legislation.classify(_bill("Tax Relief Act", "Passed House."))
    ban = legislation.classify(_bill("Crude Oil Export Ban Act", "Passed House."))
    law = legislation.classify(_bill("Banking Modernization Act", "Became Public Law No: 1."))
    assert relief.direction == 1.0 and ban.direction == -1.0
    s = legislation.summarise([relief, ban, law])
    assert s.sector_scores["financials"] > 0  # tax relief, banking law
    assert s.sector_scores["energy"] < 0  # export ban
    assert s.pending_bills[0].startswith("119-hr-1: ")
    assert len(s.pending_bills) == 2  # the law is not pending
    assert 0 < s.legislative_risk_score < 1
    assert s.regulatory_change_probability == 0  # the banking bill is law: no longer pending
    reg = legislation.classify(_bill("Securities Disclosure Act", "Passed House."))
    s2 = legislation.summarise([relief, reg, law])
    assert s2.regulatory_change_probability == pytest.approx(0.35)
    assert set(s.topic_scores) == set(embedding.TOPICS) and s.topic_scores["tax"] > 0
    empty = legislation.summarise([])
    assert empty.legislative_risk_score == 0 and empty.regulatory_change_probability == 0
