"""Incremental feature kernel: feature schema v1 rows from the tick rings, per touched symbol.

Definitions, parameters and order live in ``relentless_fast.features.schema`` (checked at import);
``docs/features.md`` explains the design. The inner loop is ``nogil`` (the GIL is released for frames
touching 16 symbols or more) and creates no Python object per record: per-symbol state is one C
struct, the rows are a preallocated float32[S, F].
"""

from libc.math cimport NAN, exp, isfinite, log, log1p, sqrt
from libc.stdint cimport INT64_MAX, INT64_MIN, UINT64_MAX, int64_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memset

from _records cimport (
    BarRec,
    CancelRec,
    CorrectionRec,
    KIND_BAR,
    KIND_CANCEL,
    KIND_CORRECTION,
    KIND_QUOTE,
    KIND_TRADE,
    N_KINDS,
    QuoteRec,
    TradeRec,
)

import numpy as np

from relentless_fast.features import clock as _clock
from relentless_fast.features import schema as _schema
from relentless_fast.records import DTYPES as _DTYPES
from relentless_fast.records import Kind as _Kind

# Column order the code below writes; import fails if schema.py says otherwise.
cdef enum:
    F_RET_1, F_RET_10, F_RET_100, F_EMA_FAST, F_EMA_SLOW, F_MACD, F_MACD_SIGNAL, F_MACD_HIST
    F_RSI, F_VWAP_DIST, F_SPREAD, F_IMBALANCE, F_HAS_QUOTE, F_RV, F_RATE, F_SIZE_Z
    F_SESSION_VOLUME, F_SESSION_TRADES, F_TIME_OF_DAY, F_HISTORY
    N_F
    HIST = 128

_KERNEL_NAMES = (
    "ret_1", "ret_10", "ret_100", "ema_fast_dist", "ema_slow_dist", "macd", "macd_signal",
    "macd_hist", "rsi_14", "vwap_dist", "spread_bps", "book_imbalance", "has_quote",
    "realized_vol_20", "trade_rate_log", "size_z", "session_volume_log", "session_trades_log",
    "time_of_day", "history_frac",
)
if tuple(_schema.FEATURE_NAMES) != _KERNEL_NAMES or _schema.HISTORY_CAPACITY != HIST:
    raise ImportError("relentless_fast._features was built for another feature schema; rebuild it")

FEATURE_SCHEMA_VERSION = _schema.FEATURE_SCHEMA_VERSION
N_FEATURES = N_F

cdef int H1 = _schema.RETURN_HORIZONS[0]
cdef int H2 = _schema.RETURN_HORIZONS[1]
cdef int H3 = _schema.RETURN_HORIZONS[2]
cdef double A_FAST = 2.0 / (_schema.EMA_FAST_SPAN + 1)
cdef double A_SLOW = 2.0 / (_schema.EMA_SLOW_SPAN + 1)
cdef double A_SIG = 2.0 / (_schema.MACD_SIGNAL_SPAN + 1)
cdef double A_SIZE = 2.0 / (_schema.SIZE_EW_SPAN + 1)
cdef double SIZE_Z_CLIP = _schema.SIZE_Z_CLIP
cdef double RSI_N = _schema.RSI_PERIOD
cdef int RV_WINDOW = _schema.REALIZED_VOL_WINDOW
cdef int HISTORY_FULL = _schema.HISTORY_FULL
cdef double OPEN_MIN = _schema.SESSION_OPEN_MINUTES
cdef double LEN_MIN = _schema.SESSION_LENGTH_MINUTES
cdef float NEUTRAL[N_F]
for _i, _v in enumerate(_schema.NEUTRAL_VALUES):
    NEUTRAL[_i] = _v

cdef int64_t DAY_NS = 86400000000000
cdef enum:
    NOGIL_MIN_SYMBOLS = 16

cdef size_t REC_SIZE[N_KINDS]
REC_SIZE[KIND_TRADE] = sizeof(TradeRec)
REC_SIZE[KIND_QUOTE] = sizeof(QuoteRec)
REC_SIZE[KIND_BAR] = sizeof(BarRec)
REC_SIZE[KIND_CORRECTION] = sizeof(CorrectionRec)
REC_SIZE[KIND_CANCEL] = sizeof(CancelRec)


