"""UTC-offset transition tables for the session clock (time of day, session day).

The kernel cannot call zoneinfo per tick, so the offsets of a time zone are turned once, in Python,
into two arrays: ``transitions_ns`` (sorted UTC instants, ns since the epoch, where the offset
changes) and ``offsets_ns`` (one more element: ``offsets_ns[i]`` holds for instants in
``[transitions_ns[i-1], transitions_ns[i])``). Local time is ``utc + offset``: exact across DST,
including the hours between local midnight and the change. Instants outside the table's years use
the first/last offset.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

FIRST_YEAR = 1950
LAST_YEAR = 2100
_NS = 1_000_000_000


def _offset_s(zone: ZoneInfo, epoch_s: int) -> int:
    off = datetime.fromtimestamp(epoch_s, UTC).astimezone(zone).utcoffset()
    assert off is not None
    return int(off.total_seconds())


@lru_cache(maxsize=8)
def _table(tz: str, first_year: int, last_year: int) -> tuple[bytes, bytes]:
    zone = ZoneInfo(tz)
    start = int(datetime(first_year, 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(last_year + 1, 1, 1, tzinfo=UTC).timestamp())
    step = 6 * 3600  # shorter than any gap between two changes of a real zone
    transitions: list[int] = []
    offsets = [_offset_s(zone, start)]
    lo, lo_off = start, offsets[0]
    while lo < end:
        hi = min(lo + step, end)
        hi_off = _offset_s(zone, hi)
        if hi_off != lo_off:
            a, b = lo, hi  # offset(a) == lo_off != offset(b): bisect to the first second
            while b - a > 1:
                mid = (a + b) // 2
                if _offset_s(zone, mid) == lo_off:
                    a = mid
                else:
                    b = mid
            transitions.append(b)
            offsets.append(hi_off)
        lo, lo_off = hi, hi_off
    trans = np.asarray(transitions, dtype=np.int64) * _NS
    offs = np.asarray(offsets, dtype=np.int64) * _NS
    return trans.tobytes(), offs.tobytes()


def offset_table(
    tz: str, first_year: int = FIRST_YEAR, last_year: int = LAST_YEAR
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Return ``(transitions_ns, offsets_ns)`` for ``tz`` between the given years (cached)."""
    trans, offs = _table(tz, first_year, last_year)
    return (
        np.frombuffer(trans, dtype=np.int64).copy(),
        np.frombuffer(offs, dtype=np.int64).copy(),
    )


def utc_offset_ns(
    ts_ns: int, transitions_ns: npt.NDArray[np.int64], offsets_ns: npt.NDArray[np.int64]
) -> int:
    """Offset in ns at UTC instant ``ts_ns`` according to a table from :func:`offset_table`."""
    return int(offsets_ns[int(np.searchsorted(transitions_ns, ts_ns, side="right"))])


def zoneinfo_offset_ns(ts_ns: int, tz: str) -> int:
    """The same offset straight from zoneinfo (slow; for tests and the reference)."""
    dt = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ts_ns // 1000)
    off = dt.astimezone(ZoneInfo(tz)).utcoffset()
    assert off is not None
    return int(off.total_seconds()) * _NS
