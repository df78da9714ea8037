"""The engine's per-burst emit path: marked symbols to model inputs, model outputs to signals.

One :class:`Emitter` per engine holds raw pointers to the engine's preallocated arrays (feature
rows, last prices, halt and LULD state, the context rows, the signal records) and, for the
embedded fast path, to each LiteRT bucket's input and output tensors. Per read burst the engine
makes three calls and no per-row Python work:

1. :meth:`Emitter.mark` after each parsed frame: the touched symbols become pending;
2. :meth:`Emitter.stage`: pending symbols (halted ones dropped under ``suppress``) become model
   rows written straight into the smallest bucket's input tensors, fused with the context rows;
3. the bucket's ``Invoke``, then :meth:`Emitter.finish`: outputs become signal records (absolute
   prices, scaled fields, halt/LULD policy, sequence, timestamps, latency samples).

:meth:`Emitter.fill` does step 3 for rows served elsewhere (the gRPC backend, the canary split);
:func:`fill_model_fields` is the same per-row mapping for one-off answers (gRPC ``Predict``).
Every path goes through one ``cdef`` function, so the mapping exists once.
"""

from libc.math cimport isfinite, isnan, rintf
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy

import numpy as np

from relentless_fast.model_contract import OUTPUT_NAMES as _OUTPUT_NAMES
from relentless_fast.signals import SIGNAL_RECORD_DTYPE as _RECORD_DTYPE

# Signal record (SIGNAL_RECORD_DTYPE, natural C alignment); checked against the dtype at import.
ctypedef struct SignalRec:
    uint8_t action
    uint32_t symbol_id
    uint64_t sequence
    uint64_t event_ts_ns
    uint64_t emit_ts_ns
    float confidence
    float price_target
    float stop_loss
    float position_size
    uint8_t risk_score
    uint8_t urgency
    uint16_t strategy_id
    uint16_t model_version
    uint16_t flags
    uint32_t context_version

cdef enum:
    O_PROBS, O_CONF, O_TARGET, O_STOP, O_SIZE, O_RISK, O_URGENCY
    N_OUT
    N_ACTIONS = 3
    MAX_BUCKETS = 16

cdef enum:
    C_FLAG_CONTEXT_STALE = 1 << 1
    C_FLAG_HALTED = 1 << 4
    C_LULD_FLAG = 0
    C_LULD_SUPPRESS = 1
    C_LULD_IGNORE = 2

FLAG_CONTEXT_STALE = C_FLAG_CONTEXT_STALE
FLAG_HALTED = C_FLAG_HALTED
LULD_FLAG = C_LULD_FLAG
LULD_SUPPRESS = C_LULD_SUPPRESS
LULD_IGNORE = C_LULD_IGNORE

_EXPECTED_OUTPUTS = (
    "action_probs", "confidence", "price_target_rel", "stop_loss_rel", "position_size",
    "risk_score", "urgency",
)
if tuple(_OUTPUT_NAMES) != _EXPECTED_OUTPUTS:
    raise ImportError("relentless_fast._emit was built for another model contract; rebuild it")


def _check_record_layout():
    cdef SignalRec r
    cdef size_t base = <size_t>&r
    got = {
        "action": <size_t>&r.action - base,
        "symbol_id": <size_t>&r.symbol_id - base,
        "sequence": <size_t>&r.sequence - base,
        "event_ts_ns": <size_t>&r.event_ts_ns - base,
        "emit_ts_ns": <size_t>&r.emit_ts_ns - base,
        "confidence": <size_t>&r.confidence - base,
        "price_target": <size_t>&r.price_target - base,
        "stop_loss": <size_t>&r.stop_loss - base,
        "position_size": <size_t>&r.position_size - base,
        "risk_score": <size_t>&r.risk_score - base,
        "urgency": <size_t>&r.urgency - base,
        "strategy_id": <size_t>&r.strategy_id - base,
        "model_version": <size_t>&r.model_version - base,
        "flags": <size_t>&r.flags - base,
        "context_version": <size_t>&r.context_version - base,
    }
    want = {name: _RECORD_DTYPE.fields[name][1] for name in _RECORD_DTYPE.names}
    if got != want or sizeof(SignalRec) != _RECORD_DTYPE.itemsize:
        raise ImportError(f"SignalRec layout {got} does not match SIGNAL_RECORD_DTYPE {want}")


