"""Bill classification: topics, passage likelihood, market direction and sector scores.

A transparent keyword-and-subject model (documented in docs/context.md):

- **Topics.** A bill belongs to every topic whose keywords occur (whole words or phrases,
  case-insensitive) in its title, latest action text or legislative subjects. Policy areas map
  to topics directly (``POLICY_AREA_TOPICS``).
- **Passage likelihood** from the furthest stage reached: enacted 1.0 (not pending); passed both
  chambers / presented to the President 0.85; passed one chamber 0.35; reported or placed on a
  calendar 0.15; introduced or referred 0.03; plus ``min(0.05, 0.002 * cosponsors)``.
- **Direction** of its market impact: +1 when its words lean to relief, credits, funding or
  investment, -1 when they lean to taxes, bans, restrictions, tariffs or penalties, 0 otherwise.
- **Sector scores**: each topic touches sectors with a sign (``TOPIC_SECTORS``); a sector's score is
  ``tanh(sum(likelihood * direction * sign))`` over its bills, in [-1, 1].
- ``legislative_risk_score = 1 - exp(-sum(likelihood) / 2)`` over market-relevant pending bills;
  ``regulatory_change_probability = 1 - prod(1 - likelihood)`` over pending regulatory and
  finance bills;
  ``topic_scores[t] = 1 - exp(-sum(likelihood of bills in t))``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from relentless_fast.context.embedding import TOPICS
from relentless_fast.context.sectors import SECTORS
from relentless_fast.context.sources.congress import Bill

TOPIC_KEYWORDS: dict[str, tuple[str, ...]] = {
    "finance": (
        "budget", "appropriations", "debt ceiling", "debt limit", "federal reserve", "securities",
        "banking", "bank", "banks", "finance", "financial", "treasury", "fiscal", "monetary",
        "stimulus", "credit union", "investor", "capital markets", "stablecoin", "digital asset",
    ),
    "tax": (
        "tax", "taxes", "taxation", "tax credit", "internal revenue", "irs", "excise",
    ),
    "regulatory": (
        "regulation", "regulatory", "rule", "rulemaking", "compliance", "oversight", "antitrust",
        "securities and exchange commission", "disclosure", "reporting requirements",
        "deregulation", "consumer protection",
    ),
    "defense": (
        "defense", "national defense authorization", "military", "armed forces", "weapons",
        "army", "navy", "air force", "missile", "veterans",
    ),
    "infrastructure": (
        "infrastructure", "highway", "highways", "bridge", "bridges", "transit", "rail",
        "railroad", "broadband", "water infrastructure", "ports", "airport", "aviation",
        "surface transportation",
    ),
    "healthcare": (
        "health", "healthcare", "medicare", "medicaid", "drug", "drugs", "pharmaceutical",
        "hospital", "hospitals", "insurance", "prescription", "public health",
    ),
    "energy_climate": (
        "energy", "oil", "gas", "natural gas", "pipeline", "climate", "emissions", "renewable",
        "solar", "wind", "nuclear", "electric", "electricity", "carbon", "clean energy", "coal",
    ),
    "trade_tariffs": (
        "trade", "tariff", "tariffs", "import", "imports", "export", "exports", "customs",
        "sanctions", "trade agreement", "duty", "duties",
    ),
}  # fmt: skip
"""Topic -> keywords (whole words or phrases)."""

POLICY_AREA_TOPICS: dict[str, tuple[str, ...]] = {
    "Finance and Financial Sector": ("finance",),
    "Economics and Public Finance": ("finance",),
    "Taxation": ("tax",),
    "Armed Forces and National Security": ("defense",),
    "Transportation and Public Works": ("infrastructure",),
    "Health": ("healthcare",),
    "Energy": ("energy_climate",),
    "Environmental Protection": ("energy_climate", "regulatory"),
    "Foreign Trade and International Finance": ("trade_tariffs",),
    "Commerce": ("regulatory",),
    "Science, Technology, Communications": ("regulatory",),
}
"""Congress.gov policy area -> topics."""

TOPIC_SECTORS: dict[str, dict[str, float]] = {
    "finance": {"financials": 1.0, "real_estate": 0.5},
    "tax": {s: 0.5 for s in SECTORS} | {"financials": 1.0},
    "regulatory": {"financials": 1.0, "technology": 0.7, "communication": 0.7, "healthcare": 0.5},
    "defense": {"industrials": 1.0, "technology": 0.3},
    "infrastructure": {
        "industrials": 1.0, "materials": 0.8, "utilities": 0.5, "communication": 0.3,
    },
    "healthcare": {"healthcare": 1.0},
    "energy_climate": {"energy": 1.0, "utilities": 0.8, "materials": 0.3},
    "trade_tariffs": {
        "industrials": 0.8, "materials": 0.8, "consumer_discretionary": 1.0,
        "technology": 0.7, "consumer_staples": 0.5,
    },
}  # fmt: skip
"""Topic -> {sector: sensitivity}; the sign of the effect comes from the bill's direction."""

POSITIVE_WORDS = (
    "relief", "credit", "credits", "incentive", "incentives", "investment", "invest", "funding",
    "appropriations", "support", "modernization", "expansion", "deduction", "exemption", "cut",
    "cuts", "growth", "jobs", "innovation", "grant", "grants", "authorization",
)  # fmt: skip
NEGATIVE_WORDS = (
    "ban", "bans", "prohibit", "prohibition", "restrict", "restriction", "restrictions", "penalty",
    "penalties", "surtax", "increase taxes", "tax increase", "tariff", "tariffs", "sanctions",
    "limit", "limits", "repeal", "moratorium", "windfall", "excise", "crackdown", "fine", "fines",
)  # fmt: skip

