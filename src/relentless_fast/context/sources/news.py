"""News: RSS 2.0 / Atom feeds, headlines matched to symbols and sectors, lexicon sentiment.

Feeds are parsed with defusedxml. Items are deduplicated on ``guid`` / Atom ``id``, else
``link``, else title, else description. Each headline (title plus the text of its description
with tags stripped) is scored
with the packaged finance lexicon (:func:`load_lexicon`): the mean weight of matched terms, a
negator flipping the next term, squashed to [-1, 1] with ``tanh``. A headline names a symbol when
the ticker appears in upper case as a word (or as ``$TICKER``) or the company's short name appears;
it names a sector through ``SECTOR_KEYWORDS`` or through the symbols it names.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import html
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET

from relentless_fast.context.sources.http import SourceError, SourceHttp

NEGATORS = frozenset({"not", "no", "never", "without", "isn't", "wasn't", "didn't", "doesn't"})
ATOM = "{http://www.w3.org/2005/Atom}"

SECTOR_KEYWORDS: dict[str, tuple[str, ...]] = {
    "energy": ("oil", "crude", "opec", "natural gas", "refiner", "refinery", "drilling", "energy"),
    "materials": ("steel", "copper", "aluminum", "chemicals", "mining", "gold", "lithium"),
    "industrials": ("aerospace", "defense contractor", "airline", "railroad", "freight"),
    "consumer_discretionary": ("retail sales", "retailer", "automaker", "homebuilder"),
    "consumer_staples": ("grocery", "beverage", "packaged food", "tobacco", "household products"),
    "healthcare": ("drugmaker", "pharma", "biotech", "fda", "medicare", "hospital", "vaccine"),
    "financials": ("bank", "banks", "lender", "insurer", "brokerage", "credit card", "fed"),
    "technology": ("chip", "chips", "semiconductor", "software", "cloud", "ai", "tech"),
    "communication": ("telecom", "wireless", "broadband", "streaming", "media", "advertising"),
    "utilities": ("utility", "utilities", "power grid", "electricity prices"),
    "real_estate": ("reit", "real estate", "commercial property", "office space", "mortgage rates"),
}  # fmt: skip


@dataclass(frozen=True)
class Headline:
    """One feed item."""

    uid: str
    title: str
    summary: str
    published: dt.datetime | None

    @property
    def text(self) -> str:
        """Title and summary, as scored."""
        return f"{self.title}. {self.summary}" if self.summary else self.title


class Lexicon:
    """Term weights, phrases matched before words."""

    def __init__(self, weights: Mapping[str, float]) -> None:
        self.weights = {k.lower(): float(v) for k, v in weights.items()}
        self.max_words = max((len(k.split()) for k in self.weights), default=1)

    def score(self, text: str) -> tuple[float, int]:
        """(score in [-1, 1], number of scored terms) of ``text``."""
        words = re.findall(r"[a-z][a-z'\-]*", text.lower())
        total, hits, negate, i = 0.0, 0, False, 0
        while i < len(words):
            matched = 0
            for n in range(min(self.max_words, len(words) - i), 0, -1):
                w = self.weights.get(" ".join(words[i : i + n]))
                if w is not None:
                    total += -w if negate else w
                    hits += 1
                    matched = n
                    break
            if matched:
                negate = False
                i += matched
                continue
            negate = words[i] in NEGATORS
            i += 1
        if not hits:
            return 0.0, 0
        return math.tanh(total / hits), hits


def load_lexicon(text: str | None = None) -> Lexicon:
    """The packaged lexicon (``data/finance_lexicon.tsv``) or one given as TSV text."""
    if text is None:
        text = (
            resources.files("relentless_fast.context")
            .joinpath("data/finance_lexicon.tsv")
            .read_text(encoding="utf-8")
        )
    weights: dict[str, float] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        term, sep, weight = line.rpartition("\t")
        if not sep:
            raise ValueError(f"lexicon line {lineno}: expected '<term>\\t<weight>'")
        weights[term.strip()] = float(weight)
    return Lexicon(weights)


def _child_text(el: Element, *names: str) -> str:
    for name in names:
        found = el.find(name)
        if found is not None and found.text:
            return found.text.strip()
    return ""


def _strip_html(text: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html.unescape(text)).split())


def _parse_date(text: str) -> dt.datetime | None:
    if not text:
        return None
    try:
        when = email.utils.parsedate_to_datetime(text)  # RFC 822 (RSS)
    except (TypeError, ValueError):
        try:
            when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))  # RFC 3339 (Atom)
        except ValueError:
            return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def parse_feed(xml: bytes | str) -> list[Headline]:
    """Items of an RSS 2.0 or Atom document, deduplicated, in document order."""
    root = SafeET.fromstring(xml)
    out: list[Headline] = []
    seen: set[str] = set()
    if root.tag == f"{ATOM}feed":
        for entry in root.iter(f"{ATOM}entry"):
            link = entry.find(f"{ATOM}link")
            href = link.get("href", "") if link is not None else ""
            title = _strip_html(_child_text(entry, f"{ATOM}title"))
            uid = _child_text(entry, f"{ATOM}id") or href or title
            summary = _strip_html(_child_text(entry, f"{ATOM}summary", f"{ATOM}content"))
            when = _parse_date(_child_text(entry, f"{ATOM}updated", f"{ATOM}published"))
            _add(out, seen, Headline(uid, title, summary, when))
    elif root.tag == "rss" or root.find("channel") is not None:
        for item in root.iter("item"):
            title = _strip_html(_child_text(item, "title"))
            summary = _strip_html(_child_text(item, "description"))
            uid = _child_text(item, "guid") or _child_text(item, "link") or title or summary
            _add(
                out, seen, Headline(uid, title, summary, _parse_date(_child_text(item, "pubDate")))
            )
    else:
        raise ValueError(f"not an RSS or Atom document: <{root.tag}>")
    return out


def _add(out: list[Headline], seen: set[str], h: Headline) -> None:
    if (h.title or h.summary) and h.uid not in seen:
        seen.add(h.uid)
        out.append(h)


@dataclass(frozen=True)
class NewsSummary:
    """The context's news fields."""

    overall: float
    by_sector: dict[str, float]
    by_symbol: dict[str, float]
    mentions: dict[str, int]
    headlines: int


