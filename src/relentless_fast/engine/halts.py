"""Trading halts and LULD bands, from the feed's status (``s``) and LULD (``l``) messages.

Policy (``engine.halt_policy``, ``engine.luld_policy``; documented in ``docs/engine.md``):

- A symbol is **halted** from a status message with a halt or pause code (tape C ``H`` trading
  halt, ``P`` volatility pause; tapes A/B ``2`` halt) until a trade-resume code (``T``; ``3``).
  ``Q`` (quotation resume) does not end a halt: quoting is back, trading is not. While halted its
  signals are suppressed (default, counted) or carry flag bit 4.
- A symbol is **at its LULD band** when its last price is at or beyond the latest limit-up or
  limit-down price. Such signals carry flag bit 4 (default), are suppressed, or are left alone.

Only frames that carried status or LULD records cost anything: the parser's per-kind record
counts are compared once per frame, and only then are the touched symbols' rings read.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from relentless_fast._tickparse import TickParser, TickRings
from relentless_fast.records import Kind

HALT_CODES: Final = frozenset((b"H", b"P", b"2"))
RESUME_CODES: Final = frozenset((b"T", b"3"))


class HaltTracker:
    """Per-symbol halted state and LULD band, updated from the rings after each parse."""

    __slots__ = (
        "_luld_heads",
        "_luld_seen",
        "_parser",
        "_rings",
        "_status_heads",
        "_status_seen",
        "_totals",
        "halted",
        "limit_down",
        "limit_up",
        "n_bands",
        "n_halted",
    )

    def __init__(self, parser: TickParser, rings: TickRings, n_symbols: int) -> None:
        self._parser = parser
        self._rings = rings
        self.halted: npt.NDArray[np.bool_] = np.zeros(n_symbols, np.bool_)
        self.limit_up: npt.NDArray[np.float64] = np.full(n_symbols, np.inf)
        self.limit_down: npt.NDArray[np.float64] = np.full(n_symbols, -np.inf)
        self._status_heads = rings.heads(Kind.STATUS)
        self._luld_heads = rings.heads(Kind.LULD)
        self._status_seen = self._status_heads.copy()
        self._luld_seen = self._luld_heads.copy()
        self._totals = (0, 0)
        self.n_halted = 0
        """Symbols halted now (0: the hot path skips the halt lookups)."""
        self.n_bands = 0
        """Symbols with a LULD band (0: the hot path skips the band test)."""

    def update(self, touched: npt.NDArray[np.uint32]) -> bool:
        """Read new status/LULD records of ``touched``; True when any state may have changed."""
        counts = self._parser.record_counts
        totals = (int(counts[Kind.STATUS]), int(counts[Kind.LULD]))
        if totals == self._totals:
            return False
        self._totals = totals
        heads, seen = self._status_heads, self._status_seen
        for sid in touched[heads[touched] != seen[touched]]:
            seen[sid] = heads[sid]
            code = bytes(self._rings.last(Kind.STATUS, int(sid), 1)["status_code"][0])
            if code in HALT_CODES:
                self.halted[sid] = True
            elif code in RESUME_CODES:
                self.halted[sid] = False
        heads, seen = self._luld_heads, self._luld_seen
        for sid in touched[heads[touched] != seen[touched]]:
            seen[sid] = heads[sid]
            rec = self._rings.last(Kind.LULD, int(sid), 1)
            self.limit_up[sid] = float(rec["limit_up"][0])
            self.limit_down[sid] = float(rec["limit_down"][0])
        self.n_halted = int(np.count_nonzero(self.halted))
        self.n_bands = int(np.count_nonzero(np.isfinite(self.limit_up)))
        return True

    def at_band(
        self, ids: npt.NDArray[np.int32], price: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.bool_]:
        """Rows whose price is at or beyond their symbol's LULD band."""
        at: npt.NDArray[np.bool_] = (price >= self.limit_up[ids]) | (price <= self.limit_down[ids])
        return at
