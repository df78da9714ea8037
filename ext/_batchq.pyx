"""The micro-batcher's pending queue: a ring of rows with per-symbol coalescing, compiled.

:class:`BatchQueue` does the per-frame work of ``relentless_fast.inference.batcher``: check the
rows, drop duplicates within the frame (the last row per symbol wins), replace a symbol's pending
row in place, append the rest, drop the oldest pending rows on overflow, take batches from the
head. Time, windows and dispatch stay in the batcher. No Python object per row: the ring and the
per-symbol state (pending slot; last row and duplicate mark in the current frame, valid while its
stamp equals the frame's generation number, so nothing is cleared per frame) are preallocated.
"""

cimport cython
cimport numpy as cnp
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t
from libc.string cimport memcpy

import numpy as np

cnp.import_array()

ctypedef const char* cbytes


cdef struct Src:
    # One frame's input arrays as base pointers and byte strides (any layout numpy gives).
    cbytes sym
    Py_ssize_t sym_s
    cbytes ticks
    Py_ssize_t ticks_s0
    Py_ssize_t ticks_s1
    cbytes ctx
    Py_ssize_t ctx_s0
    Py_ssize_t ctx_s1
    cbytes ets
    Py_ssize_t ets_s
    cbytes flags  # NULL: no flags given (zeros)
    Py_ssize_t flags_s


cdef inline bint _fits(object a, int typenum, int ndim) noexcept:
    """``a`` is an aligned, native-endian ndarray of ``typenum`` and ``ndim`` (no buffer taken)."""
    if not cnp.PyArray_Check(a):
        return False
    cdef cnp.ndarray arr = <cnp.ndarray>a
    cdef int t = cnp.PyArray_TYPE(arr)
    return (
        cnp.PyArray_NDIM(arr) == ndim
        and (t == typenum or cnp.PyArray_EquivTypenums(t, typenum))
        and cnp.PyArray_ISALIGNED(arr)
        and cnp.PyArray_ISNOTSWAPPED(arr)
    )


cdef inline void* _ptr(object a) noexcept:
    return cnp.PyArray_DATA(<cnp.ndarray>a)


cdef inline cbytes _data(object a) noexcept:
    return <cbytes>cnp.PyArray_DATA(<cnp.ndarray>a)


cdef inline Py_ssize_t _dim(object a, int axis) noexcept:
    return cnp.PyArray_DIM(<cnp.ndarray>a, axis)


cdef inline Py_ssize_t _stride(object a, int axis) noexcept:
    return cnp.PyArray_STRIDE(<cnp.ndarray>a, axis)


cdef inline int32_t _sym_at(const Src* src, Py_ssize_t i) noexcept nogil:
    return (<const int32_t*>(src.sym + i * src.sym_s))[0]


cdef inline void _copy_row(
    float* dst, cbytes base, Py_ssize_t s0, Py_ssize_t s1, Py_ssize_t i, Py_ssize_t width
) noexcept nogil:
    cdef cbytes row = base + i * s0
    cdef Py_ssize_t j
    if s1 == sizeof(float):
        memcpy(dst, row, width * sizeof(float))
    else:
        for j in range(width):
            dst[j] = (<const float*>(row + j * s1))[0]