_check_record_layout()


cdef inline float _unit(float x) noexcept nogil:
    """Clipped to [0, 1]; NaN stays NaN (as numpy's minimum/maximum)."""
    if isnan(x):
        return x
    if x < 0.0:
        return 0.0
    if x > 1.0:
        return 1.0
    return x


cdef inline uint8_t _u8(float x) noexcept nogil:
    """round(unit(x) * 255) as u8; NaN -> 0."""
    cdef float u = _unit(x)
    if isnan(u):
        return 0
    return <uint8_t>rintf(u * 255.0)


cdef inline void _model_fields(
    SignalRec* r, const float* probs, float conf, float target_rel, float stop_rel, float size,
    float risk, float urgency, double price
) noexcept nogil:
    """The signal fields a model decides (contract ``*_rel`` outputs, relative to ``price``)."""
    cdef int a = 0
    cdef int j
    for j in range(1, N_ACTIONS):
        if probs[j] > probs[a]:  # first maximum wins, as argmax
            a = j
    r.action = <uint8_t>a
    r.confidence = conf
    r.price_target = <float>(price * <double>(<float>1.0 + target_rel))
    r.stop_loss = <float>(price * <double>(<float>1.0 + stop_rel))
    r.position_size = _unit(size)
    r.risk_score = _u8(risk)
    r.urgency = _u8(urgency)


cdef inline const float* _f32_ptr(object a, Py_ssize_t rows, Py_ssize_t cols, str what) except NULL:
    """Data pointer of a C-contiguous float32 array with at least ``rows`` x ``cols``."""
    if not isinstance(a, np.ndarray) or a.dtype != np.float32 or not a.flags.c_contiguous:
        raise TypeError(f"{what}: expected a C-contiguous float32 array")
    if a.shape[0] < rows or (cols > 1 and (a.ndim != 2 or a.shape[1] != cols)):
        raise ValueError(f"{what}: shape {a.shape}, need ({rows}, {cols})")
    if cols == 1 and a.ndim != 1:
        raise ValueError(f"{what}: shape {a.shape}, need ({rows},)")
    return <const float*><size_t>a.ctypes.data


