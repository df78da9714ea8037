"""Wire constants shared by the publishers and the consumer, and a signal view.

MoldUDP64 and SoupBinTCP 3.00 as described in ``docs/consumers.md``; the signal layout is
DESIGN.md's layout v1. Publishers never decode signals: they treat them as 64 opaque bytes and only
read the action (byte 3), symbol id (bytes 4..8) and sequence (bytes 8..16) through numpy views.

TEMPORARY (to be replaced by ``relentless_fast_signal``): :func:`crc32c` and :func:`check_signal`
are a private stand-in for the Rust codec's CRC and validating ``unpack`` until its Python API is
installed in every environment; the consumer is the only user.
"""

from __future__ import annotations

import struct
from typing import Final

import numpy as np
import numpy.typing as npt

SignalBuffer = bytes | bytearray | memoryview | npt.NDArray[np.uint8]
"""Anything holding packed signals back to back (``pack_into``'s buffer, a numpy array, ...)."""

SIGNAL_SIZE: Final = 64
MAGIC: Final = 0x5246
LAYOUT_VERSION: Final = 1
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
SOUP_LENGTH: Final = struct.Struct(">H")
SOUP_LOGIN_LENGTH: Final = 47
SOUP_SEQUENCED_FRAME_SIZE: Final = 3 + SIGNAL_SIZE
SOUP_USERNAME_SIZE: Final = 6
SOUP_PASSWORD_SIZE: Final = 10
SOUP_SESSION_SIZE: Final = 10
SOUP_SEQUENCE_SIZE: Final = 20

SIGNAL_DTYPE: Final = np.dtype(
    [
        ("magic", ">u2"),
        ("layout_version", "u1"),
        ("action", "u1"),
        ("symbol_id", ">u4"),
        ("sequence", ">u8"),
        ("event_ts_ns", ">u8"),
        ("emit_ts_ns", ">u8"),
        ("confidence", ">f4"),
        ("price_target", ">f4"),
        ("stop_loss", ">f4"),
        ("position_size", ">f4"),
        ("risk_score", "u1"),
        ("urgency", "u1"),
        ("strategy_id", ">u2"),
        ("model_version", ">u2"),
        ("flags", ">u2"),
        ("context_version", ">u4"),
        ("crc32c", ">u4"),
    ]
)
"""Layout v1 as a numpy record (network byte order); ``SIGNAL_DTYPE.itemsize == 64``."""
assert SIGNAL_DTYPE.itemsize == SIGNAL_SIZE


def session_bytes(session: str) -> bytes:
    """A 10-byte MoldUDP64/SoupBinTCP session: ASCII, left-justified, space-padded on the right.

    (SoupBinTCP right-justifies the session inside its own fields; see :func:`soup_session`.)
    """
    raw = session.encode("ascii")
    if not raw or len(raw) > MOLD_SESSION_SIZE or not raw.isascii() or b" " in raw.strip():
        raise ValueError(
            f"session must be 1..10 ASCII characters without inner spaces: {session!r}"
        )
    if any(b < 0x21 or b > 0x7E for b in raw):
        raise ValueError(f"session must be printable ASCII: {session!r}")
    return raw.ljust(MOLD_SESSION_SIZE)


def _make_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE: Final = _make_table()


def _crc32c_py(data: bytes | memoryview) -> int:
    crc = 0xFFFFFFFF
    for b in bytes(data):
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _pick_crc32c() -> object:
    try:
        import crc32c as _ext  # the `crc32c` wheel (SSE4.2), a dev dependency

        return _ext.crc32c
    except ImportError:  # pragma: no cover - environments without the wheel
        return _crc32c_py


crc32c = _pick_crc32c()
"""CRC-32C (Castagnoli); ``crc32c(b"123456789") == 0xE3069283``."""


def check_signal(payload: bytes | memoryview) -> str | None:
    """Why ``payload`` is not a valid layout-v1 signal, or None when it is."""
    if len(payload) != SIGNAL_SIZE:
        return f"length {len(payload)} != 64"
    magic, version = struct.unpack_from(">HB", payload, 0)
    if magic != MAGIC:
        return f"bad magic 0x{magic:04x}"
    if version != LAYOUT_VERSION:
        return f"unknown layout version {version}"
    (stored,) = struct.unpack_from(">I", payload, 60)
    computed: int = crc32c(bytes(payload[:60]))  # type: ignore[operator]
    if stored != computed:
        return f"crc32c mismatch (stored 0x{stored:08x}, computed 0x{computed:08x})"
    return None
