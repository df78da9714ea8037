"""Test doubles for the feature kernel's input: rings, random tick streams and two feeds.

- :class:`FakeRings`: a pure-numpy rings object with the contract of
  ``relentless_fast._tickparse.TickRings`` (``data``/``heads``/``capacity``, mirrored layout).
- :func:`random_stream`: a random multi-symbol stream of trades, quotes, corrections and cancels
  (crossing days and a DST change) as plain event tuples.
- :class:`FakeFeed` writes events straight into a :class:`FakeRings`; :class:`TickParseFeed` encodes
  them as Alpaca JSON frames and runs the real parser into real ``TickRings``.
"""

from __future__ import annotations

import importlib
import importlib.util
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from relentless_fast.records import DTYPES, N_KINDS, Kind

Event = tuple[Kind, int, dict[str, Any]]
"""(kind, symbol id, record fields other than ``seq``)."""


class FakeRings:
    """Mirrored per-kind rings: record j of symbol s at ``[s, j % cap]`` and ``[s, j % cap + cap]``.

    Same contract as ``TickRings``: ``seq`` is assigned on write, heads count every record.
    """

    def __init__(self, n_symbols: int, capacity: int | dict[Kind, int] = 64) -> None:
        self.n_symbols = n_symbols
        self._cap = [
            int(capacity.get(k, 64)) if isinstance(capacity, dict) else int(capacity) for k in Kind
        ]
        self._data = [np.zeros((n_symbols, 2 * self._cap[k]), dtype=DTYPES[k]) for k in Kind]
        self._heads = [np.zeros(n_symbols, dtype=np.uint64) for _ in Kind]
        self.seq = 0

    def data(self, kind: int) -> npt.NDArray[np.void]:
        return self._data[int(kind)]

    def heads(self, kind: int) -> npt.NDArray[np.uint64]:
        return self._heads[int(kind)]

    def capacity(self, kind: int) -> int:
        return self._cap[int(kind)]

    def write(self, kind: Kind, sid: int, fields: dict[str, Any]) -> None:
        """Append one record (its ``seq`` is the next arrival number)."""
        self.seq += 1
        cap = self._cap[kind]
        head = int(self._heads[kind][sid])
        rec = np.zeros((), dtype=DTYPES[kind])
        for name, value in fields.items():
            rec[name] = value
        rec["seq"] = self.seq
        self._data[kind][sid, head % cap] = rec
        self._data[kind][sid, head % cap + cap] = rec
        self._heads[kind][sid] = head + 1


class FakeFeed:
    """Writes events straight into :class:`FakeRings`; returns touched ids per frame."""

    name = "fake"

    def __init__(self, n_symbols: int, capacity: int | dict[Kind, int] = 64) -> None:
        self.rings = FakeRings(n_symbols, capacity)
        self.touched = np.zeros(n_symbols, dtype=np.uint32)  # reused per frame, like the parser's

    def push(self, events: list[Event]) -> tuple[npt.NDArray[np.uint32], int]:
        touched: dict[int, None] = {}
        for kind, sid, fields in events:
            self.rings.write(kind, sid, fields)
            touched[sid] = None
        self.touched[: len(touched)] = list(touched)
        return self.touched, len(touched)


def _rfc3339(ts_ns: int) -> str:
    sec, frac = divmod(ts_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac:09d}Z"


def alpaca_message(kind: Kind, symbol: str, f: dict[str, Any]) -> dict[str, Any]:
    """The Alpaca v2 stream message that carries the record ``f``."""
    t = _rfc3339(int(f["ts_ns"]))
    if kind is Kind.TRADE:
        return {"T": "t", "S": symbol, "i": f["trade_id"], "x": "V", "p": f["price"],
                "s": f["size"], "c": ["@"], "z": "C", "t": t}  # fmt: skip
    if kind is Kind.QUOTE:
        return {"T": "q", "S": symbol, "bx": "V", "bp": f["bid_price"], "bs": f["bid_size"],
                "ax": "V", "ap": f["ask_price"], "as": f["ask_size"], "c": ["R"], "z": "C",
                "t": t}  # fmt: skip
    if kind is Kind.CORRECTION:
        return {"T": "c", "S": symbol, "x": "V", "oi": f["orig_id"], "op": f["orig_price"],
                "os": f["orig_size"], "oc": ["@"], "ci": f["corr_id"], "cp": f["corr_price"],
                "cs": f["corr_size"], "cc": ["@"], "z": "C", "t": t}  # fmt: skip
    if kind is Kind.CANCEL:
        return {"T": "x", "S": symbol, "i": f["trade_id"], "x": "V", "p": f["price"],
                "s": f["size"], "a": "C", "z": "C", "t": t}  # fmt: skip
    if kind is Kind.BAR:
        msg = {"T": chr(int(f["bar_type"])), "S": symbol, "o": float(f["open"]),
               "h": float(f["high"]), "l": float(f["low"]), "c": float(f["close"]),
               "v": float(f["volume"]), "n": int(f["trade_count"]), "t": t}  # fmt: skip
        if np.isfinite(f["vwap"]):  # absent "vw" is stored as NaN
            msg["vw"] = float(f["vwap"])
        return msg
    raise ValueError(kind)


