"""FRED client against recorded responses and documented error shapes; series statistics."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import httpx
import pytest

from relentless_fast.context.sources import fred
from relentless_fast.context.sources.http import RetryPolicy, SourceError, SourceHttp
from tests.context.replay import ReplayServer, Reply, Request, json_reply

KEY = "k" * 32


def _client(http_client: httpx.AsyncClient, server: ReplayServer) -> fred.FredClient:
    retry = RetryPolicy(max_attempts=2, backoff_base_s=0.01, backoff_max_s=0.01)
    http = SourceHttp("fred", http_client, max_rps=500, retry=retry)
    return fred.FredClient(http, server.url + "/fred", KEY)


async def test_recorded_t10y3m_parses_with_missing_values(
    server: ReplayServer, shared_fixtures: Path
) -> None:
    body = (shared_fixtures / "fred" / "observations_T10Y3M_2023-01-01_2023-06-06.json").read_text()
    server.route("/fred/series/observations", json_reply(body))
    async with httpx.AsyncClient() as hc:
        obs = await _client(hc, server).observations(
            "T10Y3M", dt.date(2023, 1, 1), dt.date(2023, 6, 6), dt.date(2024, 6, 27)
        )
    assert len(obs) == 112
    assert sum(math.isnan(o.value) for o in obs) == 4
    assert obs[0].date == dt.date(2023, 1, 2) and math.isnan(obs[0].value)
    assert obs[1].value == pytest.approx(-0.74)
    (req,) = server.hits("/fred/series/observations")
    q = req.query
    assert q["series_id"] == "T10Y3M" and q["api_key"] == KEY and q["file_type"] == "json"
    assert q["observation_start"] == "2023-01-01" and q["observation_end"] == "2023-06-06"
    # point in time: the real-time period is pinned to one day
    assert q["realtime_start"] == q["realtime_end"] == "2024-06-27"


@pytest.mark.parametrize(
    ("name", "count", "nan"),
    [
        ("observations_GDP_all.json", 315, 4),
        ("observations_GDP_output_type4_initial_release.json", 132, 0),
        ("observations_GNPCA_start2050_empty_httptest_pretty.json", 0, 0),
    ],
)
async def test_recorded_bodies_parse(
    server: ReplayServer, shared_fixtures: Path, name: str, count: int, nan: int
) -> None:
    server.route(
        "/fred/series/observations", json_reply((shared_fixtures / "fred" / name).read_text())
    )
    async with httpx.AsyncClient() as hc:
        obs = await _client(hc, server).observations(
            "GDP", dt.date(1600, 1, 1), dt.date(2100, 1, 1), dt.date(2024, 11, 3)
        )
    assert len(obs) == count
    assert sum(math.isnan(o.value) for o in obs) == nan


async def test_partial_page_is_followed_by_offset(
    server: ReplayServer, shared_fixtures: Path
) -> None:
    """The GNPCA recording is page 1 (20 of 91): the client asks for the rest by offset."""
    page1 = (
        shared_fixtures / "fred" / "observations_GNPCA_limit20_httptest_pretty.json"
    ).read_text()

    def handler(req: Request) -> Reply:
        if req.query.get("offset") == "0":
            return json_reply(page1)
        return json_reply('{"count": 91, "offset": 20, "observations": []}')

    server.route("/fred/series/observations", handler)
    async with httpx.AsyncClient() as hc:
        obs = await _client(hc, server).observations(
            "GNPCA", dt.date(1900, 1, 1), dt.date(2030, 1, 1), dt.date(2020, 5, 19)
        )
    assert len(obs) == 20
    assert [r.query["offset"] for r in server.hits("/fred/")] == ["0", "20"]


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("error_400_observations_bad_series_id.json", "Invalid value for variable series_id"),
        ("error_400_series_missing_series_id.json", "series_id has not been set"),
    ],
)
async def test_recorded_errors(
    server: ReplayServer, shared_fixtures: Path, name: str, needle: str
) -> None:
    # FRED's doc shows text/xml even for JSON errors: the client must not branch on content type
    body = (shared_fixtures / "fred" / name).read_text()
    server.route("/fred/series/observations", Reply(400, body, {"Content-Type": "text/xml"}))
    async with httpx.AsyncClient() as hc:
        with pytest.raises(SourceError, match=needle):
            await _client(hc, server).observations(
                "bad_series_id", dt.date(2020, 1, 1), dt.date(2020, 2, 1), dt.date(2020, 5, 20)
            )
    assert len(server.hits("/fred/")) == 1  # a 400 is not retried


async def test_error_body_with_status_200_is_an_error(server: ReplayServer) -> None:
    server.route(
        "/fred/series/observations",
        json_reply('{"error_code":423,"error_message":"Locked."}'),
    )
    async with httpx.AsyncClient() as hc:
        with pytest.raises(SourceError, match="423: Locked"):
            await _client(hc, server).observations(
                "DFF", dt.date(2020, 1, 1), dt.date(2020, 2, 1), dt.date(2020, 2, 2)
            )


async def test_recorded_release_dates_page_and_pagination(
    server: ReplayServer, shared_fixtures: Path
) -> None:
    page1 = (shared_fixtures / "fred" / "releases_dates_2024-11-03_page1_of_7370.json").read_text()

    def handler(req: Request) -> Reply:
        if req.query["offset"] == "0":
            return json_reply(page1)
        return json_reply('{"count": 7370, "release_dates": []}')

    server.route("/fred/releases/dates", handler)
    async with httpx.AsyncClient() as hc:
        rows = await _client(hc, server).release_dates(dt.date(2024, 11, 1), dt.date(2024, 12, 31))
    assert len(rows) == 1000
    hits = server.hits("/fred/releases/dates")
    assert [h.query["offset"] for h in hits] == ["0", "1000"]
    assert hits[0].query["include_release_dates_with_no_data"] == "true"
    assert hits[0].query["realtime_start"] == "2024-11-01"


async def test_recorded_release_dates_complete(server: ReplayServer, shared_fixtures: Path) -> None:
    body = (shared_fixtures / "fred" / "releases_dates_2025-01-20_count422.json").read_text()
    server.route("/fred/releases/dates", json_reply(body))
    async with httpx.AsyncClient() as hc:
        rows = await _client(hc, server).release_dates(dt.date(2025, 1, 1), dt.date(2025, 1, 20))
    assert len(rows) == 422 and len(server.hits("/fred/")) == 1
    names = {rid: name for rid, name, _d in rows}
    assert names[10] == "Consumer Price Index" and names[101] == "FOMC Press Release"


def test_release_id_10_is_cpi(shared_fixtures: Path) -> None:
    import json

    body = json.loads((shared_fixtures / "fred" / "release_dates_release_id_10.json").read_text())
    rows = [
        (int(r["release_id"]), "", dt.date.fromisoformat(r["date"])) for r in body["release_dates"]
    ]
    nxt = fred.next_events(rows, dt.date(2024, 12, 1))
    assert set(nxt) == {"cpi"}
    day, days = nxt["cpi"]
    assert day >= dt.date(2024, 12, 1) and days == (day - dt.date(2024, 12, 1)).days


def test_next_events_today_and_order() -> None:
    d = dt.date
    rows = [(10, "", d(2025, 1, 15)), (10, "", d(2025, 2, 12)), (50, "", d(2025, 2, 7)),
            (999, "", d(2025, 1, 15)), (101, "", d(2025, 1, 10))]  # fmt: skip
    nxt = fred.next_events(rows, dt.date(2025, 1, 15))
    assert nxt == {"cpi": (dt.date(2025, 1, 15), 0), "jobs": (dt.date(2025, 2, 7), 23)}


def test_parse_value() -> None:
    assert fred.parse_value("1.25") == 1.25
    assert math.isnan(fred.parse_value("."))
    assert math.isnan(fred.parse_value(""))
    assert math.isnan(fred.parse_value(None))
    assert math.isnan(fred.parse_value("nan"))


def test_parse_observations_rejects_other_bodies() -> None:
    with pytest.raises(ValueError):
        fred.parse_observations({"error_code": 400})
    body = {
        "observations": [{"date": "bad", "value": "1"}, "x", {"date": "2020-01-01", "value": "2"}]
    }
    rows = fred.parse_observations(body)
    assert rows == [fred.Observation(dt.date(2020, 1, 1), 2.0)]


def test_series_stats_daily_and_monthly() -> None:
    daily = [
        fred.Observation(dt.date(2024, 1, 1) + dt.timedelta(days=i), float(i)) for i in range(100)
    ]
    daily.append(fred.Observation(dt.date(2024, 4, 10), math.nan))
    as_of = dt.date(2024, 4, 10)  # the last non-missing value is 2024-04-09 = 99
    st = fred.series_stats("X", daily, as_of, lookback_days=365, change_window_days=5)
    assert st is not None
    assert st.value == 99.0 and st.last_date == dt.date(2024, 4, 9)
    assert st.change == 5.0
    assert st.percentile == 1.0 and st.zscore > 1.5 and st.n == 100
    monthly = [fred.Observation(dt.date(2024, m, 1), 3.0 + 0.1 * m) for m in range(1, 7)]
    st_m = fred.series_stats("UNRATE", monthly, dt.date(2024, 6, 20), 365, 5)
    assert st_m is not None and st_m.change == pytest.approx(0.1)
    # a value dated on the as-of day is not known yet
    assert fred.series_stats("X", [fred.Observation(as_of, 1.0)], as_of, 365, 5) is None


def test_flat_series_has_zero_zscore() -> None:
    obs = [fred.Observation(dt.date(2024, 1, 1) + dt.timedelta(days=i), 4.33) for i in range(300)]
    st = fred.series_stats("DFF", obs, dt.date(2025, 1, 1), 365, 5)
    assert st is not None and st.zscore == 0.0 and st.change == 0.0
