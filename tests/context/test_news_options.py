"""News feeds (RSS, Atom, hardened parsing), the lexicon, and the options-flow CSV."""

from __future__ import annotations

import datetime as dt
from importlib import resources

import httpx
import pytest

from relentless_fast.context.sources import news, options
from relentless_fast.context.sources.http import RetryPolicy, SourceError, SourceHttp
from tests.context.replay import ReplayServer, Reply

RSS = """<?xml version="1.0"?>
<rss version="2.0"><channel><title>Markets</title><link>http://x</link><description>d</description>
<item><title>Acme beats estimates, shares surge</title><guid>1</guid>
  <pubDate>Mon, 20 Jan 2025 21:00:00 GMT</pubDate>
  <description>&lt;b&gt;ACME&lt;/b&gt; raised guidance</description></item>
<item><title>Acme beats estimates, shares surge</title><guid>1</guid></item>
<item><title>Oil prices plunge</title><link>http://x/2</link><pubDate>Mon, 20 Jan 2025 22:00:00 +0000</pubDate></item>
<item><description>No title here, only a recall</description></item>
</channel></rss>"""  # noqa: E501

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>F</title><id>urn:f</id><updated>2025-01-20T10:00:00Z</updated>
<entry><title>Banks rally</title><id>urn:1</id><updated>2025-01-20T10:00:00Z</updated>
  <link href="http://x/1"/><summary>Lenders gain</summary></entry>