def summarise(
    headlines: Sequence[Headline],
    lexicon: Lexicon,
    names: Mapping[str, str],
    sectors: Mapping[str, str],
) -> NewsSummary:
    """Score headlines; ``names`` maps symbol -> short company name, ``sectors`` symbol -> sector.

    Scores are means over the headlines that carry any scored term.
    """
    symbol_res = {sym: _symbol_pattern(sym, names.get(sym, "")) for sym in names}
    sector_res = {
        s: re.compile(r"\b(?:" + "|".join(map(re.escape, kws)) + r")\b", re.I)
        for s, kws in SECTOR_KEYWORDS.items()
    }
    overall: list[float] = []
    by_sector: dict[str, list[float]] = {}
    by_symbol: dict[str, list[float]] = {}
    mentions: dict[str, int] = {}
    for h in headlines:
        score, hits = lexicon.score(h.text)
        named = [sym for sym, rx in symbol_res.items() if rx.search(h.text)]
        for sym in named:
            mentions[sym] = mentions.get(sym, 0) + 1
        if not hits:
            continue
        overall.append(score)
        for sym in named:
            by_symbol.setdefault(sym, []).append(score)
        touched = {s for s, rx in sector_res.items() if rx.search(h.text)}
        touched.update(sectors[sym] for sym in named if sectors.get(sym))
        for s in touched:
            by_sector.setdefault(s, []).append(score)
    return NewsSummary(
        overall=_mean(overall),
        by_sector={s: _mean(v) for s, v in by_sector.items()},
        by_symbol={s: _mean(v) for s, v in by_symbol.items()},
        mentions=mentions,
        headlines=len(headlines),
    )


def _symbol_pattern(symbol: str, name: str) -> re.Pattern[str]:
    alts = [rf"\$?{re.escape(symbol)}\b"]
    if name and len(name) >= 4:
        alts.append(rf"(?i:\b{re.escape(name)}\b)")
    return re.compile(r"(?<![A-Za-z0-9])(?:" + "|".join(alts) + ")")


def _mean(values: Iterable[float]) -> float:
    vals = list(values)
    return sum(vals) / len(vals) if vals else 0.0


def in_window(h: Headline, start: dt.datetime, end: dt.datetime) -> bool:
    """Whether the headline was published in [start, end); undated items count as in."""
    return h.published is None or start <= h.published < end


class NewsClient:
    """Fetches the configured feeds."""

    def __init__(self, http: SourceHttp) -> None:
        self.http = http

    async def fetch(self, url: str) -> list[Headline]:
        """One feed's headlines."""
        resp = await self.http.get(url)
        try:
            return parse_feed(resp.content)
        except Exception as exc:  # defusedxml raises several types; all mean a bad feed
            raise SourceError("news", f"{url}: {type(exc).__name__}: {exc}") from exc