@cython.final
cdef class BatchQueue:
    """Bounded ring of pending rows (arrival order), optionally one row per symbol.

    Parameters
    ----------
    n_symbols
        Symbol ids accepted: ``0 .. n_symbols - 1``.
    n_features, context_dim
        Widths of the ``ticks`` and ``context`` rows.
    capacity
        Most rows pending at once; overflow drops the oldest (counted by the caller).
    coalesce
        A newer row for a pending symbol replaces that row in place: same slot and queue position
        (so the same window start), the newer values, ``coalesced_flag`` set.
    coalesced_flag
        Flag bit marking a row that replaced another (its own or an earlier frame's).

    Notes
    -----
    Single-threaded. Rows are copied in on :meth:`push` and out on :meth:`take`; the caller's
    arrays are never kept.
    """

    cdef readonly Py_ssize_t n_symbols
    cdef readonly Py_ssize_t n_features
    cdef readonly Py_ssize_t context_dim
    cdef readonly Py_ssize_t capacity
    cdef readonly bint coalesce
    cdef readonly int coalesced_flag
    cdef readonly Py_ssize_t count
    cdef Py_ssize_t _head
    cdef int64_t _gen
    # The ring (numpy arrays keep the memory; the pointers are what the code uses).
    cdef object _arrays
    cdef int32_t* _sym
    cdef float* _ticks
    cdef float* _ctx
    cdef int64_t* _ets
    cdef int64_t* _arrival
    cdef int64_t* _enqueued
    cdef uint16_t* _flags
    # Per symbol: pending slot (-1: none), last frame that had it, its last row there, duplicated.
    cdef int32_t* _slot_of
    cdef int64_t* _seen
    cdef int32_t* _last
    cdef uint8_t* _dup
    # Scratch: frame rows that need a new slot (grows with the largest frame seen).
    cdef object _fresh_arr
    cdef int32_t* _fresh
    cdef Py_ssize_t _fresh_len

    def __init__(
        self,
        Py_ssize_t n_symbols,
        Py_ssize_t n_features,
        Py_ssize_t context_dim,
        Py_ssize_t capacity,
        bint coalesce,
        int coalesced_flag,
    ):
        if not 0 < n_symbols <= 0x7FFFFFFF:
            raise ValueError(f"n_symbols must be within 1 .. 2**31 - 1, got {n_symbols}")
        if n_features < 1 or context_dim < 0:
            raise ValueError(
                f"need n_features >= 1 and context_dim >= 0, got {n_features}, {context_dim}"
            )
        if not 0 < capacity <= 0x7FFFFFFF:
            raise ValueError(f"capacity must be within 1 .. 2**31 - 1, got {capacity}")
        if not 0 < coalesced_flag <= 0xFFFF:
            raise ValueError(f"coalesced_flag must be a uint16 bit mask, got {coalesced_flag}")
        self.n_symbols = n_symbols
        self.n_features = n_features
        self.context_dim = context_dim
        self.capacity = capacity
        self.coalesce = coalesce
        self.coalesced_flag = coalesced_flag
        self.count = 0
        self._head = 0
        self._gen = 0
        sym = np.zeros(capacity, np.int32)
        ticks = np.zeros((capacity, n_features), np.float32)
        ctx = np.zeros((capacity, context_dim), np.float32)
        ets = np.zeros(capacity, np.int64)
        arrival = np.zeros(capacity, np.int64)
        enqueued = np.zeros(capacity, np.int64)
        flags = np.zeros(capacity, np.uint16)
        slot_of = np.full(n_symbols, -1, np.int32)
        seen = np.zeros(n_symbols, np.int64)
        last = np.zeros(n_symbols, np.int32)
        dup = np.zeros(n_symbols, np.uint8)
        self._arrays = (sym, ticks, ctx, ets, arrival, enqueued, flags, slot_of, seen, last, dup)
        self._sym = <int32_t*>_ptr(sym)
        self._ticks = <float*>_ptr(ticks)
        self._ctx = <float*>_ptr(ctx)
        self._ets = <int64_t*>_ptr(ets)
        self._arrival = <int64_t*>_ptr(arrival)
        self._enqueued = <int64_t*>_ptr(enqueued)
        self._flags = <uint16_t*>_ptr(flags)
        self._slot_of = <int32_t*>_ptr(slot_of)
        self._seen = <int64_t*>_ptr(seen)
        self._last = <int32_t*>_ptr(last)
        self._dup = <uint8_t*>_ptr(dup)
        self._grow_fresh(capacity)

    @property
    def oldest_enqueued_ns(self):
        """When the oldest pending row entered the queue (its window start); ValueError if empty."""
        if self.count == 0:
            raise ValueError("no pending row")
        return self._enqueued[self._head]

    def push(
        self,
        symbol_ids,
        ticks,
        context,
        event_ts_ns,
        flags,
        int64_t now_ns,
    ):
        """Queue one frame's rows; returns ``(rows_coalesced, rows_dropped)``.

        Arrays: ``symbol_ids`` int32 (n,), ``ticks`` float32 (n, n_features), ``context`` float32
        (n, context_dim), ``event_ts_ns`` int64 (n,), ``flags`` uint16 (n,) or ``None`` (zeros);
        numpy arrays of any strides, aligned and in native byte order (as numpy makes them). Bad
        shapes, dtypes or symbol ids raise ValueError before any state changes.
        ``now_ns`` becomes each written row's arrival time (and window start when appended).
        """
        cdef Src src
        cdef Py_ssize_t n, i
        cdef uint32_t n_sym = <uint32_t>self.n_symbols
        if not (
            _fits(symbol_ids, cnp.NPY_INT32, 1)
            and _fits(ticks, cnp.NPY_FLOAT32, 2)
            and _fits(context, cnp.NPY_FLOAT32, 2)
            and _fits(event_ts_ns, cnp.NPY_INT64, 1)
            and (flags is None or _fits(flags, cnp.NPY_UINT16, 1))
        ):
            _reject(self, symbol_ids, ticks, context, event_ts_ns, flags)
        n = _dim(symbol_ids, 0)
        if (
            _dim(ticks, 0) != n
            or _dim(ticks, 1) != self.n_features
            or _dim(context, 0) != n
            or _dim(context, 1) != self.context_dim
            or _dim(event_ts_ns, 0) != n
            or (flags is not None and _dim(flags, 0) != n)
        ):
            _reject(self, symbol_ids, ticks, context, event_ts_ns, flags)
        if n == 0:
            return 0, 0
        src.sym = _data(symbol_ids)
        src.sym_s = _stride(symbol_ids, 0)
        src.ticks = _data(ticks)
        src.ticks_s0 = _stride(ticks, 0)
        src.ticks_s1 = _stride(ticks, 1)
        src.ctx = _data(context)
        src.ctx_s0 = _stride(context, 0)
        src.ctx_s1 = _stride(context, 1)
        src.ets = _data(event_ts_ns)
        src.ets_s = _stride(event_ts_ns, 0)
        src.flags = NULL
        src.flags_s = 0
        if flags is not None:
            src.flags = _data(flags)
            src.flags_s = _stride(flags, 0)
        # Negative ids wrap to huge unsigned values: one comparison rejects both ends.
        for i in range(n):
            if <uint32_t>_sym_at(&src, i) >= n_sym:
                _reject_ids(self, symbol_ids)
        if self.coalesce:
            return self._push_coalescing(&src, n, now_ns)
        return 0, self._append(&src, NULL, n, now_ns)

    def take(self, Py_ssize_t k):
        """Remove the ``k`` oldest rows; returns new arrays in arrival order.

        ``(symbol_ids, ticks, context, event_ts_ns, arrival_ns, flags)``, each owning its memory.
        """
        if not 0 < k <= self.count:
            raise ValueError(f"take: k must be within 1 .. {self.count} (pending), got {k}")
        cdef cnp.npy_intp dims[2]
        dims[0] = k
        cdef cnp.ndarray sym, ticks, ctx, ets, arrival, flags
        sym = cnp.PyArray_EMPTY(1, dims, cnp.NPY_INT32, 0)
        ets = cnp.PyArray_EMPTY(1, dims, cnp.NPY_INT64, 0)
        arrival = cnp.PyArray_EMPTY(1, dims, cnp.NPY_INT64, 0)
        flags = cnp.PyArray_EMPTY(1, dims, cnp.NPY_UINT16, 0)
        dims[1] = self.n_features
        ticks = cnp.PyArray_EMPTY(2, dims, cnp.NPY_FLOAT32, 0)
        dims[1] = self.context_dim
        ctx = cnp.PyArray_EMPTY(2, dims, cnp.NPY_FLOAT32, 0)
        cdef int32_t* o_sym = <int32_t*>cnp.PyArray_DATA(sym)
        cdef float* o_ticks = <float*>cnp.PyArray_DATA(ticks)
        cdef float* o_ctx = <float*>cnp.PyArray_DATA(ctx)
        cdef int64_t* o_ets = <int64_t*>cnp.PyArray_DATA(ets)
        cdef int64_t* o_arrival = <int64_t*>cnp.PyArray_DATA(arrival)
        cdef uint16_t* o_flags = <uint16_t*>cnp.PyArray_DATA(flags)
        cdef Py_ssize_t first = min(k, self.capacity - self._head)
        self._copy_out(0, self._head, first, o_sym, o_ticks, o_ctx, o_ets, o_arrival, o_flags)
        if first < k:
            self._copy_out(first, 0, k - first, o_sym, o_ticks, o_ctx, o_ets, o_arrival, o_flags)
        self._discard(k)
        return sym, ticks, ctx, ets, arrival, flags

    def discard(self, Py_ssize_t k):
        """Drop the ``k`` oldest rows (their symbols are no longer pending)."""
        if not 0 <= k <= self.count:
            raise ValueError(f"discard: k must be within 0 .. {self.count} (pending), got {k}")
        self._discard(k)

    # -- internals --------------------------------------------------------------------------

    cdef tuple _push_coalescing(self, const Src* src, Py_ssize_t n, int64_t now_ns):
        cdef int64_t gen
        cdef Py_ssize_t i, n_fresh = 0, coalesced = 0
        cdef int32_t s, slot
        cdef uint16_t flag = <uint16_t>self.coalesced_flag
        if n > self._fresh_len:
            self._grow_fresh(n)
        self._gen += 1
        gen = self._gen
        # Pass 1: each symbol's last row in the frame, and whether it had earlier ones.
        for i in range(n):
            s = _sym_at(src, i)
            if self._seen[s] == gen:
                self._dup[s] = 1
            else:
                self._seen[s] = gen
                self._dup[s] = 0
            self._last[s] = <int32_t>i
        # Pass 2: last rows only, in arrival order; a pending symbol's row is replaced in place.
        for i in range(n):
            s = _sym_at(src, i)
            if self._last[s] != i:
                coalesced += 1
                continue
            slot = self._slot_of[s]
            if slot >= 0:
                self._write(slot, src, i, flag, now_ns)
                coalesced += 1
            else:
                self._fresh[n_fresh] = <int32_t>i
                n_fresh += 1
        return coalesced, self._append(src, self._fresh, n_fresh, now_ns)

    cdef Py_ssize_t _append(
        self, const Src* src, const int32_t* rows, Py_ssize_t m, int64_t now_ns
    ) except -1:
        """Rows ``rows[0..m)`` (or ``0..m`` when NULL) at the tail; returns rows dropped."""
        cdef Py_ssize_t cap = self.capacity, skip = 0, dropped = 0, overflow, j, i, slot
        cdef int32_t s
        cdef uint16_t flag = <uint16_t>self.coalesced_flag
        cdef uint16_t extra
        if m > cap:  # more new rows than the whole queue: the oldest incoming go first
            skip = m - cap
            dropped = skip
        overflow = self.count + (m - skip) - cap
        if overflow > 0:
            self._discard(overflow)
            dropped += overflow
        slot = self._head + self.count
        if slot >= cap:
            slot -= cap
        for j in range(skip, m):
            i = rows[j] if rows != NULL else j
            s = _sym_at(src, i)
            extra = flag if self.coalesce and self._dup[s] else 0
            self._sym[slot] = s
            self._enqueued[slot] = now_ns
            self._write(slot, src, i, extra, now_ns)
            if self.coalesce:
                self._slot_of[s] = <int32_t>slot
            slot += 1
            if slot == cap:
                slot = 0
        self.count += m - skip
        return dropped

    cdef inline void _write(
        self, Py_ssize_t slot, const Src* src, Py_ssize_t i, uint16_t extra, int64_t now_ns
    ) noexcept:
        """Row ``i``'s values into ``slot`` (symbol and window start untouched)."""
        _copy_row(
            self._ticks + slot * self.n_features,
            src.ticks, src.ticks_s0, src.ticks_s1, i, self.n_features,
        )
        if self.context_dim:
            _copy_row(
                self._ctx + slot * self.context_dim,
                src.ctx, src.ctx_s0, src.ctx_s1, i, self.context_dim,
            )
        self._ets[slot] = (<const int64_t*>(src.ets + i * src.ets_s))[0]
        self._arrival[slot] = now_ns
        if src.flags != NULL:
            extra |= (<const uint16_t*>(src.flags + i * src.flags_s))[0]
        self._flags[slot] = extra

    cdef void _discard(self, Py_ssize_t k) noexcept:
        cdef Py_ssize_t j, pos = self._head
        if self.coalesce:
            for j in range(k):
                self._slot_of[self._sym[pos]] = -1
                pos += 1
                if pos == self.capacity:
                    pos = 0
        self._head = (self._head + k) % self.capacity
        self.count -= k

    cdef void _copy_out(
        self,
        Py_ssize_t at,
        Py_ssize_t pos,
        Py_ssize_t k,
        int32_t* o_sym,
        float* o_ticks,
        float* o_ctx,
        int64_t* o_ets,
        int64_t* o_arrival,
        uint16_t* o_flags,
    ) noexcept:
        """``k`` contiguous ring rows from ``pos`` into the outputs' rows from ``at``."""
        cdef Py_ssize_t f = self.n_features, c = self.context_dim
        memcpy(o_sym + at, self._sym + pos, k * sizeof(int32_t))
        memcpy(o_ticks + at * f, self._ticks + pos * f, k * f * sizeof(float))
        if c:
            memcpy(o_ctx + at * c, self._ctx + pos * c, k * c * sizeof(float))
        memcpy(o_ets + at, self._ets + pos, k * sizeof(int64_t))
        memcpy(o_arrival + at, self._arrival + pos, k * sizeof(int64_t))
        memcpy(o_flags + at, self._flags + pos, k * sizeof(uint16_t))

    cdef _grow_fresh(self, Py_ssize_t n):
        self._fresh_arr = np.zeros(n, np.int32)
        self._fresh = <int32_t*>_ptr(self._fresh_arr)
        self._fresh_len = n


