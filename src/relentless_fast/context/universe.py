"""The context universe: ticker -> EDGAR CIK, SIC code and short name.

CSV with header ``ticker,cik,sic,name`` (``#`` lines are comments). The packaged default lives in
``data/universe.csv``; a deployment points ``universe_path`` at its own file (for instance one
derived from EDGAR's ``company_tickers.json``, which maps tickers to CIKs).
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from relentless_fast.context.sectors import sector_for_sic
from relentless_fast.context.sources.http import SourceError

if TYPE_CHECKING:
    from relentless_fast.context.sources.sec import SecClient


@dataclass(frozen=True)
class Member:
    """One company of the universe."""

    ticker: str
    cik: int
    sic: int
    name: str

    @property
    def sector(self) -> str:
        """Sector from the SIC code ("" when unknown)."""
        return sector_for_sic(self.sic)


class UniverseError(ValueError):
    """A universe file that cannot be used."""


def parse_universe(text: str) -> list[Member]:
    """Members of a universe CSV, in file order."""
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    reader = csv.DictReader(io.StringIO(body))
    if not reader.fieldnames or not {"ticker", "cik"} <= set(reader.fieldnames):
        raise UniverseError("universe CSV needs at least the columns ticker,cik")
    out: list[Member] = []
    seen: set[str] = set()
    for lineno, row in enumerate(reader, 2):
        ticker = (row.get("ticker") or "").strip().upper()
        try:
            cik = int((row.get("cik") or "").strip())
            sic = int((row.get("sic") or "0").strip() or 0)
        except ValueError as exc:
            raise UniverseError(f"universe row {lineno}: {exc}") from exc
        if not ticker or ticker in seen:
            raise UniverseError(f"universe row {lineno}: empty or duplicate ticker {ticker!r}")
        seen.add(ticker)
        out.append(Member(ticker, cik, sic, (row.get("name") or "").strip()))
    if not out:
        raise UniverseError("universe is empty")
    return out


def load_universe(path: str | Path | None = None) -> list[Member]:
    """The universe at ``path``, or the packaged default when ``path`` is empty."""
    if path:
        return parse_universe(Path(path).read_text(encoding="utf-8"))
    text = (
        resources.files("relentless_fast.context")
        .joinpath("data/universe.csv")
        .read_text(encoding="utf-8")
    )
    return parse_universe(text)


_SUFFIX = re.compile(
    r"[\s,]+(inc|incorporated|corp|corporation|co|company|ltd|limited|plc|holdings?|group|"
    r"n\.?v|s\.?a|ag|lp|l\.p|llc|trust|/[a-z]{2}/?)\.?$",
    re.IGNORECASE,
)


def short_name(name: str) -> str:
    """A company name without legal suffixes, for headline matching ("Apple Inc." -> "Apple")."""
    out = name.strip()
    while True:
        cut = _SUFFIX.sub("", out)
        trimmed = cut.strip(" ,.&")
        if cut == out or not trimmed:
            return out
        out = trimmed


async def build_universe(
    client: SecClient, tickers: Sequence[str], concurrency: int = 4
) -> tuple[list[Member], dict[str, str]]:
    """Members for ``tickers`` from EDGAR (company_tickers.json, then each submissions JSON).

    Returns the members found (in the order asked) and an error per ticker that failed.
    """
    ciks = await client.company_tickers()
    sem = asyncio.Semaphore(concurrency)
    errors: dict[str, str] = {}

    async def one(ticker: str) -> Member | None:
        cik = ciks.get(ticker.upper())
        if cik is None:
            errors[ticker] = "not in EDGAR's company_tickers.json"
            return None
        try:
            async with sem:
                company = await client.submissions(cik)
        except SourceError as exc:
            errors[ticker] = str(exc)
            return None
        return Member(ticker.upper(), cik, company.sic, short_name(company.name))

    got = await asyncio.gather(*(one(t) for t in tickers))
    return [m for m in got if m is not None], errors


def write_universe(path: str | Path, members: Sequence[Member]) -> None:
    """Write a universe CSV that :func:`load_universe` reads back."""
    buf = io.StringIO()
    buf.write("# context universe written by `relentless-fast context universe` from EDGAR\n")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["ticker", "cik", "sic", "name"])
    for m in members:
        writer.writerow([m.ticker, m.cik, m.sic, m.name])
    Path(path).write_text(buf.getvalue(), encoding="utf-8")
