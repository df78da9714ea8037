"""Trading sessions from an exchange calendar (``exchange_calendars``, XNYS by default).

Used for staleness (in trading days), the schedule (skip weekends and market holidays) and the
default as-of date. No hand-written holiday lists.
"""

from __future__ import annotations

import datetime as dt
import functools
import warnings
from typing import Any

DEFAULT_CALENDAR = "XNYS"


@functools.lru_cache(maxsize=4)
def _calendar(name: str) -> Any:
    import exchange_calendars as xcals

    # exchange_calendars trips pandas deprecation warnings while building a calendar: not ours
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        return xcals.get_calendar(name)


def is_session(day: dt.date, calendar: str = DEFAULT_CALENDAR) -> bool:
    """Whether ``day`` is a trading session."""
    cal = _calendar(calendar)
    _check_range(cal, day)
    return bool(cal.is_session(day.isoformat()))


def sessions_after(start: dt.date, end: dt.date, calendar: str = DEFAULT_CALENDAR) -> int:
    """Number of sessions ``s`` with ``start < s <= end`` (0 when ``end <= start``)."""
    if end <= start:
        return 0
    cal = _calendar(calendar)
    lo = start + dt.timedelta(days=1)
    _check_range(cal, lo)
    _check_range(cal, end)
    return len(cal.sessions_in_range(lo.isoformat(), end.isoformat()))


def session_on_or_after(day: dt.date, calendar: str = DEFAULT_CALENDAR) -> dt.date:
    """``day`` when it is a session, else the next session."""
    cal = _calendar(calendar)
    _check_range(cal, day)
    return cal.date_to_session(day.isoformat(), direction="next").date()  # type: ignore[no-any-return]


def previous_session(day: dt.date, calendar: str = DEFAULT_CALENDAR) -> dt.date:
    """The last session strictly before ``day``."""
    cal = _calendar(calendar)
    d = day - dt.timedelta(days=1)
    _check_range(cal, d)
    return cal.date_to_session(d.isoformat(), direction="previous").date()  # type: ignore[no-any-return]


def lookback_start(as_of: dt.date, days: int, calendar: str = DEFAULT_CALENDAR) -> dt.date:
    """Start of a look-back window: ``days`` calendar days back, but at least the previous session.

    A 3-day window on the Tuesday after a Monday holiday still covers Friday.
    """
    start = as_of - dt.timedelta(days=days)
    try:
        return min(start, previous_session(as_of, calendar))
    except ValueError:  # outside the calendar's range: calendar days only
        return start


def sessions_in(start: dt.date, end: dt.date, calendar: str = DEFAULT_CALENDAR) -> list[dt.date]:
    """Sessions in [start, end]."""
    cal = _calendar(calendar)
    _check_range(cal, start)
    _check_range(cal, end)
    return [ts.date() for ts in cal.sessions_in_range(start.isoformat(), end.isoformat())]


def _check_range(cal: Any, day: dt.date) -> None:
    first, last = cal.first_session.date(), cal.last_session.date()
    if not first <= day <= last:
        raise ValueError(f"{day} is outside the {cal.name} calendar ({first} .. {last})")