cdef _reject(BatchQueue q, sym, ticks, ctx, ets, flags):
    """Raise the ValueError that says what is wrong with a frame's arrays (cold path)."""
    n = np.shape(sym)[0] if np.ndim(sym) >= 1 else 0
    want = {
        "symbol_ids": ((n,), np.int32),
        "ticks": ((n, q.n_features), np.float32),
        "context": ((n, q.context_dim), np.float32),
        "event_ts_ns": ((n,), np.int64),
    }
    got = {"symbol_ids": sym, "ticks": ticks, "context": ctx, "event_ts_ns": ets}
    if flags is not None:
        want["flags"] = ((n,), np.uint16)
        got["flags"] = flags
    shapes = {name: np.shape(arr) for name, arr in got.items()}
    if np.ndim(sym) != 1 or any(shapes[name] != want[name][0] for name in want):
        expected = ", ".join(f"{name} {shape}" for name, (shape, _) in want.items())
        actual = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ValueError(f"rows rejected: expected {expected}; got {actual}")
    for name, (_, dtype) in want.items():
        arr = got[name]
        if not isinstance(arr, np.ndarray):
            raise ValueError(f"rows rejected: {name} must be a {np.dtype(dtype)} numpy array, "
                             f"got {type(arr).__name__}")
        if arr.dtype != dtype:
            raise ValueError(f"rows rejected: {name} must be {np.dtype(dtype)}, got {arr.dtype}")
        if not (arr.flags.aligned and arr.dtype.isnative):
            raise ValueError(f"rows rejected: {name} must be aligned and in native byte order")
    raise AssertionError("unreachable: _reject called on valid rows")


cdef _reject_ids(BatchQueue q, sym):
    arr = np.asarray(sym)
    bad = arr[(arr < 0) | (arr >= q.n_symbols)]
    raise ValueError(
        f"rows rejected: symbol id outside 0..{q.n_symbols - 1}: {bad[:10].tolist()}"
        + (f" and {bad.shape[0] - 10} more" if bad.shape[0] > 10 else "")
    )