ctypedef struct SymState:
    double lp[HIST]          # log prices, lp[j % HIST] of price event j
    uint64_t n_prices
    double last_price
    double ema_f
    double ema_s
    double signal
    double gain
    double loss
    uint64_t n_changes
    int64_t session_day
    int has_session
    double vwap_num
    double vwap_den
    double volume
    int64_t trades
    double size_mean
    double size_var
    double size_z
    uint64_t n_sizes
    double rate
    int64_t last_event_ts
    int has_event_ts
    double bid
    double ask
    double bid_size
    double ask_size
    int has_quote
    int64_t clock_ts
    int has_clock
    uint64_t cursor[N_KINDS]


cdef inline int64_t _floordiv(int64_t a, int64_t b) noexcept nogil:
    cdef int64_t q = a / b
    if (a % b != 0) and ((a < 0) != (b < 0)):
        q -= 1
    return q


cdef inline double _dmax(double a, double b) noexcept nogil:
    return a if a > b else b


cdef class FeatureKernel:
    """Incremental feature rows (schema v1) for ``n_symbols`` symbols, fed from the tick rings.

    Parameters
    ----------
    rings
        Object with ``data(kind)``, ``heads(kind)`` and ``capacity(kind)`` (see
        ``docs/features.md``), or ``None`` for a kernel used only through :meth:`run_bars`.
    n_symbols
        Number of symbol ids (rows). Ids at or above it are counted (``bad_symbol_id``) and skipped.
    bars
        ``False`` (default): :meth:`update` consumes trades, quotes, corrections and cancels in
        arrival (``seq``) order. ``True``: it consumes ``Kind.BAR`` records instead.
    rate_tau_s
        Time constant of ``trade_rate_log`` in seconds (schema default 60).
    tz
        Exchange time zone of the session clock (schema default America/New_York).

    Notes
    -----
    Cursors start at record 0 of every ring. ``features`` is the kernel's own float32[S, F] array,
    rewritten in place by :meth:`update`, :meth:`run_bars` and :meth:`reset`; copy what you keep
    (or use :meth:`row`). Single-threaded: call from the thread that runs the parser.
    """

    cdef SymState* _st
    cdef float* _feat
    cdef double* _last_px
    cdef int64_t* _event_ts
    cdef readonly object features
    cdef readonly object last_price
    cdef readonly object event_ts_ns
    cdef readonly Py_ssize_t n_symbols
    cdef readonly bint bars
    cdef readonly double rate_tau_s
    cdef readonly str tz
    cdef object _rings
    cdef object _refs
    cdef char* _data[N_KINDS]
    cdef Py_ssize_t _row_bytes[N_KINDS]
    cdef const uint64_t* _heads[N_KINDS]
    cdef uint64_t _cap[N_KINDS]
    cdef bint _refetch
    cdef object _trans_arr
    cdef object _offs_arr
    cdef const int64_t* _trans
    cdef const int64_t* _offs
    cdef Py_ssize_t _n_trans
    cdef int64_t _cache_lo
    cdef int64_t _cache_hi
    cdef int64_t _cache_off
    cdef uint64_t _lost[N_KINDS]
    cdef uint64_t _bad_sid
    cdef uint64_t _bad_rec
    cdef uint64_t _adj_unapplied
    cdef uint64_t _bar_upd_skipped
    cdef object _ids_obj
    cdef const uint32_t* _ids
    cdef Py_ssize_t _ids_len

    def __cinit__(self, *args, **kwargs):
        self._st = NULL

    def __init__(
        self,
        rings,
        Py_ssize_t n_symbols,
        *,
        bint bars=False,
        double rate_tau_s=_schema.RATE_TAU_S,
        str tz=_schema.SESSION_TZ,
    ):
        if n_symbols <= 0:
            raise ValueError(f"n_symbols must be positive, got {n_symbols}")
        if not rate_tau_s > 0:
            raise ValueError(f"rate_tau_s must be positive, got {rate_tau_s}")
        self.n_symbols = n_symbols
        self.bars = bars
        self.rate_tau_s = rate_tau_s
        self.tz = tz
        self._st = <SymState*>calloc(n_symbols, sizeof(SymState))
        if self._st == NULL:
            raise MemoryError()
        self.features = np.tile(np.asarray(_schema.NEUTRAL_VALUES, dtype=np.float32), (n_symbols, 1))
        self._feat = <float*><size_t>self.features.ctypes.data
        self.last_price = np.full(n_symbols, np.nan, dtype=np.float64)
        self._last_px = <double*><size_t>self.last_price.ctypes.data
        self.event_ts_ns = np.zeros(n_symbols, dtype=np.int64)
        self._event_ts = <int64_t*><size_t>self.event_ts_ns.ctypes.data
        trans, offs = _clock.offset_table(tz)
        self._trans_arr = np.ascontiguousarray(trans, dtype=np.int64)
        self._offs_arr = np.ascontiguousarray(offs, dtype=np.int64)
        self._trans = <const int64_t*><size_t>self._trans_arr.ctypes.data
        self._offs = <const int64_t*><size_t>self._offs_arr.ctypes.data
        self._n_trans = len(self._trans_arr)
        self._cache_lo = 1
        self._cache_hi = 0  # empty: first lookup searches
        self._rings = rings
        self._refs = []
        self._refetch = False
        if rings is not None:
            self._bind_rings()
            # A rings object that hands out new arrays per call is re-read once per update.
            for kind in self._kinds():
                if (rings.data(kind).ctypes.data != self._refs[2 * kind].ctypes.data
                        or rings.heads(kind).ctypes.data != self._refs[2 * kind + 1].ctypes.data):
                    self._refetch = True

    def __dealloc__(self):
        free(self._st)

    def _kinds(self):
        if self.bars:
            return (int(KIND_BAR),)
        return (int(KIND_TRADE), int(KIND_QUOTE), int(KIND_CORRECTION), int(KIND_CANCEL))

    def _bind_rings(self):
        """Fetch and check the ring arrays; keep references so the pointers stay valid."""
        rings = self._rings
        self._refs = [None] * (2 * N_KINDS)
        for kind in self._kinds():
            name = _Kind(kind).name
            data = rings.data(kind)
            heads = rings.heads(kind)
            cap = int(rings.capacity(kind))
            if not isinstance(data, np.ndarray) or data.dtype != _DTYPES[_Kind(kind)]:
                raise TypeError(f"rings.data({name}) must be a numpy array of DTYPES[{name}]")
            if data.dtype.itemsize != REC_SIZE[kind]:
                raise TypeError(f"DTYPES[{name}] itemsize {data.dtype.itemsize} != C record size "
                                f"{REC_SIZE[kind]}: rebuild relentless_fast._features")
            if (data.ndim != 2 or data.shape[0] < self.n_symbols or cap <= 0
                    or data.shape[1] != 2 * cap or not data.flags.c_contiguous):
                raise ValueError(f"rings.data({name}) must be C-contiguous (>= {self.n_symbols}, "
                                 f"2*capacity={2 * cap}), got shape {data.shape}")
            if (not isinstance(heads, np.ndarray) or heads.dtype != np.uint64 or heads.ndim != 1
                    or heads.shape[0] < self.n_symbols or not heads.flags.c_contiguous):
                raise ValueError(f"rings.heads({name}) must be contiguous uint64[>= {self.n_symbols}]")
            self._refs[2 * kind] = data
            self._refs[2 * kind + 1] = heads
            self._data[kind] = <char*><size_t>data.ctypes.data
            self._row_bytes[kind] = data.strides[0]
            self._heads[kind] = <const uint64_t*><size_t>heads.ctypes.data
            self._cap[kind] = cap

    # -- session clock -----------------------------------------------------------------------
    cdef inline int64_t _local_ns(self, int64_t ts) noexcept nogil:
        cdef Py_ssize_t lo, hi, mid
        if self._cache_lo <= ts < self._cache_hi:
            return ts + self._cache_off
        lo = 0
        hi = self._n_trans
        while lo < hi:  # first transition after ts (searchsorted right)
            mid = (lo + hi) // 2
            if self._trans[mid] <= ts:
                lo = mid + 1
            else:
                hi = mid
        self._cache_lo = self._trans[lo - 1] if lo > 0 else INT64_MIN
        self._cache_hi = self._trans[lo] if lo < self._n_trans else INT64_MAX
        self._cache_off = self._offs[lo]
        return ts + self._cache_off

    # -- events ------------------------------------------------------------------------------
    cdef void _price_event(self, SymState* st, int64_t ts, double price, double size,
                           int64_t count, double vw_price) noexcept nogil:
        cdef int64_t day
        cdef double change, x, diff, incr, dt_s
        if not (isfinite(price) and price > 0 and isfinite(size) and size >= 0):
            self._bad_rec += 1
            return
        day = _floordiv(self._local_ns(ts), DAY_NS)
        if not st.has_session or st.session_day != day:
            st.has_session = 1
            st.session_day = day
            st.vwap_num = 0.0
            st.vwap_den = 0.0
            st.volume = 0.0
            st.trades = 0
        st.vwap_num += vw_price * size
        st.vwap_den += size
        st.volume += size
        st.trades += count
        if st.n_prices > 0:
            change = price - st.last_price
            if st.n_changes == 0:
                st.gain = _dmax(change, 0.0)
                st.loss = _dmax(-change, 0.0)
            else:
                st.gain += (_dmax(change, 0.0) - st.gain) / RSI_N
                st.loss += (_dmax(-change, 0.0) - st.loss) / RSI_N
            st.n_changes += 1
            st.ema_f += A_FAST * (price - st.ema_f)
            st.ema_s += A_SLOW * (price - st.ema_s)
            st.signal += A_SIG * ((st.ema_f - st.ema_s) - st.signal)
        else:
            st.ema_f = price
            st.ema_s = price
            st.signal = 0.0
        st.lp[st.n_prices % HIST] = log(price)
        st.n_prices += 1
        x = log1p(size)
        if st.n_sizes >= 2 and st.size_var > 0:
            st.size_z = (x - st.size_mean) / sqrt(st.size_var)
            if st.size_z > SIZE_Z_CLIP:
                st.size_z = SIZE_Z_CLIP
            elif st.size_z < -SIZE_Z_CLIP:
                st.size_z = -SIZE_Z_CLIP
        else:
            st.size_z = 0.0
        if st.n_sizes == 0:
            st.size_mean = x
            st.size_var = 0.0
        else:
            diff = x - st.size_mean
            incr = A_SIZE * diff
            st.size_mean += incr
            st.size_var = (1.0 - A_SIZE) * (st.size_var + diff * incr)
        st.n_sizes += 1
        if not st.has_event_ts:
            st.rate = count / self.rate_tau_s
            st.last_event_ts = ts
            st.has_event_ts = 1
        else:
            dt_s = (ts - st.last_event_ts if ts > st.last_event_ts else 0) / 1e9
            st.rate = st.rate * exp(-dt_s / self.rate_tau_s) + count / self.rate_tau_s
            if ts > st.last_event_ts:
                st.last_event_ts = ts
        st.last_price = price
        st.clock_ts = ts
        st.has_clock = 1

    cdef inline void _quote(self, SymState* st, const QuoteRec* q) noexcept nogil:
        if isfinite(q.bid_price) and isfinite(q.ask_price) and q.bid_price > 0 and q.ask_price > 0:
            st.bid = q.bid_price
            st.ask = q.ask_price
            st.bid_size = q.bid_size
            st.ask_size = q.ask_size
            st.has_quote = 1
        else:
            st.has_quote = 0
        st.clock_ts = q.ts_ns
        st.has_clock = 1

    cdef inline void _adjust(self, SymState* st, int64_t ts, double d_num, double d_size,
                             int64_t d_trades) noexcept nogil:
        if not st.has_session or _floordiv(self._local_ns(ts), DAY_NS) != st.session_day:
            self._adj_unapplied += 1
            return
        st.vwap_num += d_num
        st.vwap_den += d_size
        if st.vwap_den <= 0:
            st.vwap_num = 0.0
            st.vwap_den = 0.0
        st.volume = _dmax(st.volume + d_size, 0.0)
        st.trades += d_trades
        if st.trades < 0:
            st.trades = 0

    cdef inline void _bar(self, SymState* st, int64_t ts, double high, double low, double close,
                          double volume, double vwap, uint64_t trade_count) noexcept nogil:
        cdef double vw = vwap if (isfinite(vwap) and vwap > 0) else (high + low + close) / 3.0
        self._price_event(st, ts, close, volume,
                          <int64_t>trade_count if trade_count > 0 else 1, vw)

    # -- rows --------------------------------------------------------------------------------
    cdef void _write_row(self, Py_ssize_t sid) noexcept nogil:
        cdef SymState* st = &self._st[sid]
        cdef float* row = self._feat + sid * N_F
        cdef uint64_t n = st.n_prices
        cdef double p = st.last_price, last, r, acc, macd, minutes
        cdef uint64_t j, m
        cdef int64_t local
        cdef int f
        self._last_px[sid] = p if n > 0 else NAN
        self._event_ts[sid] = st.clock_ts
        for f in range(N_F):
            row[f] = NEUTRAL[f]
        if n > 0:
            last = st.lp[(n - 1) % HIST]
            if n > <uint64_t>H1:
                row[F_RET_1] = <float>(last - st.lp[(n - 1 - H1) % HIST])
            if n > <uint64_t>H2:
                row[F_RET_10] = <float>(last - st.lp[(n - 1 - H2) % HIST])
            if n > <uint64_t>H3:
                row[F_RET_100] = <float>(last - st.lp[(n - 1 - H3) % HIST])
            macd = st.ema_f - st.ema_s
            row[F_EMA_FAST] = <float>(st.ema_f / p - 1.0)
            row[F_EMA_SLOW] = <float>(st.ema_s / p - 1.0)
            row[F_MACD] = <float>(macd / p)
            row[F_MACD_SIGNAL] = <float>(st.signal / p)
            row[F_MACD_HIST] = <float>((macd - st.signal) / p)
            if st.vwap_den > 0 and st.vwap_num > 0:
                row[F_VWAP_DIST] = <float>(p / (st.vwap_num / st.vwap_den) - 1.0)
            if n >= 2:
                m = n - 1 if n - 1 < <uint64_t>RV_WINDOW else <uint64_t>RV_WINDOW
                acc = 0.0
                for j in range(m):
                    r = st.lp[(n - 1 - j) % HIST] - st.lp[(n - 2 - j) % HIST]
                    acc += r * r
                row[F_RV] = <float>sqrt(acc)
        if st.n_changes > 0 and st.gain + st.loss > 0:
            row[F_RSI] = <float>(st.gain / (st.gain + st.loss))
        if st.has_quote:
            row[F_SPREAD] = <float>((st.ask - st.bid) / ((st.ask + st.bid) / 2.0) * 1e4)
            if st.bid_size + st.ask_size > 0:
                row[F_IMBALANCE] = <float>(
                    (st.bid_size - st.ask_size) / (st.bid_size + st.ask_size))
            row[F_HAS_QUOTE] = 1.0
        row[F_RATE] = <float>log1p(st.rate)
        row[F_SIZE_Z] = <float>st.size_z
        row[F_SESSION_VOLUME] = <float>log1p(st.volume)
        row[F_SESSION_TRADES] = <float>log1p(<double>st.trades)
        if st.has_clock:
            local = self._local_ns(st.clock_ts)
            minutes = <double>(local - _floordiv(local, DAY_NS) * DAY_NS) / 60e9
            row[F_TIME_OF_DAY] = <float>((minutes - OPEN_MIN) / LEN_MIN)
        row[F_HISTORY] = <float>((n if n < <uint64_t>HISTORY_FULL else HISTORY_FULL)
                                 / <double>HISTORY_FULL)

    # -- ring consumption --------------------------------------------------------------------
    cdef inline uint64_t _window(self, int kind, Py_ssize_t sid, char** out) noexcept nogil:
        """New records [cursor, head) of one ring as a contiguous run; advances the cursor."""
        cdef SymState* st = &self._st[sid]
        cdef uint64_t head = self._heads[kind][sid]
        cdef uint64_t cur = st.cursor[kind]
        cdef uint64_t cap = self._cap[kind]
        if head < cur:  # the ring was restarted under us: resync
            cur = head
        if head - cur > cap:
            self._lost[kind] += head - cur - cap
            cur = head - cap
        st.cursor[kind] = head
        out[0] = self._data[kind] + sid * self._row_bytes[kind] + (cur % cap) * REC_SIZE[kind]
        return head - cur

    cdef uint64_t _update_ticks(self, Py_ssize_t sid) noexcept nogil:
        cdef SymState* st = &self._st[sid]
        cdef char* pt
        cdef char* pq
        cdef char* pc
        cdef char* px
        cdef uint64_t nt = self._window(KIND_TRADE, sid, &pt)
        cdef uint64_t nq = self._window(KIND_QUOTE, sid, &pq)
        cdef uint64_t nc = self._window(KIND_CORRECTION, sid, &pc)
        cdef uint64_t nx = self._window(KIND_CANCEL, sid, &px)
        cdef uint64_t it = 0, iq = 0, ic = 0, ix = 0, best
        cdef int kind
        cdef const TradeRec* t
        cdef const CorrectionRec* c
        cdef const CancelRec* x
        while True:
            # Merge the four runs by arrival seq (ties: trade, quote, correction, cancel).
            best = UINT64_MAX
            kind = -1
            if it < nt:
                best = (<const TradeRec*>pt)[it].seq
                kind = KIND_TRADE
            if iq < nq and (<const QuoteRec*>pq)[iq].seq < best:
                best = (<const QuoteRec*>pq)[iq].seq
                kind = KIND_QUOTE
            if ic < nc and (<const CorrectionRec*>pc)[ic].seq < best:
                best = (<const CorrectionRec*>pc)[ic].seq
                kind = KIND_CORRECTION
            if ix < nx and (<const CancelRec*>px)[ix].seq < best:
                kind = KIND_CANCEL
            if kind == KIND_TRADE:
                t = &(<const TradeRec*>pt)[it]
                self._price_event(st, t.ts_ns, t.price, t.size, 1, t.price)
                it += 1
            elif kind == KIND_QUOTE:
                self._quote(st, &(<const QuoteRec*>pq)[iq])
                iq += 1
            elif kind == KIND_CORRECTION:
                c = &(<const CorrectionRec*>pc)[ic]
                self._adjust(st, c.ts_ns, c.corr_price * c.corr_size - c.orig_price * c.orig_size,
                             c.corr_size - c.orig_size, 0)
                ic += 1
            elif kind == KIND_CANCEL:
                x = &(<const CancelRec*>px)[ix]
                self._adjust(st, x.ts_ns, -(x.price * x.size), -x.size, -1)
                ix += 1
            else:
                break
        if nt + nq + nc + nx:  # unchanged state keeps its row
            self._write_row(sid)
        return nt + nq + nc + nx

    cdef uint64_t _update_bars(self, Py_ssize_t sid) noexcept nogil:
        cdef SymState* st = &self._st[sid]
        cdef char* pb
        cdef uint64_t nb = self._window(KIND_BAR, sid, &pb)
        cdef uint64_t i
        cdef const BarRec* b
        for i in range(nb):
            b = &(<const BarRec*>pb)[i]
            if b.bar_type == 117:  # 'u': restates a bar already counted
                self._bar_upd_skipped += 1
                continue
            self._bar(st, b.ts_ns, b.high, b.low, b.close, b.volume, b.vwap, b.trade_count)
        if nb:
            self._write_row(sid)
        return nb

    cdef _bind_ids(self, touched_ids):
        """Check a touched-ids array once; the parser hands the same array every frame."""
        if (not isinstance(touched_ids, np.ndarray) or touched_ids.dtype != np.uint32
                or touched_ids.ndim != 1 or not touched_ids.flags.c_contiguous):
            raise TypeError("touched_ids must be a contiguous numpy uint32[:] array")
        self._ids_obj = touched_ids  # the reference also stops numpy resizing it under us
        self._ids = <const uint32_t*><size_t>touched_ids.ctypes.data
        self._ids_len = touched_ids.shape[0]

    def update(self, touched_ids, Py_ssize_t n):
        """Consume the new records of the first ``n`` symbol ids in ``touched_ids``.

        ``touched_ids`` is a contiguous numpy uint32 array (the parser's ``touched``); passing
        the same array object every frame skips its checks. Returns the number of records
        consumed. Repeated ids are harmless (nothing new the second time); ids >= ``n_symbols``
        are counted as ``bad_symbol_id``.
        """
        cdef uint64_t consumed
        if touched_ids is not self._ids_obj:
            self._bind_ids(touched_ids)
        if self._rings is None:
            raise RuntimeError("this FeatureKernel has no rings; use run_bars")
        if n < 0 or n > self._ids_len:
            raise ValueError(f"n={n} outside 0..{self._ids_len}")
        if self._refetch:
            self._bind_rings()
        if n >= NOGIL_MIN_SYMBOLS:
            with nogil:
                consumed = self._update_ids(self._ids, n)
        else:  # releasing the GIL costs more than a small frame
            consumed = self._update_ids(self._ids, n)
        return consumed

    cdef uint64_t _update_ids(self, const uint32_t* ids, Py_ssize_t n) noexcept nogil:
        cdef Py_ssize_t i, sid
        cdef uint64_t consumed = 0
        for i in range(n):
            sid = ids[i]
            if sid >= self.n_symbols:
                self._bad_sid += 1
                continue
            if self.bars:
                consumed += self._update_bars(sid)
            else:
                consumed += self._update_ticks(sid)
        return consumed

    def run_bars(
        self,
        Py_ssize_t symbol_id,
        const int64_t[::1] ts_ns not None,
        const double[::1] high not None,
        const double[::1] low not None,
        const double[::1] close not None,
        const double[::1] volume not None,
        const double[::1] vwap not None,
        const uint64_t[::1] trade_count not None,
        out=None,
    ):
        """Feed a bar series to one symbol in order; return the row after each bar.

        ``vwap`` may hold NaN (then ``(high + low + close) / 3``), ``trade_count`` 0 (counted as
        1). ``out`` (float32[N, F], C-contiguous) is filled when given, else allocated. The
        symbol's state carries on from what it held, and its ``features`` row ends as the last one.
        """
        cdef Py_ssize_t nb = ts_ns.shape[0], i
        cdef float[:, ::1] rows
        cdef SymState* st
        cdef int f
        self._check_sid(symbol_id)
        lengths = (high.shape[0], low.shape[0], close.shape[0], volume.shape[0], vwap.shape[0],
                   trade_count.shape[0])
        if any(length != nb for length in lengths):
            raise ValueError(f"bar arrays differ in length: {lengths} vs ts_ns {nb}")
        if out is None:
            out = np.empty((nb, N_F), dtype=np.float32)
        rows = out
        if rows.shape[0] != nb or rows.shape[1] != N_F:
            raise ValueError(f"out must be float32[{nb}, {N_F}], got {np.shape(out)}")
        st = &self._st[symbol_id]
        with nogil:
            for i in range(nb):
                self._bar(st, ts_ns[i], high[i], low[i], close[i], volume[i], vwap[i],
                          trade_count[i])
                self._write_row(symbol_id)
                for f in range(N_F):
                    rows[i, f] = self._feat[symbol_id * N_F + f]
        return out

    def _check_sid(self, Py_ssize_t symbol_id):
        if not 0 <= symbol_id < self.n_symbols:
            raise IndexError(f"symbol_id {symbol_id} outside 0..{self.n_symbols - 1}")

    def reset(self, Py_ssize_t symbol_id):
        """Forget a symbol's state; its row becomes neutral and records already in the rings
        are skipped (its cursors jump to the current heads)."""
        cdef SymState* st
        cdef int f
        self._check_sid(symbol_id)
        if self._refetch:
            self._bind_rings()
        st = &self._st[symbol_id]
        memset(st, 0, sizeof(SymState))
        if self._rings is not None:
            for kind in self._kinds():
                st.cursor[kind] = self._heads[kind][symbol_id]
        for f in range(N_F):
            self._feat[symbol_id * N_F + f] = NEUTRAL[f]
        self._last_px[symbol_id] = NAN
        self._event_ts[symbol_id] = 0

    def row(self, Py_ssize_t symbol_id):
        """A copy of one symbol's feature row (float32[F])."""
        self._check_sid(symbol_id)
        return self.features[symbol_id].copy()

    def cursors(self):
        """Per-kind, per-symbol read cursors (records consumed), uint64[N_KINDS, S] copy."""
        out = np.zeros((N_KINDS, self.n_symbols), dtype=np.uint64)
        cdef uint64_t[:, ::1] view = out
        cdef Py_ssize_t s
        cdef int k
        for s in range(self.n_symbols):
            for k in range(N_KINDS):
                view[k, s] = self._st[s].cursor[k]
        return out

    def counters(self):
        """Drop and loss counters by reason (monotonic since construction)."""
        out = {f"lost_{_Kind(k).name.lower()}": int(self._lost[k]) for k in range(N_KINDS)}
        out["bad_symbol_id"] = int(self._bad_sid)
        out["bad_record"] = int(self._bad_rec)
        out["adjust_unapplied"] = int(self._adj_unapplied)
        out["bar_updates_skipped"] = int(self._bar_upd_skipped)
        return out