STAGE_ENACTED = 1.0
STAGE_BOTH_CHAMBERS = 0.85
STAGE_ONE_CHAMBER = 0.35
STAGE_REPORTED = 0.15
STAGE_INTRODUCED = 0.03


def _pattern(words: Iterable[str]) -> re.Pattern[str]:
    alts = sorted((re.escape(w) for w in words), key=len, reverse=True)
    return re.compile(r"\b(?:" + "|".join(alts) + r")\b", re.IGNORECASE)


_TOPIC_RE = {t: _pattern(words) for t, words in TOPIC_KEYWORDS.items()}
_POS_RE = _pattern(POSITIVE_WORDS)
_NEG_RE = _pattern(NEGATIVE_WORDS)
_ENACTED_RE = re.compile(r"became public law|signed by (the )?president|became private law", re.I)
_BOTH_RE = re.compile(
    r"presented to (the )?president|cleared for white house|resolving differences", re.I
)
_PASSED_RE = re.compile(
    r"passed (the )?(house|senate)|passed/agreed to in (house|senate)|"
    r"received in the (house|senate)|on passage passed|agreed to in (the )?(house|senate)",
    re.I,
)
_REPORTED_RE = re.compile(
    r"reported by|ordered to be reported|placed on .*calendar|committee report",
    re.I,
)


@dataclass(frozen=True)
class ClassifiedBill:
    """A bill with what the model made of it."""

    key: str
    title: str
    topics: tuple[str, ...]
    likelihood: float
    direction: float
    enacted: bool


def topics_of(bill: Bill) -> tuple[str, ...]:
    """Topics of ``bill`` in ``TOPICS`` order."""
    text = " ".join((bill.title, bill.latest_action_text, *bill.subjects))
    found = {t for t, rx in _TOPIC_RE.items() if rx.search(text)}
    found.update(POLICY_AREA_TOPICS.get(bill.policy_area, ()))
    return tuple(t for t in TOPICS if t in found)


def stage_likelihood(bill: Bill) -> tuple[float, bool]:
    """(passage likelihood, enacted) from the furthest stage the bill's actions show."""
    texts = [bill.latest_action_text, *bill.action_texts]
    joined = " | ".join(texts)
    if bill.became_law or _ENACTED_RE.search(joined):
        return STAGE_ENACTED, True
    passed_chambers = {m.group(0).lower().split()[-1] for m in _PASSED_RE.finditer(joined)}
    if _BOTH_RE.search(joined) or len(passed_chambers & {"house", "senate"}) >= 2:
        base = STAGE_BOTH_CHAMBERS
    elif passed_chambers:
        base = STAGE_ONE_CHAMBER
    elif bill.committee_reports > 0 or _REPORTED_RE.search(joined):
        base = STAGE_REPORTED
    else:
        base = STAGE_INTRODUCED
    return min(1.0, base + min(0.05, 0.002 * bill.cosponsors)), False


def direction_of(bill: Bill) -> float:
    """+1, -1 or 0: the lean of the bill's words (title and latest action)."""
    text = " ".join((bill.title, bill.latest_action_text))
    pos = len(_POS_RE.findall(text))
    neg = len(_NEG_RE.findall(text))
    return float((pos > neg) - (neg > pos))


def classify(bill: Bill) -> ClassifiedBill:
    """Run the whole model on one bill."""
    likelihood, enacted = stage_likelihood(bill)
    return ClassifiedBill(
        bill.key, bill.title, topics_of(bill), likelihood, direction_of(bill), enacted
    )


@dataclass(frozen=True)
class LegislativeSummary:
    """The context's legislative fields."""

    legislative_risk_score: float
    regulatory_change_probability: float
    pending_bills: tuple[str, ...]
    sector_scores: dict[str, float]
    topic_scores: dict[str, float]


def summarise(bills: Sequence[ClassifiedBill], max_pending: int = 50) -> LegislativeSummary:
    """Aggregate classified bills into the context's legislative fields."""
    relevant = [b for b in bills if b.topics]
    pending = [b for b in relevant if not b.enacted]
    risk = 1.0 - math.exp(-sum(b.likelihood for b in pending) / 2.0)
    survive = 1.0
    for b in pending:
        if {"regulatory", "finance"} & set(b.topics):
            survive *= 1.0 - b.likelihood
    raw: dict[str, float] = dict.fromkeys(SECTORS, 0.0)
    topic_sum: dict[str, float] = dict.fromkeys(TOPICS, 0.0)
    for b in relevant:
        for t in b.topics:
            topic_sum[t] += b.likelihood
            for sector, sens in TOPIC_SECTORS[t].items():
                raw[sector] += b.likelihood * b.direction * sens
    ranked = sorted(pending, key=lambda b: b.likelihood, reverse=True)[:max_pending]
    return LegislativeSummary(
        legislative_risk_score=risk,
        regulatory_change_probability=1.0 - survive,
        pending_bills=tuple(f"{b.key}: {b.title}"[:200] for b in ranked),
        sector_scores={s: math.tanh(v) for s, v in raw.items()},
        topic_scores={t: 1.0 - math.exp(-v) for t, v in topic_sum.items()},
    )