<entry><title>Chipmaker downgraded</title><id>urn:2</id><updated>2025-01-20T11:00:00Z</updated></entry>
</feed>"""  # noqa: E501


def test_rss_parse_dedupe_and_html() -> None:
    items = news.parse_feed(RSS)
    assert [h.uid for h in items] == ["1", "http://x/2", "No title here, only a recall"]
    first = items[0]
    assert first.summary == "ACME raised guidance"
    assert first.published == dt.datetime(2025, 1, 20, 21, 0, tzinfo=dt.UTC)
    assert items[1].published == dt.datetime(2025, 1, 20, 22, 0, tzinfo=dt.UTC)
    assert items[2].title == "" and items[2].published is None


def test_atom_parse() -> None:
    items = news.parse_feed(ATOM.encode())
    assert [h.title for h in items] == ["Banks rally", "Chipmaker downgraded"]
    assert items[0].uid == "urn:1" and items[0].summary == "Lenders gain"
    assert items[1].published == dt.datetime(2025, 1, 20, 11, 0, tzinfo=dt.UTC)


def test_feed_rejects_entities_and_non_feeds() -> None:
    bomb = '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "x">]><rss><channel>&a;</channel></rss>'
    with pytest.raises(Exception, match=r"(?i)entit"):
        news.parse_feed(bomb)
    with pytest.raises(ValueError, match="not an RSS or Atom"):
        news.parse_feed("<html><body/></html>")


def test_lexicon_phrases_negation_and_file() -> None:
    lex = news.load_lexicon()
    score, hits = lex.score("Acme beats estimates")
    assert hits == 1 and score > 0.9  # the phrase, not "beats" and then nothing
    neg, _ = lex.score("Acme did not beat")
    assert neg < 0
    assert lex.score("The weather is mild") == (0.0, 0)
    text = (
        resources.files("relentless_fast.context").joinpath("data/finance_lexicon.tsv").read_text()
    )
    assert "surge\t" in text
    with pytest.raises(ValueError, match="line 1"):
        news.load_lexicon("bad line without tab")


def test_summarise_symbols_and_sectors() -> None:
    items = news.parse_feed(RSS) + news.parse_feed(ATOM)
    summary = news.summarise(
        items,
        news.load_lexicon(),
        names={"ACME": "Acme", "XOM": "Exxon", "A": ""},
        sectors={"ACME": "technology", "XOM": "energy"},
    )
    assert summary.by_symbol["ACME"] > 0.5
    assert summary.mentions["ACME"] == 1 and "XOM" not in summary.mentions
    assert "A" not in summary.mentions  # one-letter tickers need exact upper-case words
    assert summary.by_sector["energy"] < 0  # "oil ... plunge"
    assert summary.by_sector["financials"] > 0  # "banks rally"
    assert summary.by_sector["technology"] != 0
    assert -1 <= summary.overall <= 1 and summary.headlines == len(items)


def test_in_window() -> None:
    start = dt.datetime(2025, 1, 20, tzinfo=dt.UTC)
    end = start + dt.timedelta(days=1)
    h = news.Headline("u", "t", "", start + dt.timedelta(hours=1))
    assert news.in_window(h, start, end)
    assert not news.in_window(news.Headline("u", "t", "", end), start, end)
    assert news.in_window(news.Headline("u", "t", "", None), start, end)


async def test_news_client_fetch_and_malformed(server: ReplayServer) -> None:
    server.route("/ok.xml", Reply(200, RSS, {"Content-Type": "application/rss+xml"}))
    server.route("/bad.xml", Reply(200, "<rss><channel><item>", {"Content-Type": "text/xml"}))
    retry = RetryPolicy(max_attempts=1)
    async with httpx.AsyncClient() as hc:
        client = news.NewsClient(SourceHttp("news", hc, max_rps=100, retry=retry))
        assert len(await client.fetch(server.url + "/ok.xml")) == 3
        with pytest.raises(SourceError, match=r"bad\.xml"):
            await client.fetch(server.url + "/bad.xml")


CSV = """# comment
date,symbol,call_volume,put_volume,call_open_interest,put_open_interest,extra
2025-01-16,EQUITY,1000,700,,,x
2025-01-17,EQUITY,1000,1400,,,x
2025-01-17,AAA,1000,175,,,x
2025-01-17,BBB,0,0,100,100,x
2025-01-17,CCC,0,0,,,x
2025-01-17,DDD,-5,1,,,x
2025-01-17,EEE,abc,1,,,x
bad-date,FFF,1,1,,,x
2025-01-21,AAA,1,1000,,,x
"""


def test_options_csv_and_scores() -> None:
    rows, dropped = options.parse_csv(CSV)
    assert dropped == 3  # negative count, non-number, bad date
    s = options.summarise(rows, dt.date(2025, 1, 21), dropped)
    assert s.day == dt.date(2025, 1, 17)  # the as-of day's own row is not known pre-market
    assert s.market == pytest.approx(-1.0)  # put/call 1.4 = twice the 0.7 baseline
    assert s.by_symbol["AAA"] == pytest.approx(1.0)  # 0.175 = a quarter of the baseline, clipped
    assert s.by_symbol["BBB"] == pytest.approx(-0.5146, abs=1e-3)  # open interest when no volume
    assert "CCC" not in s.by_symbol  # nothing to score
    assert options.summarise(rows, dt.date(2025, 1, 1)).day is None
    with pytest.raises(ValueError, match="lacks columns"):
        options.parse_csv("date,symbol\n2025-01-01,AAA\n")


def test_packaged_sample_csv_is_labelled_and_parses() -> None:
    text = (
        resources.files("relentless_fast.context")
        .joinpath("data/options_flow_sample.csv")
        .read_text()
    )
    assert text.startswith("# SAMPLE DATA")
    rows, dropped = options.parse_csv(text)
    assert rows and dropped == 0
    s = options.summarise(rows, dt.date(2025, 1, 21))
    assert s.day == dt.date(2025, 1, 17) and "AAPL" in s.by_symbol


async def test_options_source_path_and_url(server: ReplayServer, tmp_path: object) -> None:
    from pathlib import Path

    p = Path(str(tmp_path)) / "flow.csv"
    p.write_text(CSV)
    assert await options.read_source(str(p), None) == CSV
    with pytest.raises(SourceError, match=r"missing\.csv"):
        await options.read_source(str(p.parent / "missing.csv"), None)
    server.route("/flow.csv", Reply(200, CSV, {"Content-Type": "text/csv"}))
    async with httpx.AsyncClient() as hc:
        http = SourceHttp("options", hc, max_rps=100)
        assert await options.read_source(server.url + "/flow.csv", http) == CSV