cdef class Emitter:
    """Per-burst row staging and signal filling over the engine's preallocated arrays.

    Parameters
    ----------
    features, last_price, event_ts_ns:
        The feature kernel's rows (float32[S, F]) and per-symbol last price / event time.
    halted, limit_up, limit_down:
        The halt tracker's state (bool[S], float64[S] x 2).
    records:
        The signal records the engine packs (``SIGNAL_RECORD_DTYPE``; at least as many rows as
        the largest bucket and the largest batch given to :meth:`fill`).
    strategy_id:
        Written into every record.
    suppress_halted:
        Halted symbols give no row (else their signals carry ``FLAG_HALTED``).
    luld_policy:
        0 flag, 1 suppress, 2 ignore (``LULD_*``).
    latency_samples:
        Size of the latency sample ring (frame in to record filled, ns).
    """

    cdef const float* _feat
    cdef const double* _last_px
    cdef const int64_t* _event_ts
    cdef const uint8_t* _halted
    cdef const double* _limit_up
    cdef const double* _limit_down
    cdef const float* _ctx
    cdef SignalRec* _rec
    cdef uint8_t* _dirty
    cdef int64_t* _t0
    cdef double* _price
    cdef int32_t* _ids
    cdef int64_t* _lat
    cdef Py_ssize_t _n_sym, _n_feat, _ctx_dim, _cap, _lat_cap
    cdef uint16_t _strategy
    cdef bint _suppress_halted
    cdef int _luld
    # context in use
    cdef uint32_t _ctx_version
    cdef uint16_t _ctx_flags
    # staged rows
    cdef Py_ssize_t _n_ids, _start, _count
    cdef int _bucket
    # buckets
    cdef int _n_buckets
    cdef Py_ssize_t _bsize[MAX_BUCKETS]
    cdef float* _bticks[MAX_BUCKETS]
    cdef float* _bctx[MAX_BUCKETS]
    cdef const float* _bout[MAX_BUCKETS][N_OUT]
    cdef object _keep
    cdef object _ctx_rows
    cdef readonly object ids
    """int32[S]: the symbols of the last :meth:`collect` / :meth:`stage`, in id order."""
    cdef readonly object latency_ns
    """int64 ring of latency samples (frame in to record filled), newest at ``latency_count``."""
    cdef readonly uint64_t latency_count
    cdef readonly uint64_t rows
    """Rows staged or collected for the model."""
    cdef readonly uint64_t batches
    """Batches staged for the embedded fast path."""
    cdef readonly uint64_t marked
    """Symbol updates marked (one per touched symbol per frame)."""
    cdef readonly uint64_t merged
    """Marks folded into a pending one of the same symbol (one row per symbol per burst)."""
    cdef readonly uint64_t suppressed_halted
    cdef readonly uint64_t suppressed_luld
    cdef readonly uint64_t suppressed_no_price

    def __init__(
        self,
        object features,
        object last_price,
        object event_ts_ns,
        object halted,
        object limit_up,
        object limit_down,
        object records,
        *,
        int strategy_id=0,
        bint suppress_halted=True,
        int luld_policy=LULD_FLAG,
        Py_ssize_t latency_samples=1 << 16,
    ):
        n, f = features.shape
        if luld_policy not in (LULD_FLAG, LULD_SUPPRESS, LULD_IGNORE):
            raise ValueError(f"luld_policy must be 0, 1 or 2, got {luld_policy}")
        for name, arr, dtype in (
            ("last_price", last_price, np.float64),
            ("event_ts_ns", event_ts_ns, np.int64),
            ("halted", halted, np.bool_),
            ("limit_up", limit_up, np.float64),
            ("limit_down", limit_down, np.float64),
        ):
            if arr.dtype != dtype or arr.shape != (n,) or not arr.flags.c_contiguous:
                raise ValueError(f"{name}: expected {np.dtype(dtype).name}[{n}], got "
                                 f"{arr.dtype}{list(arr.shape)}")
        if (records.dtype != _RECORD_DTYPE or records.ndim != 1
                or not records.flags.c_contiguous or not records.flags.writeable):
            raise ValueError("records: expected a writeable, contiguous SIGNAL_RECORD_DTYPE array")
        if latency_samples < 1:
            raise ValueError("latency_samples must be >= 1")
        self._feat = _f32_ptr(features, n, f, "features")
        self._n_sym, self._n_feat = n, f
        self._last_px = <const double*><size_t>last_price.ctypes.data
        self._event_ts = <const int64_t*><size_t>event_ts_ns.ctypes.data
        self._halted = <const uint8_t*><size_t>halted.ctypes.data
        self._limit_up = <const double*><size_t>limit_up.ctypes.data
        self._limit_down = <const double*><size_t>limit_down.ctypes.data
        self._rec = <SignalRec*><size_t>records.ctypes.data
        self._cap = records.shape[0]
        dirty = np.zeros(n, np.uint8)
        t0 = np.zeros(n, np.int64)
        price = np.full(n, np.nan)
        self.ids = np.zeros(n, np.int32)
        self.latency_ns = np.zeros(latency_samples, np.int64)
        self._lat_cap = latency_samples
        self._dirty = <uint8_t*><size_t>dirty.ctypes.data
        self._t0 = <int64_t*><size_t>t0.ctypes.data
        self._price = <double*><size_t>price.ctypes.data
        self._ids = <int32_t*><size_t>self.ids.ctypes.data
        self._lat = <int64_t*><size_t>self.latency_ns.ctypes.data
        self._strategy = <uint16_t>strategy_id
        self._suppress_halted = suppress_halted
        self._luld = luld_policy
        self._ctx = NULL
        self._ctx_dim = 0
        self._n_buckets = 0
        self._bucket = -1
        self._keep = [features, last_price, event_ts_ns, halted, limit_up, limit_down, records,
                      dirty, t0, price]

    # -- context ---------------------------------------------------------------------------

    def set_context(self, object rows, uint32_t version, bint stale):
        """Use ``rows`` (float32[S, C], kept alive here) from the next :meth:`stage` on."""
        if rows.ndim != 2 or rows.shape[0] != self._n_sym:
            raise ValueError(f"context rows: shape {rows.shape}, need ({self._n_sym}, C)")
        if self._n_buckets and rows.shape[1] != self._ctx_dim:
            raise ValueError(f"context rows have C={rows.shape[1]}, the model {self._ctx_dim}")
        self._ctx = _f32_ptr(rows, self._n_sym, rows.shape[1], "context rows")
        self._ctx_dim = rows.shape[1]
        self._ctx_version = version
        self._ctx_flags = C_FLAG_CONTEXT_STALE if stale else 0
        self._ctx_rows = rows

    # -- buckets (embedded fast path) -------------------------------------------------------

    def add_bucket(self, object ticks, object context, tuple outputs):
        """A model bucket: its input tensors (float32[B, F], float32[B, C]) and its output
        tensors in contract order (``OUTPUT_NAMES``), as views that stay valid (never resized).
        Buckets are added in increasing size."""
        cdef int k = self._n_buckets
        cdef int j
        if k == MAX_BUCKETS:
            raise ValueError(f"at most {MAX_BUCKETS} buckets")
        size = ticks.shape[0]
        if k and size <= self._bsize[k - 1]:
            raise ValueError("buckets must be added in increasing size")
        if size > self._cap:
            raise ValueError(f"bucket of {size} rows exceeds the {self._cap} records")
        if len(outputs) != N_OUT:
            raise ValueError(f"expected {N_OUT} outputs in contract order")
        self._bticks[k] = <float*>_f32_ptr(ticks, size, self._n_feat, "bucket ticks")
        self._bctx[k] = <float*>_f32_ptr(context, size, context.shape[1], "bucket context")
        if self._ctx != NULL and context.shape[1] != self._ctx_dim:
            raise ValueError(f"bucket context has C={context.shape[1]}, context {self._ctx_dim}")
        self._ctx_dim = context.shape[1]
        self._bout[k][O_PROBS] = _f32_ptr(outputs[O_PROBS], size, N_ACTIONS, "action_probs")
        for j in range(1, N_OUT):
            self._bout[k][j] = _f32_ptr(outputs[j], size, 1, _EXPECTED_OUTPUTS[j])
        self._bsize[k] = size
        self._n_buckets = k + 1
        self._keep.append((ticks, context, outputs))

    @property
    def n_buckets(self):
        return self._n_buckets

    # -- per frame ---------------------------------------------------------------------------

    def mark(self, const uint32_t[::1] touched, Py_ssize_t n, int64_t t0_ns):
        """The first ``n`` touched ids have a new row; ``t0_ns`` is their frame's arrival time.
        Returns the number of pending symbols."""
        cdef Py_ssize_t i
        cdef uint32_t sid
        if n > touched.shape[0]:
            raise ValueError(f"n={n} exceeds the {touched.shape[0]} touched ids")
        for i in range(n):
            sid = touched[i]
            if sid >= <uint32_t>self._n_sym:
                raise ValueError(f"symbol id {sid} out of range")
            self.merged += self._dirty[sid]
            self._dirty[sid] = 1
            self._t0[sid] = t0_ns
        self.marked += n
        return n

    # -- per burst ---------------------------------------------------------------------------

    cdef Py_ssize_t _collect(self) noexcept nogil:
        cdef Py_ssize_t s, n = 0
        cdef uint8_t* dirty = self._dirty
        for s in range(self._n_sym):
            if dirty[s]:
                dirty[s] = 0
                if self._suppress_halted and self._halted[s]:
                    self.suppressed_halted += 1
                    continue
                self._ids[n] = <int32_t>s
                self._price[s] = self._last_px[s]
                n += 1
        self.rows += n
        self._n_ids = n
        self._start = 0
        self._count = 0
        return n

    def discard(self):
        """Drop the pending symbols (kill switch); returns how many there were."""
        cdef Py_ssize_t s, n = 0
        for s in range(self._n_sym):
            if self._dirty[s]:
                self._dirty[s] = 0
                n += 1
        return n

    @property
    def staged(self):
        """Rows loaded into the bucket last staged."""
        return self._count

    def collect(self):
        """Take the pending symbols as rows: ``ids[:n]`` in id order; returns ``n``. Their
        prices are noted for :meth:`fill` (the batcher path)."""
        return self._collect()

    cdef int _load(self) noexcept nogil:
        """Write the next chunk of collected rows into the smallest bucket that holds it."""
        cdef Py_ssize_t left = self._n_ids - self._start
        cdef Py_ssize_t i, cnt
        cdef int k = 0
        cdef int32_t sid
        cdef float* ticks
        cdef float* ctx
        if left <= 0 or self._n_buckets == 0 or self._ctx == NULL:
            self._bucket = -1
            return -1
        while k < self._n_buckets - 1 and self._bsize[k] < left:
            k += 1
        cnt = left if left < self._bsize[k] else self._bsize[k]
        ticks, ctx = self._bticks[k], self._bctx[k]
        for i in range(cnt):
            sid = self._ids[self._start + i]
            memcpy(ticks + i * self._n_feat, self._feat + sid * self._n_feat,
                   self._n_feat * sizeof(float))
            memcpy(ctx + i * self._ctx_dim, self._ctx + sid * self._ctx_dim,
                   self._ctx_dim * sizeof(float))
        self._count = cnt
        self._bucket = k
        self.batches += 1
        return k

    def stage(self):
        """:meth:`collect`, then load the first chunk into a bucket: the bucket's index to
        invoke, or -1 when no row is pending."""
        if self._collect() == 0:
            self._bucket = -1
            return -1
        return self._load()

    def stage_next(self):
        """After :meth:`finish`: load the next chunk (-1 when all rows are done)."""
        self._start += self._count
        self._count = 0
        return self._load()

    def finish(self, uint64_t seq0, uint64_t emit_ts_ns, int64_t now_ns, int model_version):
        """Signals for the rows of the invoked bucket into ``records[:m]``; returns ``m``.

        Sequences are ``seq0 + 1 ...``; ``now_ns`` (CLOCK_MONOTONIC) gives the latency samples.
        """
        cdef int k = self._bucket
        cdef Py_ssize_t i, m = 0
        cdef const float** out
        if k < 0:
            return 0
        out = <const float**>self._bout[k]
        for i in range(self._count):
            if self._emit(
                m, self._ids[self._start + i], out[O_PROBS] + i * N_ACTIONS, out[O_CONF][i],
                out[O_TARGET][i], out[O_STOP][i], out[O_SIZE][i], out[O_RISK][i],
                out[O_URGENCY][i], self._ctx_flags, self._ctx_version, <uint16_t>model_version,
                seq0, emit_ts_ns, now_ns,
            ):
                m += 1
        self._bucket = -1
        return m

    def fill(
        self,
        const int32_t[::1] ids,
        const uint16_t[::1] flags,
        const float[:, ::1] action_probs,
        const float[::1] confidence,
        const float[::1] price_target_rel,
        const float[::1] stop_loss_rel,
        const float[::1] position_size,
        const float[::1] risk_score,
        const float[::1] urgency,
        uint32_t context_version,
        int model_version,
        uint64_t seq0,
        uint64_t emit_ts_ns,
        int64_t now_ns,
    ):
        """Signals for rows served elsewhere (outputs in contract order, one row per id; prices
        noted by :meth:`collect`) into ``records[:m]``; returns ``m``."""
        cdef Py_ssize_t i, m = 0, n = ids.shape[0]
        if n > self._cap:
            raise ValueError(f"{n} rows exceed the {self._cap} records")
        if action_probs.shape[1] != N_ACTIONS:
            raise ValueError(f"action_probs has {action_probs.shape[1]} columns")
        for c in (flags.shape[0], confidence.shape[0], price_target_rel.shape[0],
                  stop_loss_rel.shape[0], position_size.shape[0], risk_score.shape[0],
                  urgency.shape[0], action_probs.shape[0]):
            if c != n:
                raise ValueError(f"{n} ids but an output or the flags have {c} rows")
        for i in range(n):
            if ids[i] < 0 or ids[i] >= self._n_sym:
                raise ValueError(f"symbol id {ids[i]} out of range")
        for i in range(n):
            if self._emit(
                m, ids[i], &action_probs[i, 0], confidence[i], price_target_rel[i],
                stop_loss_rel[i], position_size[i], risk_score[i], urgency[i], flags[i],
                context_version, <uint16_t>model_version, seq0, emit_ts_ns, now_ns,
            ):
                m += 1
        return m

    cdef bint _emit(
        self, Py_ssize_t m, int32_t sid, const float* probs, float conf, float target_rel,
        float stop_rel, float size, float risk, float urgency, uint16_t flags,
        uint32_t context_version, uint16_t model_version, uint64_t seq0, uint64_t emit_ts_ns,
        int64_t now_ns,
    ) noexcept nogil:
        """One row to ``records[m]`` under the halt/LULD policy; False when suppressed."""
        cdef double price = self._price[sid]
        cdef bint band
        cdef SignalRec* r
        if not isfinite(price):
            self.suppressed_no_price += 1
            return False
        if self._halted[sid]:
            if self._suppress_halted:
                self.suppressed_halted += 1
                return False
            flags |= C_FLAG_HALTED
        if self._luld != C_LULD_IGNORE:
            band = price >= self._limit_up[sid] or price <= self._limit_down[sid]
            if band:
                if self._luld == C_LULD_SUPPRESS:
                    self.suppressed_luld += 1
                    return False
                flags |= C_FLAG_HALTED
        r = self._rec + m
        _model_fields(r, probs, conf, target_rel, stop_rel, size, risk, urgency, price)
        r.symbol_id = <uint32_t>sid
        r.sequence = seq0 + <uint64_t>m + 1
        r.event_ts_ns = <uint64_t>self._event_ts[sid]
        r.emit_ts_ns = emit_ts_ns
        r.strategy_id = self._strategy
        r.model_version = model_version
        r.flags = flags
        r.context_version = context_version
        self._lat[self.latency_count % <uint64_t>self._lat_cap] = now_ns - self._t0[sid]
        self.latency_count += 1
        return True


