"""Slow, obviously-correct reference for feature schema v1 (tests and the benchmark baseline).

One Python object per symbol, one Python call per record, plain float64 arithmetic and numpy for the
windowed parts (returns, realised volatility). It reads the same rings as the kernel through the
public rings API (``data``, ``heads``, ``capacity``), merges the kinds of a symbol by ``seq`` with
numpy, and keeps the full log-price history of every symbol in a list. See
:mod:`relentless_fast.features.schema` for the definitions it implements.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from relentless_fast.features import clock
from relentless_fast.features import schema as sc
from relentless_fast.records import N_KINDS, Kind

_DAY_NS = 86_400 * 1_000_000_000
_A_FAST = 2.0 / (sc.EMA_FAST_SPAN + 1)
_A_SLOW = 2.0 / (sc.EMA_SLOW_SPAN + 1)
_A_SIG = 2.0 / (sc.MACD_SIGNAL_SPAN + 1)
_A_SIZE = 2.0 / (sc.SIZE_EW_SPAN + 1)
_TICK_KINDS = (Kind.TRADE, Kind.QUOTE, Kind.CORRECTION, Kind.CANCEL)


class RingsLike(Protocol):
    """The read side of the tick rings that features need."""

    def data(self, kind: int) -> npt.NDArray[np.void]: ...
    def heads(self, kind: int) -> npt.NDArray[np.uint64]: ...
    def capacity(self, kind: int) -> int: ...


class SymbolState:
    """Everything the features of one symbol depend on."""

    def __init__(self) -> None:
        self.lp: list[float] = []  # log prices of every price event
        self.last_price = 0.0
        self.ema_f = self.ema_s = self.signal = 0.0
        self.gain = self.loss = 0.0
        self.n_changes = 0
        self.session_day: int | None = None
        self.vwap_num = self.vwap_den = self.volume = 0.0
        self.trades = 0
        self.size_mean = self.size_var = 0.0
        self.n_sizes = 0
        self.size_z = 0.0
        self.rate = 0.0
        self.last_event_ts: int | None = None
        self.quote: tuple[float, float, float, float] | None = None
        self.clock_ts: int | None = None  # last trade/quote/bar timestamp


class ReferenceFeatures:
    """Reference for :class:`relentless_fast._features.FeatureKernel` (same public surface)."""

    def __init__(
        self,
        rings: RingsLike | None,
        n_symbols: int,
        *,
        bars: bool = False,
        rate_tau_s: float = sc.RATE_TAU_S,
        tz: str = sc.SESSION_TZ,
    ) -> None:
        self.n_symbols = n_symbols
        self.bars = bars
        self.tau = float(rate_tau_s)
        self.tz = tz
        self._rings = rings
        self._tz_table = clock.offset_table(tz)
        self.features = np.tile(np.asarray(sc.NEUTRAL_VALUES, np.float32), (n_symbols, 1))
        self.states = [SymbolState() for _ in range(n_symbols)]
        self.cursors = np.zeros((N_KINDS, n_symbols), dtype=np.uint64)
        self.lost = np.zeros(N_KINDS, dtype=np.uint64)
        self.counts: dict[str, int] = {
            "bad_symbol_id": 0,
            "bad_record": 0,
            "adjust_unapplied": 0,
            "bar_updates_skipped": 0,
        }

    # -- clock -------------------------------------------------------------------------------
    def _local_ns(self, ts_ns: int) -> int:
        return ts_ns + clock.utc_offset_ns(ts_ns, *self._tz_table)

    def _day(self, ts_ns: int) -> int:
        return self._local_ns(ts_ns) // _DAY_NS

    # -- events ------------------------------------------------------------------------------
    def price_event(
        self, st: SymbolState, ts: int, price: float, size: float, count: int, vw_price: float
    ) -> None:
        """Apply one trade (count 1) or bar to ``st``."""
        if not (math.isfinite(price) and price > 0 and math.isfinite(size) and size >= 0):
            self.counts["bad_record"] += 1
            return
        day = self._day(ts)
        if st.session_day != day:
            st.session_day = day
            st.vwap_num = st.vwap_den = st.volume = 0.0
            st.trades = 0
        st.vwap_num += vw_price * size
        st.vwap_den += size
        st.volume += size
        st.trades += count
        if st.lp:
            change = price - st.last_price
            gain, loss = max(change, 0.0), max(-change, 0.0)
            if st.n_changes == 0:
                st.gain, st.loss = gain, loss
            else:
                st.gain += (gain - st.gain) / sc.RSI_PERIOD
                st.loss += (loss - st.loss) / sc.RSI_PERIOD
            st.n_changes += 1
            st.ema_f += _A_FAST * (price - st.ema_f)
            st.ema_s += _A_SLOW * (price - st.ema_s)
            st.signal += _A_SIG * ((st.ema_f - st.ema_s) - st.signal)
        else:
            st.ema_f = st.ema_s = price
            st.signal = 0.0
        st.lp.append(math.log(price))
        x = math.log1p(size)
        st.size_z = 0.0
        if st.n_sizes >= 2 and st.size_var > 0:
            z = (x - st.size_mean) / math.sqrt(st.size_var)
            st.size_z = min(max(z, -sc.SIZE_Z_CLIP), sc.SIZE_Z_CLIP)
        if st.n_sizes == 0:
            st.size_mean, st.size_var = x, 0.0
        else:
            diff = x - st.size_mean
            incr = _A_SIZE * diff
            st.size_mean += incr
            st.size_var = (1.0 - _A_SIZE) * (st.size_var + diff * incr)
        st.n_sizes += 1
        if st.last_event_ts is None:
            st.rate = count / self.tau
            st.last_event_ts = ts
        else:
            dt_s = max(ts - st.last_event_ts, 0) / 1e9
            st.rate = st.rate * math.exp(-dt_s / self.tau) + count / self.tau
            st.last_event_ts = max(st.last_event_ts, ts)
        st.last_price = price
        st.clock_ts = ts

    def quote_event(self, st: SymbolState, rec: Any) -> None:
        bid, ask = float(rec["bid_price"]), float(rec["ask_price"])
        ok = math.isfinite(bid) and math.isfinite(ask) and bid > 0 and ask > 0
        st.quote = (bid, ask, float(rec["bid_size"]), float(rec["ask_size"])) if ok else None
        st.clock_ts = int(rec["ts_ns"])

    def adjust(self, st: SymbolState, ts: int, d_num: float, d_size: float, d_trades: int) -> None:
        """Apply a correction/cancel to the session aggregates."""
        if st.session_day is None or self._day(ts) != st.session_day:
            self.counts["adjust_unapplied"] += 1
            return
        st.vwap_num += d_num
        st.vwap_den += d_size
        if st.vwap_den <= 0:
            st.vwap_num = st.vwap_den = 0.0
        st.volume = max(st.volume + d_size, 0.0)
        st.trades = max(st.trades + d_trades, 0)

    # -- rows --------------------------------------------------------------------------------
    def row(self, st: SymbolState) -> npt.NDArray[np.float32]:
        """The feature row of a state, float64 math, float32 result."""
        out = np.asarray(sc.NEUTRAL_VALUES, dtype=np.float64)
        ix = sc.FEATURE_INDEX
        lp = np.asarray(st.lp, dtype=np.float64)
        n = len(lp)
        p = st.last_price
        for name, k in zip(("ret_1", "ret_10", "ret_100"), sc.RETURN_HORIZONS, strict=True):
            if n > k:
                out[ix[name]] = lp[-1] - lp[-1 - k]
        if n:
            macd = st.ema_f - st.ema_s
            out[ix["ema_fast_dist"]] = st.ema_f / p - 1.0
            out[ix["ema_slow_dist"]] = st.ema_s / p - 1.0
            out[ix["macd"]] = macd / p
            out[ix["macd_signal"]] = st.signal / p
            out[ix["macd_hist"]] = (macd - st.signal) / p
            if st.vwap_den > 0 and st.vwap_num > 0:
                out[ix["vwap_dist"]] = p / (st.vwap_num / st.vwap_den) - 1.0
        if st.n_changes and st.gain + st.loss > 0:
            out[ix["rsi_14"]] = st.gain / (st.gain + st.loss)
        if st.quote is not None:
            bid, ask, bs, asz = st.quote
            out[ix["spread_bps"]] = (ask - bid) / ((ask + bid) / 2.0) * 1e4
            if bs + asz > 0:
                out[ix["book_imbalance"]] = (bs - asz) / (bs + asz)
            out[ix["has_quote"]] = 1.0
        if n >= 2:
            r = np.diff(lp[-(sc.REALIZED_VOL_WINDOW + 1) :])
            out[ix["realized_vol_20"]] = math.sqrt(float(np.sum(r * r)))
        out[ix["trade_rate_log"]] = math.log1p(st.rate)
        out[ix["size_z"]] = st.size_z
        out[ix["session_volume_log"]] = math.log1p(st.volume)
        out[ix["session_trades_log"]] = math.log1p(st.trades)
        if st.clock_ts is not None:
            minutes = (self._local_ns(st.clock_ts) % _DAY_NS) / 60e9
            out[ix["time_of_day"]] = (minutes - sc.SESSION_OPEN_MINUTES) / sc.SESSION_LENGTH_MINUTES
        out[ix["history_frac"]] = min(n, sc.HISTORY_FULL) / sc.HISTORY_FULL
        return out.astype(np.float32)

    def reset(self, symbol_id: int) -> None:
        """Forget a symbol's state; records already in the rings are skipped."""
        self.states[symbol_id] = SymbolState()
        if self._rings is not None:
            for kind in (Kind.BAR,) if self.bars else _TICK_KINDS:
                self.cursors[kind, symbol_id] = self._rings.heads(kind)[symbol_id]
        self.features[symbol_id] = sc.NEUTRAL_VALUES

    # -- ring consumption --------------------------------------------------------------------
    def _new_records(self, kind: Kind, sid: int) -> npt.NDArray[np.void]:
        assert self._rings is not None
        head = int(self._rings.heads(kind)[sid])
        cap = int(self._rings.capacity(kind))
        cur = int(self.cursors[kind, sid])
        if head < cur:  # ring restarted: resync
            cur = head
        if head - cur > cap:
            self.lost[kind] += head - cur - cap
            cur = head - cap
        self.cursors[kind, sid] = head
        data = self._rings.data(kind)
        # The mirror half makes any window of <= cap records contiguous.
        return data[sid, cur % cap : cur % cap + (head - cur)]

    def update(self, touched_ids: npt.NDArray[np.uint32], n: int) -> int:
        """Consume the new records of the first ``n`` touched symbols; return records consumed."""
        consumed = 0
        for sid in np.asarray(touched_ids[:n], dtype=np.int64).tolist():
            if not 0 <= sid < self.n_symbols:
                self.counts["bad_symbol_id"] += 1
                continue
            consumed += self._update_symbol(sid)
        return consumed

    def _update_symbol(self, sid: int) -> int:
        st = self.states[sid]
        if self.bars:
            recs = self._new_records(Kind.BAR, sid)
            for rec in recs:
                if rec["bar_type"] == ord("u"):
                    self.counts["bar_updates_skipped"] += 1
                    continue
                self._bar_record(st, rec)
            self.features[sid] = self.row(st)
            return len(recs)
        parts = [(kind, self._new_records(kind, sid)) for kind in _TICK_KINDS]
        seqs = np.concatenate([p["seq"] for _, p in parts])
        kinds = np.concatenate([np.full(len(p), int(k)) for k, p in parts])
        rows = np.concatenate([np.arange(len(p)) for _, p in parts])
        by_kind = dict(parts)
        for i in np.argsort(seqs, kind="stable"):
            kind, rec = Kind(int(kinds[i])), by_kind[Kind(int(kinds[i]))][rows[i]]
            ts = int(rec["ts_ns"])
            if kind is Kind.TRADE:
                p, s = float(rec["price"]), float(rec["size"])
                self.price_event(st, ts, p, s, 1, p)
            elif kind is Kind.QUOTE:
                self.quote_event(st, rec)
            elif kind is Kind.CORRECTION:
                op, os_, cp, cs = (
                    float(rec[f]) for f in ("orig_price", "orig_size", "corr_price", "corr_size")
                )
                self.adjust(st, ts, cp * cs - op * os_, cs - os_, 0)
            else:
                p, s = float(rec["price"]), float(rec["size"])
                self.adjust(st, ts, -(p * s), -s, -1)
        self.features[sid] = self.row(st)
        return len(seqs)

    def _bar_record(self, st: SymbolState, rec: Any) -> None:
        self._bar(
            st,
            int(rec["ts_ns"]),
            float(rec["high"]),
            float(rec["low"]),
            float(rec["close"]),
            float(rec["volume"]),
            float(rec["vwap"]),
            int(rec["trade_count"]),
        )

    def _bar(
        self,
        st: SymbolState,
        ts: int,
        high: float,
        low: float,
        close: float,
        volume: float,
        vwap: float,
        trade_count: int,
    ) -> None:
        vw = vwap if math.isfinite(vwap) and vwap > 0 else (high + low + close) / 3.0
        self.price_event(st, ts, close, volume, trade_count if trade_count > 0 else 1, vw)

    def run_bars(
        self,
        symbol_id: int,
        ts_ns: npt.NDArray[np.int64],
        high: npt.NDArray[np.float64],
        low: npt.NDArray[np.float64],
        close: npt.NDArray[np.float64],
        volume: npt.NDArray[np.float64],
        vwap: npt.NDArray[np.float64],
        trade_count: npt.NDArray[np.uint64],
    ) -> npt.NDArray[np.float32]:
        """Feed a bar series to one symbol; return the row after each bar (float32[N, F])."""
        st = self.states[symbol_id]
        out = np.empty((len(ts_ns), sc.N_FEATURES), dtype=np.float32)
        for i in range(len(ts_ns)):
            self._bar(
                st,
                int(ts_ns[i]),
                float(high[i]),
                float(low[i]),
                float(close[i]),
                float(volume[i]),
                float(vwap[i]),
                int(trade_count[i]),
            )
            out[i] = self.row(st)
        self.features[symbol_id] = out[-1] if len(out) else self.features[symbol_id]
        return out
