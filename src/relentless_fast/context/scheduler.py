"""Daily schedule of the loader: ``schedule_time`` in ``schedule_tz`` on every trading session.

The next run is the first session day (exchange calendar: weekends and market holidays skipped)
whose local ``schedule_time`` is still ahead; the wall time is built in the zone with ``zoneinfo``,
so 05:30 America/New_York stays 05:30 local across DST changes (10:30 UTC in winter, 09:30 UTC in
summer). The run loads the context for that session day.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from zoneinfo import ZoneInfo

from relentless_fast.context import sessions

log = logging.getLogger(__name__)


def next_run(
    now: dt.datetime, schedule_time: str, tz: str, calendar: str = sessions.DEFAULT_CALENDAR
) -> tuple[dt.datetime, dt.date]:
    """(UTC time of the next run strictly after ``now``, the session it loads)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    zone = ZoneInfo(tz)
    hh, mm = (int(x) for x in schedule_time.split(":"))
    day = now.astimezone(zone).date()
    for _ in range(30):
        day = sessions.session_on_or_after(day, calendar)
        when = dt.datetime.combine(day, dt.time(hh, mm), tzinfo=zone)
        if when > now:
            return when.astimezone(dt.UTC), day
        day += dt.timedelta(days=1)
    raise RuntimeError("no session in the next 30 days")  # pragma: no cover


async def run_schedule(
    job: Callable[[dt.date], Awaitable[int]],
    schedule_time: str,
    tz: str,
    *,
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    max_runs: int | None = None,
) -> None:
    """Run ``job(session)`` at every scheduled time; a failure is logged, the schedule goes on."""
    runs = 0
    while max_runs is None or runs < max_runs:
        when, day = next_run(clock(), schedule_time, tz)
        delay = (when - clock()).total_seconds()
        log.info("context: next load %s for session %s (in %.0fs)", when.isoformat(), day, delay)
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            code = await job(day)
            log.info("context: scheduled load for %s exited %d", day, code)
        except Exception:  # the schedule must survive one bad day
            log.exception("context: scheduled load for %s failed", day)
        runs += 1