def fill_model_fields(object records, object outputs, object price):
    """The model-decided fields of ``records[i]`` from ``outputs`` (name -> float32 array, one
    row each) and ``price[i]`` (float64): action, confidence, targets, size, risk, urgency."""
    cdef Py_ssize_t i, n = records.shape[0]
    if records.dtype != _RECORD_DTYPE or not records.flags.c_contiguous:
        raise ValueError("records: expected a contiguous SIGNAL_RECORD_DTYPE array")
    cdef const double[::1] px = np.ascontiguousarray(price, np.float64)
    cols = [np.ascontiguousarray(outputs[name], np.float32) for name in _EXPECTED_OUTPUTS]
    cdef const float[:, ::1] probs = cols[O_PROBS]
    cdef const float[::1] conf = cols[O_CONF]
    cdef const float[::1] target = cols[O_TARGET]
    cdef const float[::1] stop = cols[O_STOP]
    cdef const float[::1] size = cols[O_SIZE]
    cdef const float[::1] risk = cols[O_RISK]
    cdef const float[::1] urgency = cols[O_URGENCY]
    if probs.shape[1] != N_ACTIONS:
        raise ValueError(f"action_probs has {probs.shape[1]} columns, expected {N_ACTIONS}")
    for c in (px.shape[0], probs.shape[0], conf.shape[0], target.shape[0], stop.shape[0],
              size.shape[0], risk.shape[0], urgency.shape[0]):
        if c != n:
            raise ValueError(f"{n} records but an output or the prices have {c} rows")
    cdef SignalRec* rec = <SignalRec*><size_t>records.ctypes.data
    for i in range(n):
        _model_fields(rec + i, &probs[i, 0], conf[i], target[i], stop[i], size[i], risk[i],
                      urgency[i], px[i])
