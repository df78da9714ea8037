"""A seeded generator of Alpaca market-data v2 stream messages and frames (JSON and msgpack).

Messages are plain dicts with the keys of the real stream (``T`` first, as the Go SDK expects in
msgpack mode); the timestamp ``t`` is held as int ns since the epoch. ``json_frame`` renders it as
RFC 3339 with trailing zeros trimmed (0 to 9 fractional digits, as Alpaca sends), ``msgpack_frame``
as the msgpack Timestamp extension (type -1, the smallest of its three forms). The same seed always
gives the same stream. The msgpack encoder is self-contained: the demo needs no msgpack package.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

Message = dict[str, Any]

DEFAULT_MIX: Mapping[str, float] = {"t": 0.45, "q": 0.55}
"""Trades and quotes only: the mix of the parse benchmark."""

ALL_KINDS_MIX: Mapping[str, float] = {
    "t": 0.30, "q": 0.35, "b": 0.04, "u": 0.02, "d": 0.02, "c": 0.05,
    "x": 0.05, "s": 0.05, "l": 0.06, "i": 0.06,
}  # fmt: skip
"""Every data message type of the stream."""

_EXCHANGES = "ABCDHIJKLMNPQSTUVWXYZ"
_CONDITIONS = ("@", "F", "T", "I", "R", " ", "7", "Z", "U", "4")
_STATUS = (
    ("H", "Trading Halt", "T12"),
    ("T", "Trading Resumption", "T1"),
    ("Q", "Quotation Resumption", "LUDP"),
    ("P", "Volatility Trading Pause", "LUDP"),
)
_START_NS = 1_721_807_400_000_000_000  # 2024-07-24T07:50:00Z


def format_rfc3339(ts_ns: int) -> str:
    """``ts_ns`` as ``YYYY-MM-DDTHH:MM:SS[.fffffffff]Z``, trailing zeros of the fraction trimmed."""
    sec, frac = divmod(ts_ns, 1_000_000_000)
    text = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"


@dataclass
class SyntheticFeed:
    """Seeded random-walk trades, quotes and the other message types over ``symbols``.

    ``mix`` maps a message type (``"t"``, ``"q"``, ``"b"``, ...) to its relative weight.
    """

    symbols: Sequence[str]
    seed: int = 0
    mix: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    start_ns: int = _START_NS

    def __post_init__(self) -> None:
        if not self.symbols:
            raise ValueError("SyntheticFeed needs at least one symbol")
        self._rng = random.Random(self.seed)
        self._types = list(self.mix)
        self._weights = [float(self.mix[k]) for k in self._types]
        self._mid = {s: 10.0 + self._rng.random() * 490.0 for s in self.symbols}
        self._clock = self.start_ns
        self._trade_id = 0

    # -- messages ---------------------------------------------------------------------------------

    def messages(self, n: int) -> list[Message]:
        """The next ``n`` messages of the stream."""
        return [self._message() for _ in range(n)]

    def frames(self, n_frames: int, min_size: int = 1, max_size: int = 50) -> list[list[Message]]:
        """The next ``n_frames`` frames of ``min_size..max_size`` messages each."""
        return [self.messages(self._rng.randint(min_size, max_size)) for _ in range(n_frames)]

    def iter_frames(self, min_size: int = 1, max_size: int = 50) -> Iterator[list[Message]]:
        """An endless stream of frames."""
        while True:
            yield self.messages(self._rng.randint(min_size, max_size))

    # -- encodings --------------------------------------------------------------------------------

    @staticmethod
    def json_frame(messages: Sequence[Message]) -> bytes:
        """One JSON frame (compact, as the server sends it), ``t`` as RFC 3339."""
        return orjson.dumps([_with_text_ts(m) for m in messages])

    @staticmethod
    def msgpack_frame(messages: Sequence[Message]) -> bytes:
        """One msgpack frame, ``t`` as the Timestamp extension."""
        return msgpack_dumps([_with_ext_ts(m) for m in messages])

    # -- internals --------------------------------------------------------------------------------

    def _message(self) -> Message:
        rng = self._rng
        kind = rng.choices(self._types, self._weights)[0]
        sym = self.symbols[rng.randrange(len(self.symbols))]
        self._clock += rng.choice((0, 1_000, 250_000, 1_000_000, 17_123_456, 500_000_000))
        # timestamps with 0..9 significant fractional digits, as on the wire
        ts = self._clock - self._clock % 10 ** rng.randint(0, 9)
        mid = self._mid[sym] = max(0.05, self._mid[sym] * (1.0 + rng.gauss(0.0, 0.0005)))
        if kind not in _BUILDERS:
            raise ValueError(f"unknown message type {kind!r} in mix")
        return _BUILDERS[kind](self, sym, ts, mid)

    def _px(self, value: float) -> float:
        return round(value, 4 if value < 1.0 else 2)

    def _code(self) -> str:
        return self._rng.choice(_EXCHANGES)

    def _conds(self) -> list[str]:
        return self._rng.sample(_CONDITIONS, self._rng.randint(0, 5))

    def _tape(self) -> str:
        return self._rng.choice("ABC")

    def _trade(self, sym: str, ts: int, mid: float) -> Message:
        self._trade_id += 1
        return {"T": "t", "S": sym, "i": self._trade_id, "x": self._code(),
                "p": self._px(mid * (1.0 + self._rng.uniform(-2e-4, 2e-4))),
                "s": self._rng.choice((1, 3, 10, 100, 200, 500, 7_000)),
                "c": self._conds(), "z": self._tape(), "t": ts}  # fmt: skip

    def _quote(self, sym: str, ts: int, mid: float) -> Message:
        half = max(0.005, mid * self._rng.uniform(1e-5, 5e-4))
        return {"T": "q", "S": sym, "bx": self._code(), "bp": self._px(mid - half),
                "bs": self._rng.randint(0, 50), "ax": self._code(), "ap": self._px(mid + half),
                "as": self._rng.randint(1, 50), "c": ["R"], "z": self._tape(), "t": ts}  # fmt: skip

    def _bar(self, kind: str, sym: str, ts: int, mid: float) -> Message:
        msg: Message = {
            "T": kind,
            "S": sym,
            "o": self._px(mid * 0.999),
            "h": self._px(mid * 1.002),
            "l": self._px(mid * 0.998),
            "c": self._px(mid),
            "v": self._rng.randint(1, 1_000_000),
            "t": ts - ts % 60_000_000_000,
        }
        if self._rng.random() < 0.8:  # "n" and "vw" are absent from some documented bars
            msg["n"] = self._rng.randint(1, 5_000)
            msg["vw"] = self._px(mid * 1.0001)
        return msg

    def _correction(self, sym: str, ts: int, mid: float) -> Message:
        oid = self._rng.randint(1, 10**14)
        return {"T": "c", "S": sym, "x": self._code(), "oi": oid, "op": self._px(mid),
                "os": self._rng.randint(1, 10**6), "oc": self._conds(), "ci": oid + 1,
                "cp": self._px(mid * 1.001), "cs": self._rng.randint(1, 10**6),
                "cc": self._conds(), "z": self._tape(), "t": ts}  # fmt: skip

    def _cancel(self, sym: str, ts: int, mid: float) -> Message:
        return {"T": "x", "S": sym, "i": self._rng.randint(1, 10**6), "x": self._code(),
                "p": self._px(mid), "s": self._rng.randint(1, 1000),
                "a": self._rng.choice("CE"), "z": self._tape(), "t": ts}  # fmt: skip

    def _status(self, sym: str, ts: int, mid: float) -> Message:
        sc, sm, rc = self._rng.choice(_STATUS)
        return {"T": "s", "S": sym, "sc": sc, "sm": sm, "rc": rc, "rm": sm + " (synthetic)",
                "t": ts, "z": self._tape()}  # fmt: skip

    def _luld(self, sym: str, ts: int, mid: float) -> Message:
        return {"T": "l", "S": sym, "u": self._px(mid * 1.05), "d": self._px(mid * 0.95),
                "i": self._rng.choice("ABC"), "t": ts, "z": self._tape()}  # fmt: skip

    def _imbalance(self, sym: str, ts: int, mid: float) -> Message:
        return {"T": "i", "S": sym, "p": self._px(mid), "z": self._tape(), "t": ts}


_Builder = Callable[[SyntheticFeed, str, int, float], Message]
_BUILDERS: dict[str, _Builder] = {
    "t": SyntheticFeed._trade,
    "q": SyntheticFeed._quote,
    "b": lambda feed, sym, ts, mid: feed._bar("b", sym, ts, mid),
    "u": lambda feed, sym, ts, mid: feed._bar("u", sym, ts, mid),
    "d": lambda feed, sym, ts, mid: feed._bar("d", sym, ts, mid),
    "c": SyntheticFeed._correction,
    "x": SyntheticFeed._cancel,
    "s": SyntheticFeed._status,
    "l": SyntheticFeed._luld,
    "i": SyntheticFeed._imbalance,
}


def _with_text_ts(msg: Message) -> Message:
    out = dict(msg)
    out["t"] = format_rfc3339(msg["t"])
    return out


class _Timestamp:
    __slots__ = ("ns",)

    def __init__(self, ns: int) -> None:
        self.ns = ns


def _with_ext_ts(msg: Message) -> Message:
    out = dict(msg)
    out["t"] = _Timestamp(msg["t"])
    return out


def msgpack_dumps(obj: Any) -> bytes:
    """Encode dicts, lists, str, int, float (as float64), bool and None in msgpack; an object
    with an ``ns`` attribute (the internal timestamp holder) becomes a Timestamp extension."""
    out = bytearray()
    _pack(obj, out)
    return bytes(out)


def _pack(obj: Any, out: bytearray) -> None:  # noqa: C901 - one branch per msgpack type
    if obj is None:
        out.append(0xC0)
    elif obj is True or obj is False:
        out.append(0xC3 if obj else 0xC2)
    elif isinstance(obj, int):
        _pack_int(obj, out)
    elif isinstance(obj, float):
        out += b"\xcb" + struct.pack(">d", obj)
    elif isinstance(obj, str):
        raw = obj.encode("utf-8")
        n = len(raw)
        if n < 32:
            out.append(0xA0 | n)
        elif n < 256:
            out += bytes((0xD9, n))
        elif n < 65536:
            out += b"\xda" + struct.pack(">H", n)
        else:
            out += b"\xdb" + struct.pack(">I", n)
        out += raw
    elif isinstance(obj, (list, tuple)):
        _pack_len(len(obj), 0x90, 0xDC, out)
        for item in obj:
            _pack(item, out)
    elif isinstance(obj, dict):
        _pack_len(len(obj), 0x80, 0xDE, out)
        for key, value in obj.items():
            _pack(key, out)
            _pack(value, out)
    elif isinstance(obj, _Timestamp):
        _pack_timestamp(obj.ns, out)
    else:
        raise TypeError(f"cannot msgpack {type(obj).__name__}")


def _pack_len(n: int, fix: int, code16: int, out: bytearray) -> None:
    if n < 16:
        out.append(fix | n)
    elif n < 65536:
        out += bytes((code16,)) + struct.pack(">H", n)
    else:
        out += bytes((code16 + 1,)) + struct.pack(">I", n)


def _pack_int(v: int, out: bytearray) -> None:
    if 0 <= v < 128:
        out.append(v)
    elif -32 <= v < 0:
        out += struct.pack(">b", v)
    elif v >= 0:
        for code, fmt, lim in ((0xCC, ">B", 1 << 8), (0xCD, ">H", 1 << 16), (0xCE, ">I", 1 << 32)):
            if v < lim:
                out += bytes((code,)) + struct.pack(fmt, v)
                return
        out += b"\xcf" + struct.pack(">Q", v)
    else:
        for code, fmt, lim in ((0xD0, ">b", 1 << 7), (0xD1, ">h", 1 << 15), (0xD2, ">i", 1 << 31)):
            if v >= -lim:
                out += bytes((code,)) + struct.pack(fmt, v)
                return
        out += b"\xd3" + struct.pack(">q", v)


def _pack_timestamp(ns: int, out: bytearray) -> None:
    sec, nsec = divmod(ns, 1_000_000_000)
    if nsec == 0 and 0 <= sec < 1 << 32:
        out += b"\xd6\xff" + struct.pack(">I", sec)
    elif 0 <= sec < 1 << 34:
        out += b"\xd7\xff" + struct.pack(">Q", (nsec << 34) | sec)
    else:
        out += b"\xc7\x0c\xff" + struct.pack(">Iq", nsec, sec)
