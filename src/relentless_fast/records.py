"""Record layouts of the tick rings (one numpy dtype per message kind).

These dtypes are the contract between the tick parser (``relentless_fast._tickparse``), which writes
them, and the feature kernel (``relentless_fast._features``), which reads them. The C structs in
``ext/_records.pxd`` mirror them field for field; ``tests/unit/test_records.py`` checks offsets.

Conventions: ``ts_ns`` is the exchange timestamp (ns since the Unix epoch, from the message's
``t``); ``seq`` is the parser's own 1-based arrival counter over all data messages, so the order of
records of different kinds can be restored. Single-character codes (exchange, tape, action,
indicator) are stored as their ASCII byte (0 when absent). Sizes are float64 so fractional sizes
survive.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final

import numpy as np


class Kind(IntEnum):
    """Message kinds with a ring of their own. The value indexes per-kind counters."""

    TRADE = 0  # "t"
    QUOTE = 1  # "q"
    BAR = 2  # "b" minute, "u" updated, "d" daily (see BAR_DTYPE.bar_type)
    CORRECTION = 3  # "c"
    CANCEL = 4  # "x"
    STATUS = 5  # "s"
    LULD = 6  # "l"
    IMBALANCE = 7  # "i"


N_KINDS: Final = len(Kind)

_HEAD = [("ts_ns", "<i8"), ("seq", "<u8")]

TRADE_DTYPE: Final = np.dtype(
    [
        *_HEAD,
        ("trade_id", "<i8"),
        ("price", "<f8"),
        ("size", "<f8"),
        ("conditions", "S4"),  # first four condition codes, one byte each, NUL-padded
        ("exchange", "u1"),
        ("tape", "u1"),
    ],
    align=True,
)

QUOTE_DTYPE: Final = np.dtype(
    [
        *_HEAD,
        ("bid_price", "<f8"),
        ("ask_price", "<f8"),
        ("bid_size", "<f8"),
        ("ask_size", "<f8"),
        ("conditions", "S4"),
        ("bid_exchange", "u1"),
        ("ask_exchange", "u1"),
        ("tape", "u1"),
    ],
    align=True,
)

BAR_DTYPE: Final = np.dtype(
    [
        *_HEAD,
        ("open", "<f8"),
        ("high", "<f8"),
        ("low", "<f8"),
        ("close", "<f8"),
        ("volume", "<f8"),
        ("vwap", "<f8"),  # NaN when the message has no "vw"
        ("trade_count", "<u8"),
        ("bar_type", "u1"),  # ord("b"), ord("u") or ord("d")
    ],
    align=True,
)

CORRECTION_DTYPE: Final = np.dtype(
    [
        *_HEAD,
        ("orig_id", "<i8"),
        ("orig_price", "<f8"),
        ("orig_size", "<f8"),
        ("corr_id", "<i8"),
        ("corr_price", "<f8"),
        ("corr_size", "<f8"),
        ("exchange", "u1"),
        ("tape", "u1"),
    ],
    align=True,
)

CANCEL_DTYPE: Final = np.dtype(
    [
        *_HEAD,
        ("trade_id", "<i8"),
        ("price", "<f8"),
        ("size", "<f8"),
        ("exchange", "u1"),
        ("action", "u1"),  # ord("C") cancel, ord("E") error
        ("tape", "u1"),
    ],
    align=True,
)

STATUS_DTYPE: Final = np.dtype(
    [
        *_HEAD,
        ("status_code", "S4"),  # "sc", e.g. b"H", b"T", b"2"
        ("reason_code", "S8"),  # "rc", e.g. b"LUDP", b"T12"
        ("tape", "u1"),
    ],
    align=True,
)

LULD_DTYPE: Final = np.dtype(
    [
        *_HEAD,
        ("limit_up", "<f8"),
        ("limit_down", "<f8"),
        ("indicator", "u1"),
        ("tape", "u1"),
    ],
    align=True,
)

IMBALANCE_DTYPE: Final = np.dtype(
    [
        *_HEAD,
        ("price", "<f8"),
        ("tape", "u1"),
    ],
    align=True,
)

DTYPES: Final[dict[Kind, np.dtype[np.void]]] = {
    Kind.TRADE: TRADE_DTYPE,
    Kind.QUOTE: QUOTE_DTYPE,
    Kind.BAR: BAR_DTYPE,
    Kind.CORRECTION: CORRECTION_DTYPE,
    Kind.CANCEL: CANCEL_DTYPE,
    Kind.STATUS: STATUS_DTYPE,
    Kind.LULD: LULD_DTYPE,
    Kind.IMBALANCE: IMBALANCE_DTYPE,
}
