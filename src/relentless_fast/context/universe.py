"""The context universe: ticker -> EDGAR CIK, SIC code and short name.

CSV with header ``ticker,cik,sic,name`` (``#`` lines are comments). The packaged default lives in
``data/universe.csv``; a deployment points ``universe_path`` at its own file (for instance one
derived from EDGAR's ``company_tickers.json``, which maps tickers to CIKs).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from relentless_fast.context.sectors import sector_for_sic


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
