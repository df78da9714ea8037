"""Slow reference decoder for Alpaca frames, written independently of the Cython parser.

It decodes a whole frame with orjson (or the ``msgpack`` package) and applies the documented schema
and drop policy (docs/parser.md) message by message in plain Python, producing the records the
parser must write. Only meaningful for frames that orjson/msgpack accept: the parser's handling of
syntactically broken frames (keep what came before, drop the rest) is tested separately.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import orjson

from relentless_fast._tickparse import DROP_REASONS, TickParser, TickRings
from relentless_fast.records import DTYPES, Kind

MAX_SYMBOL_BYTES = 15
INT64 = (-(2**63), 2**63 - 1)
EPOCH_ORDINAL = date(1970, 1, 1).toordinal()

KIND_OF_TYPE = {
    "t": Kind.TRADE,
    "q": Kind.QUOTE,
    "b": Kind.BAR,
    "u": Kind.BAR,
    "d": Kind.BAR,
    "c": Kind.CORRECTION,
    "x": Kind.CANCEL,
    "s": Kind.STATUS,
    "l": Kind.LULD,
    "i": Kind.IMBALANCE,
}
CONTROL_TYPES = ("success", "subscription", "error")

# (key, record field, type, required) in the order the checks run, after "S".
SCHEMA: dict[Kind, list[tuple[str, str, str, bool]]] = {
    Kind.TRADE: [
        ("t", "ts_ns", "ts", True),
        ("i", "trade_id", "id", True),
        ("p", "price", "price", True),
        ("s", "size", "size", True),
        ("c", "conditions", "conds", False),
        ("x", "exchange", "code", False),
        ("z", "tape", "code", False),
    ],
    Kind.QUOTE: [
        ("t", "ts_ns", "ts", True),
        ("bp", "bid_price", "price", True),
        ("ap", "ask_price", "price", True),
        ("bs", "bid_size", "size", True),
        ("as", "ask_size", "size", True),
        ("c", "conditions", "conds", False),
        ("bx", "bid_exchange", "code", False),
        ("ax", "ask_exchange", "code", False),
        ("z", "tape", "code", False),
    ],
    Kind.BAR: [
        ("t", "ts_ns", "ts", True),
        ("o", "open", "price", True),
        ("h", "high", "price", True),
        ("l", "low", "price", True),
        ("c", "close", "price", True),
        ("v", "volume", "size", True),
        ("vw", "vwap", "price_nan", False),
        ("n", "trade_count", "count", False),
    ],
    Kind.CORRECTION: [
        ("t", "ts_ns", "ts", True),
        ("oi", "orig_id", "id", True),
        ("op", "orig_price", "price", True),
        ("os", "orig_size", "size", True),
        ("ci", "corr_id", "id", True),
        ("cp", "corr_price", "price", True),
        ("cs", "corr_size", "size", True),
        ("x", "exchange", "code", False),
        ("z", "tape", "code", False),
    ],
    Kind.CANCEL: [
        ("t", "ts_ns", "ts", True),
        ("i", "trade_id", "id", True),
        ("p", "price", "price", True),
        ("s", "size", "size", True),
        ("x", "exchange", "code", False),
        ("a", "action", "code", False),
        ("z", "tape", "code", False),
    ],
    Kind.STATUS: [
        ("t", "ts_ns", "ts", True),
        ("sc", "status_code", "str4", True),
        ("rc", "reason_code", "str8", False),
        ("z", "tape", "code", False),
    ],
    Kind.LULD: [
        ("t", "ts_ns", "ts", True),
        ("u", "limit_up", "price", True),
        ("d", "limit_down", "price", True),
        ("i", "indicator", "code", False),
        ("z", "tape", "code", False),
    ],
    Kind.IMBALANCE: [
        ("t", "ts_ns", "ts", True),
        ("p", "price", "price", True),
        ("z", "tape", "code", False),
    ],
}

_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]{1,9}))?([Zz]|[+-][0-9]{2}:[0-9]{2})",
    re.ASCII,
)


class Drop(Exception):  # noqa: N818 - a control-flow signal, not an error
    def __init__(self, reason: str) -> None:
        self.reason = reason


def parse_rfc3339(text: str) -> int:
    """RFC 3339 (0-9 fractional digits, Z or numeric offset) to ns; ValueError when invalid or
    outside 1970-01-01 .. 2262-04-11 (int64 ns)."""
    m = _RFC3339.fullmatch(text)
    if not m:
        raise ValueError(text)
    y, mo, d, hh, mi, ss = (int(g) for g in m.groups()[:6])
    if hh > 23 or mi > 59 or ss > 59:
        raise ValueError(text)
    days = date(y, mo, d).toordinal() - EPOCH_ORDINAL  # ValueError for a bad month or day
    frac = int((m.group(7) or "").ljust(9, "0"))
    zone = m.group(8)
    offset = 0
    if zone not in ("Z", "z"):
        oh, om = int(zone[1:3]), int(zone[4:6])
        if oh > 23 or om > 59:
            raise ValueError(text)
        offset = (oh * 3600 + om * 60) * (1 if zone[0] == "+" else -1)
    ns = (days * 86400 + hh * 3600 + mi * 60 + ss - offset) * 10**9 + frac
    if not 0 <= ns <= INT64[1]:
        raise ValueError(text)
    return ns


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v: Any) -> float:
    if isinstance(v, float) or _is_int(v):
        return float(v)
    raise Drop("mistyped_field")


def _first_byte(s: str) -> int:
    raw = s.encode("utf-8")
    return raw[0] if raw else 0


def _convert(kind_type: str, value: Any) -> Any:  # noqa: C901 - one branch per field type
    if kind_type in ("price", "price_nan", "size"):
        x = _number(value)
        if not math.isfinite(x) or x < 0:
            raise Drop("bad_size" if kind_type == "size" else "bad_price")
        return x
    if kind_type == "ts":
        if isinstance(value, str):
            try:
                return parse_rfc3339(value)
            except ValueError:
                raise Drop("bad_timestamp") from None
        if hasattr(value, "seconds") and hasattr(value, "nanoseconds"):  # msgpack.Timestamp
            ns = value.seconds * 10**9 + value.nanoseconds
            if value.seconds < 0 or not 0 <= ns <= INT64[1]:
                raise Drop("bad_timestamp")
            return ns
        raise Drop("mistyped_field")
    if kind_type == "id":
        if _is_int(value) and INT64[0] <= value <= INT64[1]:
            return value
        raise Drop("mistyped_field")
    if kind_type == "count":
        if _is_int(value) and 0 <= value < 2**64:
            return value
        raise Drop("mistyped_field")
    if kind_type == "code":
        if not isinstance(value, str):
            raise Drop("mistyped_field")
        return _first_byte(value)
    if kind_type == "conds":
        if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
            raise Drop("mistyped_field")
        return bytes(_first_byte(c) for c in value[:4])
    if kind_type in ("str4", "str8"):
        if not isinstance(value, str):
            raise Drop("mistyped_field")
        return value.encode("utf-8")[: 4 if kind_type == "str4" else 8]
    raise AssertionError(kind_type)


@dataclass
class FrameResult:
    """What one frame must produce."""

    records: list[tuple[Kind, int, np.ndarray[Any, Any]]] = field(default_factory=list)
    touched: list[int] = field(default_factory=list)
    counts: list[int] = field(default_factory=lambda: [0] * len(Kind))
    drops: Counter[str] = field(default_factory=Counter)
    controls: list[Any] = field(default_factory=list)


class ReferenceDecoder:
    """Stateful like the parser: ``seq`` counts written records over all frames."""

    def __init__(self, symbols: list[str]) -> None:
        self.ids = {s.encode(): i for i, s in enumerate(symbols)}
        self.seq = 0

    def decode_json(self, frame: bytes) -> FrameResult:
        return self.messages(orjson.loads(frame))

    def decode_msgpack(self, frame: bytes) -> FrameResult:
        import msgpack

        return self.messages(msgpack.unpackb(frame, raw=False, strict_map_key=False))

    def messages(self, messages: Any) -> FrameResult:
        out = FrameResult()
        if not isinstance(messages, list):
            out.drops["malformed"] += 1
            return out
        for msg in messages:
            try:
                self._one(msg, out)
            except Drop as drop:
                out.drops[drop.reason] += 1
        return out

    def _one(self, msg: Any, out: FrameResult) -> None:
        if not isinstance(msg, dict):
            raise Drop("not_a_map")
        typ = msg.get("T")
        if typ is None:
            raise Drop("missing_field")
        if not isinstance(typ, str):
            raise Drop("mistyped_field")
        if typ in CONTROL_TYPES:
            out.controls.append(msg)
            return
        if typ not in KIND_OF_TYPE:
            raise Drop("unknown_type")
        kind = KIND_OF_TYPE[typ]
        sid = self._symbol_id(msg.get("S"))
        rec = np.zeros((), dtype=DTYPES[kind])
        for key, name, ftype, required in SCHEMA[kind]:
            value = msg.get(key)
            if value is None:
                if required:
                    raise Drop("missing_field")
                if ftype == "price_nan":
                    rec[name] = np.nan
                continue
            rec[name] = _convert(ftype, value)
        self.seq += 1
        rec["seq"] = self.seq
        if kind == Kind.BAR:
            rec["bar_type"] = ord(typ)
        out.records.append((kind, sid, rec))
        out.counts[kind] += 1
        if sid not in out.touched:
            out.touched.append(sid)

    def _symbol_id(self, sym: Any) -> int:
        if sym is None:
            raise Drop("missing_field")
        if not isinstance(sym, str):
            raise Drop("mistyped_field")
        raw = sym.encode("utf-8")
        if len(raw) > MAX_SYMBOL_BYTES:
            raise Drop("overlong_symbol")
        if raw not in self.ids:
            raise Drop("unknown_symbol")
        return self.ids[raw]


class Pair:
    """A parser over roomy rings and the reference decoder, fed the same frames."""

    def __init__(self, symbols: list[str], capacity: int = 4096) -> None:
        self.symbols = symbols
        self.rings = TickRings(len(symbols), capacity)
        self.parser = TickParser(symbols, self.rings)
        self.ref = ReferenceDecoder(symbols)

    def feed(self, frame: bytes, *, msgpack: bool = False) -> FrameResult:
        """Parse ``frame`` with both and assert they agree on everything the frame produced."""
        drops_before = self.parser.drop_counts.copy()
        if msgpack:
            n = self.parser.parse_msgpack(frame)
            expected = self.ref.decode_msgpack(frame)
        else:
            n = self.parser.parse_json(frame)
            expected = self.ref.decode_json(frame)
        assert self.parser.touched[:n].tolist() == expected.touched
        assert self.parser.frame_counts.tolist() == expected.counts
        delta = self.parser.drop_counts - drops_before
        got = Counter({DROP_REASONS[j]: int(c) for j, c in enumerate(delta) if c})
        assert got == expected.drops
        assert self.parser.take_controls() == expected.controls
        assert self.parser.seq == self.ref.seq
        by_slot: dict[tuple[Kind, int], list[np.ndarray[Any, Any]]] = defaultdict(list)
        for kind, sid, rec in expected.records:
            by_slot[(kind, sid)].append(rec)
        for (kind, sid), recs in by_slot.items():
            view = self.rings.last(kind, sid, len(recs))
            want = np.array(recs, dtype=view.dtype)
            assert view.tobytes() == want.tobytes(), (kind, sid, view, want)
        return expected
