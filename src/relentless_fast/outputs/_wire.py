"""Wire constants shared by the publishers and the consumer.

MoldUDP64 and SoupBinTCP 3.00 as described in ``docs/consumers.md``; the signal layout is
DESIGN.md's layout v1. Publishers never decode signals: they treat them as 64 opaque bytes and only
read the action (byte 3), symbol id (bytes 4..8) and sequence (bytes 8..16) through numpy views.
CRC and validation come from the Rust codec (``relentless_fast_signal``).
"""

from __future__ import annotations

import struct
from typing import Final

import numpy as np
import numpy.typing as npt

import relentless_fast_signal as codec

SignalBuffer = bytes | bytearray | memoryview | npt.NDArray[np.uint8]
"""Anything holding packed signals back to back (``pack_into``'s buffer, a numpy array, ...)."""

SIGNAL_SIZE: Final = 64
ACTION_NAMES: Final = ("hold", "buy", "sell")
FLAG_NAMES: Final = ("canary", "stale", "fallback", "coalesced", "halted")

# MoldUDP64
MOLD_HEADER_SIZE: Final = 20
MOLD_SESSION_SIZE: Final = 10
MOLD_BLOCK_SIZE: Final = 2 + SIGNAL_SIZE
MOLD_HEARTBEAT: Final = 0
MOLD_END_OF_SESSION: Final = 0xFFFF
MOLD_MAX_COUNT: Final = 0xFFFE
MOLD_REQUEST_SIZE: Final = 20
MOLD_HEADER: Final = struct.Struct(">10sQH")

# SoupBinTCP 3.00
SOUP_LOGIN_LENGTH: Final = 47
SOUP_SEQUENCED_FRAME_SIZE: Final = 3 + SIGNAL_SIZE


def session_bytes(session: str) -> bytes:
    """The 10-byte MoldUDP64 session field: left-justified, space-padded on the right.

    A session is 1..10 printable ASCII characters without spaces (SoupBinTCP's ``A`` packet
    carries the same name right-justified).
    """
    raw = session.encode("ascii", "replace")
    if not 0 < len(raw) <= MOLD_SESSION_SIZE or any(b < 0x21 or b > 0x7E for b in raw):
        raise ValueError(
            f"session must be 1..10 printable ASCII characters, no spaces: {session!r}"
        )
    return raw.ljust(MOLD_SESSION_SIZE)


def crc32c(data: bytes | memoryview | npt.NDArray[np.uint8]) -> int:
    """CRC-32C (Castagnoli), from the Rust codec; ``crc32c(b"123456789") == 0xE3069283``."""
    return codec.crc32c(data)


def check_signal(payload: bytes | memoryview) -> str | None:
    """Why ``payload`` is not one valid layout-v1 signal, or None when it is."""
    if len(payload) != SIGNAL_SIZE:
        return f"length {len(payload)} != 64"
    try:
        codec.validate(payload)
    except (codec.SignalFormatError, ValueError) as exc:
        return str(exc)
    return None
