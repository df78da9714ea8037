"""Congress.gov v3: bills updated in a window, with detail and actions of the relevant ones.

The list endpoint is paged (``limit`` up to 250; follow ``pagination.next``). The key travels in
the ``X-Api-Key`` header, so it never appears in a URL (``next`` omits it anyway). Bills whose
title or latest action matches a topic get their detail (policy area, cosponsors, committee
reports, laws), actions and subjects fetched, up to ``detail_max`` bills.

Classification (documented model, :mod:`relentless_fast.context.legislation`) lives apart from the
client so it can be tested without HTTP.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from relentless_fast.context.sources.http import SourceError, SourceHttp

PAGE_LIMIT = 250


@dataclass
class Bill:
    """What the context needs of one bill."""

    congress: int
    bill_type: str  # lower-case path form: hr, s, hjres, ...
    number: str
    title: str
    latest_action_date: str
    latest_action_text: str
    update_date: str
    policy_area: str = ""
    cosponsors: int = 0
    committee_reports: int = 0
    became_law: bool = False
    action_texts: list[str] = field(default_factory=list)
    subjects: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        """Stable id, e.g. ``119-hr-4779``."""
        return f"{self.congress}-{self.bill_type}-{self.number}"


def parse_bill_list(body: Any) -> tuple[list[Bill], str | None]:
    """Bills of a ``/bill`` list page and the ``pagination.next`` URL (None when absent)."""
    if not isinstance(body, dict) or not isinstance(body.get("bills"), list):
        raise ValueError(f"not a bill list: {_error_text(body) or type(body).__name__}")
    bills: list[Bill] = []
    for item in body["bills"]:
        bill = _bill_from(item)
        if bill is not None:
            bills.append(bill)
    pagination = body.get("pagination") or {}
    nxt = pagination.get("next") if isinstance(pagination, dict) else None
    return bills, (str(nxt) if nxt else None)


def parse_bill_detail(body: Any, bill: Bill | None = None) -> Bill:
    """Fill ``bill`` (or a new one) from a ``/bill/{congress}/{type}/{number}`` body."""
    item = body.get("bill") if isinstance(body, dict) else None
    if not isinstance(item, dict):
        raise ValueError(f"not a bill detail: {_error_text(body) or type(body).__name__}")
    parsed = _bill_from(item)
    if parsed is None:
        raise ValueError("bill detail without congress/type/number")
    out = bill or parsed
    out.title = parsed.title or out.title
    out.latest_action_text = parsed.latest_action_text or out.latest_action_text
    out.latest_action_date = parsed.latest_action_date or out.latest_action_date
    area = item.get("policyArea")
    if isinstance(area, dict):
        out.policy_area = str(area.get("name") or "")
    cos = item.get("cosponsors")
    if isinstance(cos, dict):
        out.cosponsors = _int(cos.get("count"))
    reports = item.get("committeeReports")
    out.committee_reports = len(reports) if isinstance(reports, list) else 0
    laws = item.get("laws")
    out.became_law = isinstance(laws, list) and len(laws) > 0
    return out


def parse_actions(body: Any) -> list[str]:
    """Action texts of a ``/actions`` body, newest first as served."""
    if not isinstance(body, dict) or not isinstance(body.get("actions"), list):
        raise ValueError(f"not an actions body: {_error_text(body) or type(body).__name__}")
    return [str(a.get("text", "")) for a in body["actions"] if isinstance(a, dict)]


def parse_subjects(body: Any) -> list[str]:
    """Legislative subject names (and the policy area) of a ``/subjects`` body."""
    subjects = body.get("subjects") if isinstance(body, dict) else None
    if not isinstance(subjects, dict):
        raise ValueError(f"not a subjects body: {_error_text(body) or type(body).__name__}")
    names = [
        str(s.get("name", ""))
        for s in subjects.get("legislativeSubjects") or []
        if isinstance(s, dict) and s.get("name")
    ]
    area = subjects.get("policyArea")
    if isinstance(area, dict) and area.get("name"):
        names.append(str(area["name"]))
    return names


def _bill_from(item: Any) -> Bill | None:
    if not isinstance(item, dict):
        return None
    try:
        congress = int(item["congress"])
        bill_type = str(item["type"]).lower()
        number = str(item["number"])
    except (KeyError, TypeError, ValueError):
        return None
    latest_raw = item.get("latestAction")
    latest: dict[str, Any] = latest_raw if isinstance(latest_raw, dict) else {}
    return Bill(
        congress=congress,
        bill_type=bill_type,
        number=number,
        title=str(item.get("title") or ""),
        latest_action_date=str(latest.get("actionDate") or ""),
        latest_action_text=str(latest.get("text") or ""),
        update_date=str(item.get("updateDate") or ""),
    )


def _error_text(body: Any) -> str:
    """The message of an api.data.gov / Congress.gov error body."""
    if not isinstance(body, dict) or "error" not in body:
        return ""
    err = body["error"]
    if isinstance(err, dict):
        return f"{err.get('code', '')}: {err.get('message', '')}"
    return str(err)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


class CongressClient:
    """Async Congress.gov v3 client."""

    def __init__(self, http: SourceHttp, base_url: str, api_key: str) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self._key = api_key

    async def _get_json(self, url: str, params: dict[str, Any]) -> Any:
        # the key goes in the X-Api-Key header (documented alternative to api_key=): never in a URL
        resp = await self.http.get(
            url, {**params, "format": "json"}, headers={"X-Api-Key": self._key}
        )
        try:
            body = resp.json()
        except ValueError as exc:
            raise SourceError("congress", f"malformed JSON: {exc}") from exc
        err = _error_text(body)
        if err:
            raise SourceError("congress", err)
        return body

    async def bills_updated(
        self, start: dt.datetime, end: dt.datetime, max_bills: int
    ) -> list[Bill]:
        """Bills updated in [start, end) (UTC), newest update first, at most ``max_bills``."""
        params: dict[str, Any] = {
            "fromDateTime": _zulu(start),
            "toDateTime": _zulu(end),
            "sort": "updateDate desc",
            "limit": min(PAGE_LIMIT, max_bills),
            "offset": 0,
        }
        url = f"{self.base_url}/bill"
        out: list[Bill] = []
        while len(out) < max_bills:
            body = await self._get_json(url, params)
            try:
                page, nxt = parse_bill_list(body)
            except ValueError as exc:
                raise SourceError("congress", str(exc)) from exc
            out.extend(page)
            if not nxt or not page:
                break
            # Follow next's query on our own base URL (a replay server or proxy stays in use);
            # next omits the key, which travels in the header anyway.
            params = {**params, **_next_params(nxt)}
        return out[:max_bills]

    async def detail(self, bill: Bill) -> Bill:
        """Fetch the bill's detail, actions and subjects into ``bill``."""
        base = f"{self.base_url}/bill/{bill.congress}/{bill.bill_type}/{bill.number}"
        body = await self._get_json(base, {})
        try:
            parse_bill_detail(body, bill)
            bill.action_texts = parse_actions(await self._get_json(f"{base}/actions", {}))
            bill.subjects = parse_subjects(await self._get_json(f"{base}/subjects", {}))
        except ValueError as exc:
            raise SourceError("congress", f"{bill.key}: {exc}") from exc
        return bill


def _next_params(url: str) -> dict[str, Any]:
    """The query of a ``pagination.next`` URL without ``format`` and ``api_key``."""
    return {k: v for k, v in parse_qsl(urlsplit(url).query) if k not in ("api_key", "format")}


def _zulu(when: dt.datetime) -> str:
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC).replace(tzinfo=None)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def bill_keys(bills: Sequence[Bill]) -> list[str]:
    """Keys of ``bills`` in order."""
    return [b.key for b in bills]
