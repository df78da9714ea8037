"""The universe file: packaged default, parsing errors, and writing one from EDGAR."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from relentless_fast.context.cli import main as cli_main
from relentless_fast.context.config import ContextConfig
from relentless_fast.context.universe import (
    UniverseError,
    load_universe,
    parse_universe,
    short_name,
)
from tests.context.replay import ReplayServer, Reply, json_reply
from tests.context.test_loader import write_toml


def test_packaged_default_universe() -> None:
    members = load_universe()
    assert len(members) >= 20
    by = {m.ticker: m for m in members}
    assert by["AAPL"].cik == 320193 and by["AAPL"].sector == "technology"
    assert by["JPM"].sector == "financials" and by["XOM"].sector == "energy"
    assert all(m.sector for m in members)


def test_universe_errors() -> None:
    with pytest.raises(UniverseError, match="ticker,cik"):
        parse_universe("symbol,id\nA,1\n")
    with pytest.raises(UniverseError, match="duplicate"):
        parse_universe("ticker,cik\nA,1\nA,2\n")
    with pytest.raises(UniverseError, match="row 2"):
        parse_universe("ticker,cik\nA,notanumber\n")
    with pytest.raises(UniverseError, match="empty"):
        parse_universe("ticker,cik\n")


def test_short_names() -> None:
    assert short_name("Apple Inc.") == "Apple"
    assert short_name("JPMorgan Chase & Co.") == "JPMorgan Chase"
    assert short_name("Berkshire Hathaway Inc /DE/") == "Berkshire Hathaway"
    assert short_name("Inc.") == "Inc."


def test_cli_universe_from_edgar(
    server: ReplayServer,
    shared_fixtures: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tickers = (shared_fixtures / "sec" / "company_tickers_first300_excerpt.json").read_text()
    aapl = (shared_fixtures / "sec" / "submissions_CIK0000320193_AAPL.json").read_text()
    server.route("/files/company_tickers.json", json_reply(tickers))
    server.route("/submissions/CIK0000320193.json", json_reply(aapl))
    missing = '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code></Error>'
    server.route("/submissions/", Reply(404, missing, {"Content-Type": "application/xml"}))
    cfg = ContextConfig(
        sec_data_base_url=server.url,
        sec_archive_base_url=server.url,
        sec_user_agent="tests t@example.com",
        max_attempts=1,
    )
    toml = write_toml(cfg, tmp_path / "r.toml")
    out = tmp_path / "u.csv"
    code = cli_main(
        [
            "context",
            "--config",
            str(toml),
            "universe",
            "--tickers",
            "aapl,MSFT,ZZZZ",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"written": 1, "skipped": 2, "out": str(out)}
    assert "skipped ZZZZ: not in EDGAR" in captured.err and "skipped MSFT" in captured.err
    (m,) = load_universe(out)
    assert (m.ticker, m.cik, m.sic, m.name, m.sector) == (
        "AAPL",
        320193,
        3571,
        "Apple",
        "technology",
    )
    assert all(h.headers["user-agent"] == "tests t@example.com" for h in server.requests)