class TickParseFeed:
    """Encodes events as Alpaca JSON frames and parses them into real ``TickRings``."""

    name = "tickparse"

    def __init__(self, n_symbols: int, capacity: int | dict[Kind, int] = 64) -> None:
        import orjson

        tickparse: Any = importlib.import_module("relentless_fast._tickparse")
        self._dumps = orjson.dumps
        self.symbols = [f"S{i}" for i in range(n_symbols)]
        self.rings = tickparse.TickRings(n_symbols, capacity)
        self.parser = tickparse.TickParser(self.symbols, self.rings)

    def push(self, events: list[Event]) -> tuple[npt.NDArray[np.uint32], int]:
        frame = self._dumps([alpaca_message(k, self.symbols[s], f) for k, s, f in events])
        n = int(self.parser.parse_json(frame))
        return np.asarray(self.parser.touched), n


def tickparse_available() -> bool:
    return importlib.util.find_spec("relentless_fast._tickparse") is not None


@dataclass
class _SymGen:
    price: float
    trades: list[tuple[int, float, float]] = field(default_factory=list)  # (id, price, size)


# 2024-03-08 14:30 UTC: 09:30 EST, two days before the US switch to EDT.
STREAM_START_NS = 1_709_908_200_000_000_000


def random_stream(
    rng: np.random.Generator,
    n_symbols: int,
    n_events: int,
    *,
    start_ns: int = STREAM_START_NS,
    kinds_p: tuple[float, float, float, float] = (0.6, 0.3, 0.05, 0.05),
    mean_gap_s: float = 400.0,
) -> list[Event]:
    """Random trades/quotes/corrections/cancels; with the default gap it spans several days."""
    syms = [_SymGen(price=float(rng.uniform(5, 500))) for _ in range(n_symbols)]
    ts = start_ns
    next_id = 1
    out: list[Event] = []
    kinds = (Kind.TRADE, Kind.QUOTE, Kind.CORRECTION, Kind.CANCEL)
    for _ in range(n_events):
        ts += int(rng.exponential(mean_gap_s) * 1e9) + int(rng.integers(0, 1000))
        sid = int(rng.integers(n_symbols))
        g = syms[sid]
        kind = kinds[int(rng.choice(4, p=kinds_p))]
        if kind in (Kind.CORRECTION, Kind.CANCEL) and not g.trades:
            kind = Kind.TRADE
        if kind is Kind.TRADE:
            g.price = round(max(g.price * float(np.exp(rng.normal(0, 0.002))), 0.01), 4)
            size = (
                float(rng.integers(1, 500))
                if rng.random() < 0.95
                else float(rng.integers(1000, 50000))
            )
            g.trades.append((next_id, g.price, size))
            out.append(
                (kind, sid, {"ts_ns": ts, "trade_id": next_id, "price": g.price, "size": size})
            )
            next_id += 1
        elif kind is Kind.QUOTE:
            half = g.price * float(rng.uniform(0.0001, 0.002))
            bid = round(g.price - half, 4) if rng.random() < 0.97 else 0.0
            out.append((kind, sid, {
                "ts_ns": ts, "bid_price": bid, "ask_price": round(g.price + half, 4),
                "bid_size": float(rng.integers(0, 20)), "ask_size": float(rng.integers(0, 20)),
            }))  # fmt: skip
        else:
            tid, price, size = g.trades[int(rng.integers(len(g.trades)))]
            if kind is Kind.CORRECTION:
                new_size = float(rng.integers(1, 500))
                out.append((kind, sid, {
                    "ts_ns": ts, "orig_id": tid, "orig_price": price, "orig_size": size,
                    "corr_id": next_id, "corr_price": round(price * 1.001, 4),
                    "corr_size": new_size,
                }))  # fmt: skip
                next_id += 1
            else:
                out.append(
                    (kind, sid, {"ts_ns": ts, "trade_id": tid, "price": price, "size": size})
                )
    return out


def split_frames(rng: np.random.Generator, events: list[Event], max_len: int) -> list[list[Event]]:
    """Cut ``events`` into consecutive frames of 1..max_len events."""
    frames: list[list[Event]] = []
    i = 0
    while i < len(events):
        n = int(rng.integers(1, max_len + 1))
        frames.append(events[i : i + n])
        i += n
    return frames


def all_kinds_counts(rings: Any) -> list[int]:
    """Records written per kind (sum of heads)."""
    return [int(np.sum(rings.heads(k))) for k in range(N_KINDS)]
