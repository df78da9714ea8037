"""Alpaca market-data v2 frames (JSON or msgpack) parsed straight into per-kind numpy ring buffers.

A scanner specialised to the Alpaca schema: one pass over the frame's bytes, no Python object per
data message, each record validated in full on the stack before it is copied into its ring. See
``docs/parser.md`` for the drop policy, the ring layout and the single-writer rule.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.math cimport NAN, isfinite
from libc.stdint cimport INT64_MAX, UINT64_MAX, int8_t, int16_t, int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, strtod
from libc.string cimport memcmp, memcpy, memset

from _records cimport (
    BarRec, CancelRec, CorrectionRec, ImbalanceRec, LuldRec, QuoteRec, StatusRec, TradeRec,
    KIND_BAR, KIND_CANCEL, KIND_CORRECTION, KIND_IMBALANCE, KIND_LULD, KIND_QUOTE, KIND_STATUS,
    KIND_TRADE, N_KINDS,
)

import collections as _collections
from collections.abc import Mapping as _Mapping

import numpy as _np
import orjson as _orjson

from relentless_fast.records import DTYPES as _DTYPES, Kind as _Kind
from relentless_fast.symbols import MAX_SYMBOL_BYTES as _MAX_SYMBOL_BYTES, SymbolTable as _SymbolTable

ctypedef unsigned char uchar

cdef extern from *:
    int __builtin_ctzll(unsigned long long x) nogil
    int __builtin_ctz(unsigned int x) nogil
    void __builtin_prefetch(const void* addr, int rw, int locality) nogil

# SSE2 is part of every x86_64 CPU; elsewhere TP_HAVE_SSE2 is 0 and the 8-byte SWAR loop is used.
# TP_LITTLE_ENDIAN enables loading symbol bytes straight into the words of the hash key.
cdef extern from *:
    """
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    #define TP_LITTLE_ENDIAN 1
    #else
    #define TP_LITTLE_ENDIAN 0
    #endif
    /* One record into both mirror slots, one 8-byte word at a time: the record was just built
       with 8-byte stores, which forward to 8-byte loads. (A plain loop is turned into two libc
       memcpy calls; wider loads spanning two stores would stall store forwarding.) */
    static inline void tp_copy_words(uint64_t *a, uint64_t *b, const uint64_t *src, Py_ssize_t n)
    {
        volatile uint64_t *va = a, *vb = b;
        for (Py_ssize_t j = 0; j < n; j++) {
            uint64_t w = src[j];
            va[j] = w;
            vb[j] = w;
        }
    }
    #if defined(__SSE2__)
    #include <emmintrin.h>
    #define TP_HAVE_SSE2 1

    /* Bit j set when byte j of the 16 at p is a quote (0x22), a backslash (0x5C) or a control
       character (below 0x20). */
    static inline unsigned tp_stop16(const unsigned char *p)
    {
        __m128i x = _mm_loadu_si128((const __m128i *)p);
        __m128i lim = _mm_set1_epi8(0x1F);
        __m128i hit = _mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8(0x22)),
                                   _mm_cmpeq_epi8(x, _mm_set1_epi8(0x5C)));
        hit = _mm_or_si128(hit, _mm_cmpeq_epi8(_mm_max_epu8(x, lim), lim));
        return (unsigned)_mm_movemask_epi8(hit);
    }
    #else
    #define TP_HAVE_SSE2 0
    static inline unsigned tp_stop16(const unsigned char *p) { (void)p; return 0; }
    #endif
    """
    const bint TP_HAVE_SSE2
    const bint TP_LITTLE_ENDIAN
    unsigned int tp_stop16(const unsigned char* p) nogil
    void tp_copy_words(uint64_t* a, uint64_t* b, const uint64_t* src, Py_ssize_t n) nogil

# ---------------------------------------------------------------------------------------------
# Drop reasons (index into TickParser.drop_counts). Keep DROP_REASONS in the same order.
cdef enum:
    D_MALFORMED = 0
    D_TRUNCATED = 1
    D_NOT_A_MAP = 2
    D_MISSING_FIELD = 3
    D_MISTYPED_FIELD = 4
    D_UNKNOWN_TYPE = 5
    D_OVERLONG_SYMBOL = 6
    D_UNKNOWN_SYMBOL = 7
    D_BAD_PRICE = 8
    D_BAD_SIZE = 9
    D_BAD_TIMESTAMP = 10
    N_REASONS = 11

DROP_REASONS = (
    "malformed",
    "truncated",
    "not_a_map",
    "missing_field",
    "mistyped_field",
    "unknown_type",
    "overlong_symbol",
    "unknown_symbol",
    "bad_price",
    "bad_size",
    "bad_timestamp",
)
DEFAULT_CAPACITY = 64

cdef enum:
    MAX_DEPTH = 64  # deeper JSON/msgpack nesting is malformed

# Scanner status codes (negative: the rest of the frame is dropped).
cdef enum:
    E_OK = 0
    E_MALFORMED = -1
    E_TRUNCATED = -2

# Value types captured per key.
cdef enum:
    VT_NUM = 1      # JSON number: span p/n, decimal mantissa u (<= 19 digits), exponent i
    VT_INT = 2      # msgpack integer that fits int64
    VT_UINT = 3     # msgpack integer above INT64_MAX
    VT_FLOAT = 4    # msgpack float32/float64
    VT_STR = 5      # string (span of raw bytes; FL_ESC when JSON escapes are present)
    VT_ARR = 6      # JSON: span incl. brackets; msgpack: first element and count (FL_MP)
    VT_TS = 7       # msgpack Timestamp extension: i = seconds, u = nanoseconds
    VT_NULL = 8
    VT_OTHER = 9    # bool, object/map, bin, other ext

cdef enum:
    FL_INT = 1      # JSON number without fraction or exponent
    FL_ESC = 2      # JSON string with escapes
    FL_MP = 4       # msgpack array (p = first element, n = count)
    FL_NEG = 8      # JSON number with a minus sign
    FL_SLOW = 16    # JSON number with more than 19 significant digits: strtod / _json_uint
    FL_CONDS = 32   # JSON array of strings: u holds the first byte of its first four strings

ctypedef struct Val:  # one captured value; numbers and strings are converted only when read
    int vt
    int flags
    const uchar* p
    const uchar* end    # msgpack arrays: end of the frame, for re-walking the elements
    Py_ssize_t n
    int64_t i
    uint64_t u
    double f

# Keys of the Alpaca schema we read (any other key is skipped).
cdef enum:
    K_T = 0
    K_S, K_t, K_i, K_x, K_p, K_s, K_c, K_z, K_bx, K_bp, K_bs, K_ax, K_ap, K_as
    K_o, K_h, K_l, K_v, K_n, K_vw, K_sc, K_rc, K_oi, K_op, K_os, K_ci, K_cp, K_cs, K_a, K_u, K_d
    N_KEYS

# Field types of the per-kind field tables.
cdef enum:
    F_TS = 1
    F_PRICE = 2
    F_SIZE = 3
    F_ID = 4
    F_COUNT = 5
    F_CODE = 6
    F_CONDS = 7
    F_STR4 = 8
    F_STR8 = 9

cdef enum:
    R_REQ = 1      # missing -> drop (missing_field)
    R_NAN = 2      # missing -> NaN instead of 0

ctypedef struct FieldSpec:
    int key
    int ftype
    int flags
    Py_ssize_t offset

cdef enum:
    SYM_MAX = 15  # relentless_fast.symbols.MAX_SYMBOL_BYTES, checked at import
    MAX_FIELDS = 12
    MAX_REC = 128
    MAX_REC_WORDS = 16  # MAX_REC / 8

cdef FieldSpec _SPECS[N_KINDS][MAX_FIELDS]
cdef int _NSPECS[N_KINDS]
cdef Py_ssize_t _OFF_TS[N_KINDS]
cdef Py_ssize_t _OFF_SEQ[N_KINDS]
cdef Py_ssize_t _OFF_BAR_TYPE = 0
cdef Py_ssize_t _REC_SIZE[N_KINDS]

_KEY_IDS = {
    "T": K_T, "S": K_S, "t": K_t, "i": K_i, "x": K_x, "p": K_p, "s": K_s, "c": K_c, "z": K_z,
    "bx": K_bx, "bp": K_bp, "bs": K_bs, "ax": K_ax, "ap": K_ap, "as": K_as, "o": K_o, "h": K_h,
    "l": K_l, "v": K_v, "n": K_n, "vw": K_vw, "sc": K_sc, "rc": K_rc, "oi": K_oi, "op": K_op,
    "os": K_os, "ci": K_ci, "cp": K_cp, "cs": K_cs, "a": K_a, "u": K_u, "d": K_d,
}

# (key, record field, type, flags) per kind, checked in this order after "S". The reference
# decoder in tests/reference_decoder.py states the same schema independently.
_FIELDS = {
    _Kind.TRADE: [("t", "ts_ns", F_TS, R_REQ), ("i", "trade_id", F_ID, R_REQ),
                 ("p", "price", F_PRICE, R_REQ), ("s", "size", F_SIZE, R_REQ),
                 ("c", "conditions", F_CONDS, 0), ("x", "exchange", F_CODE, 0),
                 ("z", "tape", F_CODE, 0)],
    _Kind.QUOTE: [("t", "ts_ns", F_TS, R_REQ), ("bp", "bid_price", F_PRICE, R_REQ),
                 ("ap", "ask_price", F_PRICE, R_REQ), ("bs", "bid_size", F_SIZE, R_REQ),
                 ("as", "ask_size", F_SIZE, R_REQ), ("c", "conditions", F_CONDS, 0),
                 ("bx", "bid_exchange", F_CODE, 0), ("ax", "ask_exchange", F_CODE, 0),
                 ("z", "tape", F_CODE, 0)],
    _Kind.BAR: [("t", "ts_ns", F_TS, R_REQ), ("o", "open", F_PRICE, R_REQ),
               ("h", "high", F_PRICE, R_REQ), ("l", "low", F_PRICE, R_REQ),
               ("c", "close", F_PRICE, R_REQ), ("v", "volume", F_SIZE, R_REQ),
               ("vw", "vwap", F_PRICE, R_NAN), ("n", "trade_count", F_COUNT, 0)],
    _Kind.CORRECTION: [("t", "ts_ns", F_TS, R_REQ), ("oi", "orig_id", F_ID, R_REQ),
                      ("op", "orig_price", F_PRICE, R_REQ), ("os", "orig_size", F_SIZE, R_REQ),
                      ("ci", "corr_id", F_ID, R_REQ), ("cp", "corr_price", F_PRICE, R_REQ),
                      ("cs", "corr_size", F_SIZE, R_REQ), ("x", "exchange", F_CODE, 0),
                      ("z", "tape", F_CODE, 0)],
    _Kind.CANCEL: [("t", "ts_ns", F_TS, R_REQ), ("i", "trade_id", F_ID, R_REQ),
                  ("p", "price", F_PRICE, R_REQ), ("s", "size", F_SIZE, R_REQ),
                  ("x", "exchange", F_CODE, 0), ("a", "action", F_CODE, 0),
                  ("z", "tape", F_CODE, 0)],
    _Kind.STATUS: [("t", "ts_ns", F_TS, R_REQ), ("sc", "status_code", F_STR4, R_REQ),
                  ("rc", "reason_code", F_STR8, 0), ("z", "tape", F_CODE, 0)],
    _Kind.LULD: [("t", "ts_ns", F_TS, R_REQ), ("u", "limit_up", F_PRICE, R_REQ),
                ("d", "limit_down", F_PRICE, R_REQ), ("i", "indicator", F_CODE, 0),
                ("z", "tape", F_CODE, 0)],
    _Kind.IMBALANCE: [("t", "ts_ns", F_TS, R_REQ), ("p", "price", F_PRICE, R_REQ),
                     ("z", "tape", F_CODE, 0)],
}
FIELDS = {kind: tuple((key, name) for key, name, _t, _f in spec) for kind, spec in _FIELDS.items()}


cdef void _init_specs() except *:
    global _OFF_BAR_TYPE
    cdef int k, j
    sizes = {
        _Kind.TRADE: sizeof(TradeRec), _Kind.QUOTE: sizeof(QuoteRec), _Kind.BAR: sizeof(BarRec),
        _Kind.CORRECTION: sizeof(CorrectionRec), _Kind.CANCEL: sizeof(CancelRec),
        _Kind.STATUS: sizeof(StatusRec), _Kind.LULD: sizeof(LuldRec),
        _Kind.IMBALANCE: sizeof(ImbalanceRec),
    }
    for kind, spec in _FIELDS.items():
        k = int(kind)
        dt = _DTYPES[kind]
        if dt.itemsize != sizes[kind] or dt.itemsize > MAX_REC or dt.itemsize % 8:
            raise ImportError(f"{kind.name} dtype itemsize {dt.itemsize} != C struct {sizes[kind]}")
        _REC_SIZE[k] = dt.itemsize
        _OFF_TS[k] = dt.fields["ts_ns"][1]
        _OFF_SEQ[k] = dt.fields["seq"][1]
        if len(spec) > MAX_FIELDS:
            raise ImportError("too many fields")
        _NSPECS[k] = len(spec)
        for j, (key, name, ftype, flags) in enumerate(spec):
            _SPECS[k][j].key = _KEY_IDS[key]
            _SPECS[k][j].ftype = ftype
            _SPECS[k][j].flags = flags
            _SPECS[k][j].offset = dt.fields[name][1]
    _OFF_BAR_TYPE = _DTYPES[_Kind.BAR].fields["bar_type"][1]
    for kind in (_Kind.TRADE, _Kind.QUOTE):  # _put_tail: conditions start the last 8-byte word
        if _DTYPES[kind].fields["conditions"][1] + 8 != _DTYPES[kind].itemsize:
            raise ImportError(f"{kind.name}: conditions are not in the record's last word")


_init_specs()
if SYM_MAX != _MAX_SYMBOL_BYTES:
    raise ImportError("SYM_MAX and relentless_fast.symbols.MAX_SYMBOL_BYTES disagree")

# ---------------------------------------------------------------------------------------------
# Small pure-C helpers (no Python API).

cdef uchar _WS[256]
cdef int _KEY1[256]         # key id of each one-byte key, -1 for the others
cdef uchar _STR_STOP[256]   # '"', '\\' and control characters end the fast string loop
cdef double _POW10[23]
cdef int _KIND_OF[256]      # ring kind of each one-byte data type T, -1 for the others


cdef void _init_tables() noexcept:
    cdef int c
    cdef uchar cc
    cdef double x = 1.0
    for c in range(256):
        _WS[c] = c == 32 or c == 9 or c == 10 or c == 13
        _STR_STOP[c] = c == 34 or c == 92 or c < 32
        cc = <uchar>c
        _KEY1[c] = _key_id(&cc, 1)
        _KIND_OF[c] = -1
    _KIND_OF[116] = KIND_TRADE       # t
    _KIND_OF[113] = KIND_QUOTE       # q
    _KIND_OF[98] = KIND_BAR          # b
    _KIND_OF[117] = KIND_BAR         # u
    _KIND_OF[100] = KIND_BAR         # d
    _KIND_OF[99] = KIND_CORRECTION   # c
    _KIND_OF[120] = KIND_CANCEL      # x
    _KIND_OF[115] = KIND_STATUS      # s
    _KIND_OF[108] = KIND_LULD        # l
    _KIND_OF[105] = KIND_IMBALANCE   # i
    for c in range(23):
        _POW10[c] = x
        x *= 10.0


_init_tables()


cdef inline const uchar* _ws(const uchar* p, const uchar* end) noexcept nogil:
    while p < end and _WS[p[0]]:
        p += 1
    return p


cdef inline int _hexval(uchar c) noexcept nogil:
    if c >= 48 and c <= 57:
        return c - 48
    if c >= 97 and c <= 102:
        return c - 87
    if c >= 65 and c <= 70:
        return c - 55
    return -1


cdef inline int _hex4(const uchar* p, const uchar* end, uint32_t* out) noexcept nogil:
    """Read 4 hex digits: 0 ok, E_TRUNCATED, E_MALFORMED."""
    cdef int j, h
    cdef uint32_t v = 0
    if end - p < 4:
        return E_TRUNCATED
    for j in range(4):
        h = _hexval(p[j])
        if h < 0:
            return E_MALFORMED
        v = (v << 4) | <uint32_t>h
    out[0] = v
    return E_OK


cdef inline const uchar* _scan_string(const uchar* p, const uchar* end, int* flags,
                                     int* err) noexcept nogil:
    """``p`` just after the opening quote; returns the closing quote or NULL (err set)."""
    cdef uint64_t w, hit
    cdef unsigned int m16
    if end - p >= 2 and p[1] == 34 and not _STR_STOP[p[0]]:  # one-byte string: codes, types
        return p + 1
    if TP_HAVE_SSE2:
        while end - p >= 16:  # sixteen bytes at a time (SSE2)
            m16 = tp_stop16(p)
            if m16:
                p += __builtin_ctz(m16)
                if p[0] == 34:
                    return p
                return _scan_string_slow(p, end, flags, err)
            p += 16
    while end - p >= 8:  # eight bytes at a time: the lowest flagged byte is the first stop byte
        memcpy(&w, p, 8)
        hit = _swar_stop(w)
        if hit:
            p += __builtin_ctzll(hit) >> 3
            if p[0] == 34:
                return p
            return _scan_string_slow(p, end, flags, err)
        p += 8
    while p < end and not _STR_STOP[p[0]]:
        p += 1
    if p < end and p[0] == 34:
        return p
    return _scan_string_slow(p, end, flags, err)


cdef inline uint64_t _swar_stop(uint64_t w) noexcept nogil:
    """Non-zero when a byte of ``w`` is '"', '\\' or below 0x20 (exact, SWAR zero-byte test)."""
    cdef uint64_t ones = 0x0101010101010101ULL
    cdef uint64_t high = 0x8080808080808080ULL
    cdef uint64_t q = w ^ (ones * 0x22)
    cdef uint64_t b = w ^ (ones * 0x5C)
    return (((q - ones) & ~q) | ((b - ones) & ~b) | ((w - ones * 0x20) & ~w)) & high


cdef const uchar* _scan_string_slow(const uchar* p, const uchar* end, int* flags,
                                    int* err) noexcept nogil:
    cdef uchar c
    cdef uint32_t cp, lo
    cdef int r
    while True:
        while p < end and not _STR_STOP[p[0]]:
            p += 1
        if p >= end:
            err[0] = E_TRUNCATED
            return NULL
        c = p[0]
        if c == 34:
            return p
        if c < 32:
            err[0] = E_MALFORMED
            return NULL
        # backslash escape
        flags[0] |= FL_ESC
        p += 1
        if p >= end:
            err[0] = E_TRUNCATED
            return NULL
        c = p[0]
        if c == 117:  # 'u'
            r = _hex4(p + 1, end, &cp)
            if r != E_OK:
                err[0] = r
                return NULL
            p += 5
            if cp >= 0xDC00 and cp <= 0xDFFF:
                err[0] = E_MALFORMED
                return NULL
            if cp >= 0xD800 and cp <= 0xDBFF:
                if end - p < 2:
                    err[0] = E_TRUNCATED
                    return NULL
                if p[0] != 92 or p[1] != 117:
                    err[0] = E_MALFORMED
                    return NULL
                r = _hex4(p + 2, end, &lo)
                if r != E_OK:
                    err[0] = r
                    return NULL
                if lo < 0xDC00 or lo > 0xDFFF:
                    err[0] = E_MALFORMED
                    return NULL
                p += 6
        elif c == 34 or c == 92 or c == 47 or c == 98 or c == 102 or c == 110 or c == 114 or c == 116:
            p += 1
        else:
            err[0] = E_MALFORMED
            return NULL


cdef inline Py_ssize_t _put_utf8(uint32_t cp, uchar* tmp) noexcept nogil:
    if cp < 0x80:
        tmp[0] = <uchar>cp
        return 1
    if cp < 0x800:
        tmp[0] = <uchar>(0xC0 | (cp >> 6))
        tmp[1] = <uchar>(0x80 | (cp & 0x3F))
        return 2
    if cp < 0x10000:
        tmp[0] = <uchar>(0xE0 | (cp >> 12))
        tmp[1] = <uchar>(0x80 | ((cp >> 6) & 0x3F))
        tmp[2] = <uchar>(0x80 | (cp & 0x3F))
        return 3
    tmp[0] = <uchar>(0xF0 | (cp >> 18))
    tmp[1] = <uchar>(0x80 | ((cp >> 12) & 0x3F))
    tmp[2] = <uchar>(0x80 | ((cp >> 6) & 0x3F))
    tmp[3] = <uchar>(0x80 | (cp & 0x3F))
    return 4


cdef Py_ssize_t _unescape(const uchar* p, Py_ssize_t n, uchar* out, Py_ssize_t cap) noexcept nogil:
    """Decode an escaped JSON string body (validated by _scan_string) into at most ``cap`` bytes of
    ``out``; returns the full decoded length in bytes."""
    cdef const uchar* end = p + n
    cdef Py_ssize_t total = 0, k, m
    cdef uchar tmp[4]
    cdef uchar c
    cdef uint32_t cp = 0, lo = 0
    while p < end:
        c = p[0]
        if c != 92:
            tmp[0] = c
            m = 1
            p += 1
        else:
            c = p[1]
            if c == 117:
                _hex4(p + 2, end, &cp)
                p += 6
                if cp >= 0xD800 and cp <= 0xDBFF:
                    _hex4(p + 2, end, &lo)
                    p += 6
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)
                m = _put_utf8(cp, tmp)
            else:
                p += 2
                if c == 98:
                    c = 8
                elif c == 102:
                    c = 12
                elif c == 110:
                    c = 10
                elif c == 114:
                    c = 13
                elif c == 116:
                    c = 9
                tmp[0] = c
                m = 1
        for k in range(m):
            if total + k < cap:
                out[total + k] = tmp[k]
        total += m
    return total


cdef inline Py_ssize_t _str_bytes(const Val* v, uchar* out, Py_ssize_t cap) noexcept nogil:
    """Copy up to ``cap`` decoded bytes of string value ``v``; returns its full decoded length."""
    cdef Py_ssize_t j, m
    if v.flags & FL_ESC:
        return _unescape(v.p, v.n, out, cap)
    m = v.n if v.n < cap else cap
    for j in range(m):  # short copies: a loop beats a call to memcpy
        out[j] = v.p[j]
    return v.n


cdef const uchar* _scan_number(const uchar* p, const uchar* end, int* flags, int* err) noexcept nogil:
    """Validate a JSON number starting at ``p``; returns the byte after it or NULL."""
    flags[0] = FL_INT
    if p < end and p[0] == 45:
        p += 1
    if p >= end:
        err[0] = E_TRUNCATED
        return NULL
    if p[0] == 48:
        p += 1
    elif p[0] >= 49 and p[0] <= 57:
        while p < end and p[0] >= 48 and p[0] <= 57:
            p += 1
    else:
        err[0] = E_MALFORMED
        return NULL
    if p < end and p[0] == 46:
        flags[0] = 0
        p += 1
        if p >= end:
            err[0] = E_TRUNCATED
            return NULL
        if not (p[0] >= 48 and p[0] <= 57):
            err[0] = E_MALFORMED
            return NULL
        while p < end and p[0] >= 48 and p[0] <= 57:
            p += 1
    if p < end and (p[0] == 101 or p[0] == 69):
        flags[0] = 0
        p += 1
        if p < end and (p[0] == 43 or p[0] == 45):
            p += 1
        if p >= end:
            err[0] = E_TRUNCATED
            return NULL
        if not (p[0] >= 48 and p[0] <= 57):
            err[0] = E_MALFORMED
            return NULL
        while p < end and p[0] >= 48 and p[0] <= 57:
            p += 1
    if p >= end:
        # a number is never the last byte of a frame: it must be followed by , ] or }
        err[0] = E_TRUNCATED
        return NULL
    return p


cdef double _slow_double(const uchar* p, Py_ssize_t n) noexcept nogil:
    cdef char buf[128]
    cdef char* heap
    cdef double d
    if n < 128:
        memcpy(buf, p, n)
        buf[n] = 0
        return strtod(buf, NULL)
    heap = <char*>malloc(n + 1)
    if heap == NULL:
        return NAN
    memcpy(heap, p, n)
    heap[n] = 0
    d = strtod(heap, NULL)
    free(heap)
    return d


cdef inline const uchar* _lex_number(const uchar* p, const uchar* end, Val* v,
                                     int* err) noexcept nogil:
    """Validate the JSON number at ``p`` and keep its decimal mantissa (up to 19 significant
    digits) and exponent in ``v`` (u, i), so the value needs no second pass."""
    cdef const uchar* start = p
    cdef const uchar* fstart
    cdef uint64_t m = 0, m0
    cdef uchar d
    cdef int nd = 0, e10 = 0, ex = 0, flags = FL_INT
    cdef bint eneg = False
    cdef uchar c
    cdef const uchar* q
    cdef Py_ssize_t j, k
    if p[0] == 45:
        flags |= FL_NEG
        p += 1
        if p >= end:
            err[0] = E_TRUNCATED
            return NULL
    c = p[0]
    if c == 48:
        p += 1
    elif c >= 49 and c <= 57:
        q = p
        while q < end:  # one pass: validate and accumulate (wraps past 19 digits, fixed below)
            d = <uchar>(q[0] - 48)
            if d >= 10:
                break
            m = m * 10 + d
            q += 1
        k = q - p
        if k > 19:  # rare: keep the first 19 digits
            flags |= FL_SLOW
            k = 19
            m = 0
            for j in range(k):
                m = m * 10 + (p[j] - 48)
        nd = <int>k
        p = q
    else:
        err[0] = E_MALFORMED
        return NULL
    if p < end and p[0] == 46:
        flags &= ~FL_INT
        p += 1
        fstart = p
        if m == 0:  # leading zeros of 0.000x only move the exponent
            while p < end and p[0] == 48:
                p += 1
            e10 -= <int>(p - fstart)
        m0 = m
        q = p
        while q < end:
            d = <uchar>(q[0] - 48)
            if d >= 10:
                break
            m = m * 10 + d
            q += 1
        if q == fstart:
            err[0] = E_TRUNCATED if q >= end else E_MALFORMED
            return NULL
        k = q - p
        if k > 19 - nd:  # rare: keep 19 significant digits in all
            flags |= FL_SLOW
            k = 19 - nd
            m = m0
            for j in range(k):
                m = m * 10 + (p[j] - 48)
        nd += <int>k
        e10 -= <int>k
        p = q
    if p < end and (p[0] == 101 or p[0] == 69):
        flags &= ~FL_INT
        p += 1
        if p < end and (p[0] == 43 or p[0] == 45):
            eneg = p[0] == 45
            p += 1
        if p >= end:
            err[0] = E_TRUNCATED
            return NULL
        if not (p[0] >= 48 and p[0] <= 57):
            err[0] = E_MALFORMED
            return NULL
        while p < end and p[0] >= 48 and p[0] <= 57:
            if ex < 100000:
                ex = ex * 10 + (p[0] - 48)
            p += 1
        e10 += -ex if eneg else ex
    if p >= end:
        err[0] = E_TRUNCATED
        return NULL
    v.vt = VT_NUM
    v.flags = flags
    v.u = m
    v.i = e10
    v.p = start
    v.n = p - start
    return p


cdef inline double _num_double(const Val* v) noexcept nogil:
    """Correctly rounded double of a lexed JSON number (Clinger's fast path, else strtod)."""
    cdef double d
    cdef int64_t e10 = v.i
    if not (v.flags & FL_SLOW):
        if v.u == 0:
            return -0.0 if v.flags & FL_NEG else 0.0
        if v.u <= ((<uint64_t>1) << 53) and e10 >= -22 and e10 <= 22:
            d = <double>v.u
            if e10 >= 0:
                d = d * _POW10[e10]
            else:
                d = d / _POW10[-e10]
            return -d if v.flags & FL_NEG else d
    return _slow_double(v.p, v.n)


cdef inline int _json_uint(const uchar* p, Py_ssize_t n, uint64_t* out) noexcept nogil:
    cdef const uchar* end = p + n
    cdef uint64_t m = 0, dgt
    if p[0] == 45:
        if n == 2 and p[1] == 48:  # "-0"
            out[0] = 0
            return 0
        return -1
    while p < end:
        dgt = p[0] - 48
        if m > (UINT64_MAX - dgt) // 10:
            return -1
        m = m * 10 + dgt
        p += 1
    out[0] = m
    return 0


# ---------------------------------------------------------------------------------------------
# Timestamps

cdef inline int64_t _days_from_civil(int64_t y, int64_t m, int64_t d) noexcept nogil:
    cdef int64_t era, yoe, doy, doe
    if m <= 2:
        y -= 1
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


cdef inline int _digits(const uchar* p, int n, int* out) noexcept nogil:
    cdef int v = 0, j
    for j in range(n):
        if p[j] < 48 or p[j] > 57:
            return -1
        v = v * 10 + (p[j] - 48)
    out[0] = v
    return 0


cdef inline int _ts_from_parts(int64_t sec, int64_t nsec, int64_t* out) noexcept nogil:
    """seconds + nanoseconds since the epoch to int64 ns; only 1970..2262 is accepted."""
    if sec < 0 or nsec < 0 or nsec > 999999999:
        return -1
    if sec > 9223372036LL or (sec == 9223372036LL and nsec > 854775807LL):
        return -1
    out[0] = sec * 1000000000 + nsec
    return 0


ctypedef struct TsCache:
    uint64_t w0         # first 16 bytes ("YYYY-MM-DDTHH:MM") of the last valid timestamp
    uint64_t w1
    int64_t base        # its seconds since the epoch at second 00 (before any offset)


cdef int _rfc3339(const uchar* s, Py_ssize_t n, int64_t* out, TsCache* cache) noexcept nogil:
    """``YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|+HH:MM|-HH:MM)`` to ns since the epoch: 0 ok, -1 bad.
    The date-hour-minute prefix of the previous timestamp is cached (streams are in order)."""
    cdef int year, mon, day, hh, mm, ss, oh, om, mdays, j
    cdef int64_t frac = 0, sec, off = 0, base
    cdef uint64_t w0, w1
    cdef Py_ssize_t k
    cdef int nfrac = 0
    if n < 20:
        return -1
    memcpy(&w0, s, 8)
    memcpy(&w1, s + 8, 8)
    if w0 == cache.w0 and w1 == cache.w1:
        base = cache.base
    else:
        if (_digits(s, 4, &year) or s[4] != 45 or _digits(s + 5, 2, &mon) or s[7] != 45
                or _digits(s + 8, 2, &day) or not (s[10] == 84 or s[10] == 116)
                or _digits(s + 11, 2, &hh) or s[13] != 58 or _digits(s + 14, 2, &mm)):
            return -1
        if mon < 1 or mon > 12 or day < 1 or hh > 23 or mm > 59:
            return -1
        if mon == 2:
            mdays = 29 if (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)) else 28
        elif mon == 4 or mon == 6 or mon == 9 or mon == 11:
            mdays = 30
        else:
            mdays = 31
        if day > mdays:
            return -1
        base = _days_from_civil(year, mon, day) * 86400 + hh * 3600 + mm * 60
        cache.w0 = w0
        cache.w1 = w1
        cache.base = base
    if s[16] != 58 or _digits(s + 17, 2, &ss) or ss > 59:
        return -1
    k = 19
    if s[k] == 46:
        k += 1
        while k < n and s[k] >= 48 and s[k] <= 57:
            if nfrac == 9:
                return -1
            frac = frac * 10 + (s[k] - 48)
            nfrac += 1
            k += 1
        if nfrac == 0:
            return -1
        for j in range(nfrac, 9):
            frac *= 10
    if k >= n:
        return -1
    if s[k] == 90 or s[k] == 122:
        if k + 1 != n:
            return -1
    elif s[k] == 43 or s[k] == 45:
        if n - k != 6 or _digits(s + k + 1, 2, &oh) or s[k + 3] != 58 or _digits(s + k + 4, 2, &om):
            return -1
        if oh > 23 or om > 59:
            return -1
        off = oh * 3600 + om * 60
        if s[k] == 45:
            off = -off
    else:
        return -1
    sec = base + ss - off
    return _ts_from_parts(sec, frac, out)


# ---------------------------------------------------------------------------------------------
# JSON structure

cdef const uchar* _json_skip(const uchar* p, const uchar* end, int depth, int* err) noexcept nogil:
    """Validate and skip one JSON value at ``p`` (whitespace already skipped)."""
    cdef int flags = 0
    cdef uchar c
    if p >= end:
        err[0] = E_TRUNCATED
        return NULL
    c = p[0]
    if c == 34:
        p = _scan_string(p + 1, end, &flags, err)
        if p == NULL:
            return NULL
        return p + 1
    if c == 45 or (c >= 48 and c <= 57):
        return _scan_number(p, end, &flags, err)
    if c == 91 or c == 123:
        if depth >= MAX_DEPTH:
            err[0] = E_MALFORMED
            return NULL
        p = _ws(p + 1, end)
        if p >= end:
            err[0] = E_TRUNCATED
            return NULL
        if p[0] == c + 2:  # ']' or '}'
            return p + 1
        while True:
            if c == 123:
                if p[0] != 34:
                    err[0] = E_MALFORMED
                    return NULL
                p = _scan_string(p + 1, end, &flags, err)
                if p == NULL:
                    return NULL
                p = _ws(p + 1, end)
                if p >= end:
                    err[0] = E_TRUNCATED
                    return NULL
                if p[0] != 58:
                    err[0] = E_MALFORMED
                    return NULL
                p = _ws(p + 1, end)
            p = _json_skip(p, end, depth + 1, err)
            if p == NULL:
                return NULL
            p = _ws(p, end)
            if p >= end:
                err[0] = E_TRUNCATED
                return NULL
            if p[0] == 44:
                p = _ws(p + 1, end)
                if p >= end:
                    err[0] = E_TRUNCATED
                    return NULL
                continue
            if p[0] == c + 2:
                return p + 1
            err[0] = E_MALFORMED
            return NULL
    return _skip_literal(p, end, err)


cdef inline const uchar* _skip_literal(const uchar* p, const uchar* end, int* err) noexcept nogil:
    cdef const char* lit
    cdef Py_ssize_t n, k
    if p[0] == 116:
        lit = b"true"
        n = 4
    elif p[0] == 102:
        lit = b"false"
        n = 5
    elif p[0] == 110:
        lit = b"null"
        n = 4
    else:
        err[0] = E_MALFORMED
        return NULL
    for k in range(n):
        if p + k >= end:
            err[0] = E_TRUNCATED
            return NULL
        if p[k] != <uchar>lit[k]:
            err[0] = E_MALFORMED
            return NULL
    return p + n


cdef inline const uchar* _json_capture(const uchar* p, const uchar* end, Val* v, int* err) noexcept nogil:
    """Capture the value at ``p`` into ``v`` (numbers and strings as spans, parsed lazily)."""
    cdef uchar c
    cdef const uchar* q
    if p >= end:
        err[0] = E_TRUNCATED
        return NULL
    c = p[0]
    v.flags = 0
    if c == 34:
        q = _scan_string(p + 1, end, &v.flags, err)
        if q == NULL:
            return NULL
        v.vt = VT_STR
        v.p = p + 1
        v.n = q - (p + 1)
        return q + 1
    if c == 45 or (c >= 48 and c <= 57):
        return _lex_number(p, end, v, err)
    if c == 91:
        q = _json_str_array(p, end, v, err)
        if q != NULL or err[0] != E_OK:
            return q
    q = _json_skip(p, end, 0, err)
    if q == NULL:
        return NULL
    if c == 91:
        v.vt = VT_ARR
        v.p = p
        v.n = q - p
    elif c == 110:
        v.vt = VT_NULL
    else:
        v.vt = VT_OTHER
    return q


cdef inline const uchar* _json_str_array(const uchar* p, const uchar* end, Val* v,
                                         int* err) noexcept nogil:
    """Fast path for an array of strings (conditions): keeps the first byte of the first four
    strings in ``v.u``. Returns NULL with ``err`` untouched when an element is not a string."""
    cdef const uchar* q = _ws(p + 1, end)
    cdef const uchar* e
    cdef uint64_t packed = 0
    cdef int count = 0, sflags
    cdef uchar b[1]
    while True:
        if q >= end:
            err[0] = E_TRUNCATED
            return NULL
        if q[0] == 93 and count == 0:
            break
        if q[0] != 34:
            return NULL
        sflags = 0
        e = _scan_string(q + 1, end, &sflags, err)
        if e == NULL:
            return NULL
        if count < 4:
            if sflags & FL_ESC:
                b[0] = 0
                _unescape(q + 1, e - q - 1, b, 1)
            else:
                b[0] = q[1] if e > q + 1 else 0
            packed |= (<uint64_t>b[0]) << (8 * count)
        count += 1
        q = _ws(e + 1, end)
        if q >= end:
            err[0] = E_TRUNCATED
            return NULL
        if q[0] == 44:
            q = _ws(q + 1, end)
            continue
        if q[0] == 93:
            break
        err[0] = E_MALFORMED
        return NULL
    v.vt = VT_ARR
    v.flags = FL_CONDS
    v.u = packed
    v.p = p
    v.n = q + 1 - p
    return q + 1


cdef inline int _key_id(const uchar* k, Py_ssize_t n) noexcept nogil:
    cdef uchar a, b
    if n == 1:
        a = k[0]
        if a == 84: return K_T
        if a == 83: return K_S
        if a == 116: return K_t
        if a == 105: return K_i
        if a == 120: return K_x
        if a == 112: return K_p
        if a == 115: return K_s
        if a == 99: return K_c
        if a == 122: return K_z
        if a == 111: return K_o
        if a == 104: return K_h
        if a == 108: return K_l
        if a == 118: return K_v
        if a == 110: return K_n
        if a == 97: return K_a
        if a == 117: return K_u
        if a == 100: return K_d
        return -1
    if n == 2:
        a = k[0]
        b = k[1]
        if a == 98:  # b
            if b == 120: return K_bx
            if b == 112: return K_bp
            if b == 115: return K_bs
        elif a == 97:  # a
            if b == 120: return K_ax
            if b == 112: return K_ap
            if b == 115: return K_as
        elif a == 118 and b == 119:
            return K_vw
        elif a == 115 and b == 99:
            return K_sc
        elif a == 114 and b == 99:
            return K_rc
        elif a == 111:  # o
            if b == 105: return K_oi
            if b == 112: return K_op
            if b == 115: return K_os
        elif a == 99:  # c
            if b == 105: return K_ci
            if b == 112: return K_cp
            if b == 115: return K_cs
    return -1


cdef const uchar* _json_object(TickParser parser, const uchar* p, const uchar* end, Val* vals,
                               uint64_t* seen, int* err) noexcept:
    """``p`` at '{': capture known keys into ``vals``; returns the byte after '}' or NULL.
    Compact JSON (no whitespace, one- or two-byte keys) takes the short paths."""
    cdef const uchar* q
    cdef int flags, kid
    cdef Py_ssize_t klen
    cdef uchar kbuf[4]
    cdef uint64_t got = 0
    cdef uint32_t w4
    seen[0] = 0
    p = _ws(p + 1, end)
    if p >= end:
        err[0] = E_TRUNCATED
        return NULL
    if p[0] == 125:
        return p + 1
    while True:
        if TP_LITTLE_ENDIAN and end - p > 5:
            memcpy(&w4, p, 4)
        else:
            w4 = 0
        if (w4 & 0xFFFF00FFU) == 0x3A220022U and not _STR_STOP[p[1]]:  # compact `"k":`
            kid = _KEY1[p[1]]
            p += 4
        elif ((w4 & 0xFF0000FFU) == 0x22000022U and p[4] == 58 and not _STR_STOP[p[1]]
              and not _STR_STOP[p[2]]):  # compact `"kk":`
            kid = _key_id(p + 1, 2)
            p += 5
        else:
            if p[0] != 34:
                err[0] = E_MALFORMED
                return NULL
            if end - p > 3 and p[2] == 34 and not _STR_STOP[p[1]]:  # one-byte key
                kid = _KEY1[p[1]]
                q = p + 3
            elif end - p > 4 and p[3] == 34 and not _STR_STOP[p[1]] and not _STR_STOP[p[2]]:
                kid = _key_id(p + 1, 2)
                q = p + 4
            else:
                flags = 0
                q = _scan_string(p + 1, end, &flags, err)
                if q == NULL:
                    return NULL
                if flags & FL_ESC:
                    klen = _unescape(p + 1, q - p - 1, kbuf, 4)
                    kid = _key_id(kbuf, klen) if klen <= 4 else -1
                else:
                    kid = _key_id(p + 1, q - p - 1)
                q += 1
            # q: just after the key's closing quote
            if q < end and q[0] == 58:
                p = q + 1
            else:
                p = _ws(q, end)
                if p >= end:
                    err[0] = E_TRUNCATED
                    return NULL
                if p[0] != 58:
                    err[0] = E_MALFORMED
                    return NULL
                p += 1
        if p < end and _WS[p[0]]:
            p = _ws(p, end)
        if kid >= 0:
            p = _json_capture(p, end, &vals[kid], err)
            got |= (<uint64_t>1) << kid
            if kid == K_S and p != NULL and got & 1:  # 1 == 1 << K_T: the type came first
                parser._prefetch(vals, end)
        else:
            p = _json_skip(p, end, 1, err)
        if p == NULL:
            return NULL
        if end - p > 1 and p[0] == 44 and p[1] == 34:  # ',"': the next key follows directly
            p += 1
            continue
        p = _ws(p, end)
        if p >= end:
            err[0] = E_TRUNCATED
            return NULL
        if p[0] == 44:
            p = _ws(p + 1, end)
            if p >= end:
                err[0] = E_TRUNCATED
                return NULL
            continue
        if p[0] == 125:
            seen[0] = got
            return p + 1
        err[0] = E_MALFORMED
        return NULL


# ---------------------------------------------------------------------------------------------
# msgpack structure

cdef inline uint64_t _be(const uchar* p, int n) noexcept nogil:
    cdef uint64_t v = 0
    cdef int j
    for j in range(n):
        v = (v << 8) | p[j]
    return v


cdef const uchar* _mp_capture(const uchar* p, const uchar* end, Val* v, int depth,
                              int* err) noexcept nogil:
    """Decode (scalars) or skip (containers) one msgpack object; fills ``v`` when not NULL."""
    cdef uchar c
    cdef Py_ssize_t rem = end - p
    cdef Py_ssize_t ln = 0, hdr = 0, count = 0, k
    cdef int vt = VT_OTHER, is_map = 0
    cdef int64_t iv = 0
    cdef uint64_t uv = 0
    cdef double fv = 0
    cdef int8_t et
    cdef uint32_t f32
    cdef float ff
    cdef uint64_t d64
    cdef const uchar* q
    if rem <= 0:
        err[0] = E_TRUNCATED
        return NULL
    c = p[0]
    if c <= 0x7F:
        vt = VT_INT
        iv = c
        hdr = 1
    elif c >= 0xE0:
        vt = VT_INT
        iv = <int8_t>c
        hdr = 1
    elif c >= 0xA0 and c <= 0xBF:
        vt = VT_STR
        hdr = 1
        ln = c & 0x1F
    elif c >= 0x90 and c <= 0x9F:
        hdr = 1
        count = c & 0x0F
        vt = VT_ARR
    elif c >= 0x80 and c <= 0x8F:
        hdr = 1
        count = c & 0x0F
        is_map = 1
    elif c == 0xC0:
        vt = VT_NULL
        hdr = 1
    elif c == 0xC2 or c == 0xC3:
        hdr = 1
    elif c >= 0xCC and c <= 0xCF:  # uint 8/16/32/64
        hdr = 1 + (1 << (c - 0xCC))
        if rem < hdr:
            err[0] = E_TRUNCATED
            return NULL
        uv = _be(p + 1, hdr - 1)
        if uv > <uint64_t>INT64_MAX:
            vt = VT_UINT
        else:
            vt = VT_INT
            iv = <int64_t>uv
    elif c >= 0xD0 and c <= 0xD3:  # int 8/16/32/64
        hdr = 1 + (1 << (c - 0xD0))
        if rem < hdr:
            err[0] = E_TRUNCATED
            return NULL
        uv = _be(p + 1, hdr - 1)
        vt = VT_INT
        if hdr == 2:
            iv = <int8_t>uv
        elif hdr == 3:
            iv = <int16_t>uv
        elif hdr == 5:
            iv = <int32_t>uv
        else:
            iv = <int64_t>uv
    elif c == 0xCA:
        hdr = 5
        if rem < hdr:
            err[0] = E_TRUNCATED
            return NULL
        f32 = <uint32_t>_be(p + 1, 4)
        memcpy(&ff, &f32, 4)
        vt = VT_FLOAT
        fv = ff
    elif c == 0xCB:
        hdr = 9
        if rem < hdr:
            err[0] = E_TRUNCATED
            return NULL
        d64 = _be(p + 1, 8)
        memcpy(&fv, &d64, 8)
        vt = VT_FLOAT
    elif c == 0xD9 or c == 0xDA or c == 0xDB or c == 0xC4 or c == 0xC5 or c == 0xC6:
        k = 1 << ((c - 0xD9) if c >= 0xD9 else (c - 0xC4))
        hdr = 1 + k
        if rem < hdr:
            err[0] = E_TRUNCATED
            return NULL
        ln = <Py_ssize_t>_be(p + 1, <int>k)
        vt = VT_STR if c >= 0xD9 else VT_OTHER
    elif c == 0xDC or c == 0xDD or c == 0xDE or c == 0xDF:
        k = 2 if (c == 0xDC or c == 0xDE) else 4
        hdr = 1 + k
        if rem < hdr:
            err[0] = E_TRUNCATED
            return NULL
        count = <Py_ssize_t>_be(p + 1, <int>k)
        if c <= 0xDD:
            vt = VT_ARR
        else:
            is_map = 1
    elif (c >= 0xD4 and c <= 0xD8) or (c >= 0xC7 and c <= 0xC9):
        if c >= 0xD4:
            ln = 1 << (c - 0xD4)
            hdr = 2
        else:
            k = 1 << (c - 0xC7)
            hdr = 2 + k
            if rem < hdr:
                err[0] = E_TRUNCATED
                return NULL
            ln = <Py_ssize_t>_be(p + 1, <int>k)
        if rem < hdr or rem - hdr < ln:
            err[0] = E_TRUNCATED
            return NULL
        et = <int8_t>p[hdr - 1]
        if v != NULL:
            v.vt = VT_OTHER
            if et == -1:
                q = p + hdr
                if ln == 4:
                    v.vt = VT_TS
                    v.i = <int64_t>_be(q, 4)
                    v.u = 0
                elif ln == 8:
                    d64 = _be(q, 8)
                    v.vt = VT_TS
                    v.i = <int64_t>(d64 & 0x3FFFFFFFFULL)
                    v.u = d64 >> 34
                elif ln == 12:
                    v.vt = VT_TS
                    v.u = _be(q, 4)
                    v.i = <int64_t>_be(q + 4, 8)
                else:
                    v.vt = VT_TS
                    v.u = 1000000000  # invalid: reported as bad_timestamp
        return p + hdr + ln
    else:  # 0xC1 never used
        err[0] = E_MALFORMED
        return NULL
    if rem < hdr:
        err[0] = E_TRUNCATED
        return NULL
    if ln:
        if rem - hdr < ln:
            err[0] = E_TRUNCATED
            return NULL
    if v != NULL:
        v.vt = vt
        v.flags = FL_MP
        v.i = iv
        v.u = uv
        v.f = fv
        v.p = p + hdr
        v.end = end
        v.n = count if vt == VT_ARR else ln
        if vt == VT_OTHER and is_map:
            v.vt = VT_OTHER
    q = p + hdr + ln
    if count:
        if depth >= MAX_DEPTH:
            err[0] = E_MALFORMED
            return NULL
        if is_map:
            count *= 2
        for k in range(count):
            q = _mp_capture(q, end, NULL, depth + 1, err)
            if q == NULL:
                return NULL
    return q


cdef inline int _mp_header(const uchar* p, const uchar* end, int want_map, Py_ssize_t* count,
                           Py_ssize_t* hdr) noexcept nogil:
    """Array (want_map=0) or map header: 1 found, 0 other type, E_TRUNCATED."""
    cdef uchar c
    cdef Py_ssize_t rem = end - p
    if rem <= 0:
        return E_TRUNCATED
    c = p[0]
    if want_map:
        if c >= 0x80 and c <= 0x8F:
            count[0] = c & 0x0F
            hdr[0] = 1
            return 1
        if c == 0xDE or c == 0xDF:
            hdr[0] = 3 if c == 0xDE else 5
            if rem < hdr[0]:
                return E_TRUNCATED
            count[0] = <Py_ssize_t>_be(p + 1, <int>hdr[0] - 1)
            return 1
        return 0
    if c >= 0x90 and c <= 0x9F:
        count[0] = c & 0x0F
        hdr[0] = 1
        return 1
    if c == 0xDC or c == 0xDD:
        hdr[0] = 3 if c == 0xDC else 5
        if rem < hdr[0]:
            return E_TRUNCATED
        count[0] = <Py_ssize_t>_be(p + 1, <int>hdr[0] - 1)
        return 1
    return 0


cdef const uchar* _mp_object(TickParser parser, const uchar* p, const uchar* end,
                             Py_ssize_t npairs, Val* vals, uint64_t* seen, int* err) noexcept:
    """``p`` after a map header of ``npairs``: capture known str keys into ``vals``."""
    cdef Py_ssize_t k, klen, hdr
    cdef uchar c
    cdef int kid
    seen[0] = 0
    for k in range(npairs):
        if p >= end:
            err[0] = E_TRUNCATED
            return NULL
        c = p[0]
        kid = -1
        if c >= 0xA0 and c <= 0xBF:
            klen = c & 0x1F
            hdr = 1
        elif c == 0xD9:
            if end - p < 2:
                err[0] = E_TRUNCATED
                return NULL
            klen = p[1]
            hdr = 2
        else:
            klen = -1
        if klen >= 0:
            if end - p - hdr < klen:
                err[0] = E_TRUNCATED
                return NULL
            kid = _key_id(p + hdr, klen)
            p += hdr + klen
        else:  # a non-str key (or str16/32): skip it, then its value below
            p = _mp_capture(p, end, NULL, 1, err)
            if p == NULL:
                return NULL
        if kid >= 0:
            p = _mp_capture(p, end, &vals[kid], 1, err)
            seen[0] |= (<uint64_t>1) << kid
            if kid == K_S and p != NULL and seen[0] & 1:  # 1 == 1 << K_T: the type came first
                parser._prefetch(vals, end)
        else:
            p = _mp_capture(p, end, NULL, 1, err)
        if p == NULL:
            return NULL
    return p


# ---------------------------------------------------------------------------------------------
# Field conversion (shared by both encodings). Return 0 ok or a drop reason.

cdef inline int _get_double(const Val* v, double* out) noexcept nogil:
    if v.vt == VT_NUM:
        out[0] = _num_double(v)
    elif v.vt == VT_FLOAT:
        out[0] = v.f
    elif v.vt == VT_INT:
        out[0] = <double>v.i
    elif v.vt == VT_UINT:
        out[0] = <double>v.u
    else:
        return -1
    return 0


cdef inline int _conds(const Val* v, uchar* out) noexcept nogil:
    """First byte of each of the first four condition strings; -1 when not an array of strings."""
    cdef const uchar* p
    cdef const uchar* end
    cdef const uchar* q
    cdef Py_ssize_t j = 0, k
    cdef Val e
    cdef uchar b[1]
    cdef int err = 0
    if v.vt != VT_ARR:
        return -1
    if v.flags & FL_CONDS:
        for j in range(4):
            out[j] = <uchar>(v.u >> (8 * j))
        return 0
    if v.flags & FL_MP:
        p = v.p
        end = v.end  # elements were bounds-checked by the capture
        for k in range(v.n):
            p = _mp_capture(p, end, &e, 1, &err)
            if e.vt != VT_STR:
                return -1
            if j < 4:
                out[j] = e.p[0] if e.n > 0 else 0
                j += 1
        return 0
    p = _ws(v.p + 1, v.p + v.n)
    end = v.p + v.n
    if p[0] == 93:
        return 0
    while True:
        if p[0] != 34:
            return -1
        e.flags = 0
        q = _scan_string(p + 1, end, &e.flags, &err)
        if j < 4:
            e.p = p + 1
            e.n = q - p - 1
            out[j] = b[0] if _str_bytes(&e, b, 1) > 0 else 0
            j += 1
        p = _ws(q + 1, end)
        if p[0] == 93:
            return 0
        p = _ws(p + 1, end)  # ','


# ---------------------------------------------------------------------------------------------
# Symbol lookup: open addressing over zero-padded 16-byte keys.

ctypedef struct SymSlot:
    uint64_t w0
    uint64_t w1
    int32_t len
    int32_t id


cdef inline uint64_t _sym_hash(uint64_t w0, uint64_t w1) noexcept nogil:
    cdef uint64_t h = w0 * 0x9E3779B97F4A7C15ULL ^ w1 * 0xC2B2AE3D27D4EB4FULL
    return h ^ (h >> 29)


# ---------------------------------------------------------------------------------------------

cdef class TickRings:
    """Preallocated per-kind, per-symbol ring buffers of the records in ``relentless_fast.records``.

    ``data(kind)`` has shape ``(n_symbols, 2 * cap)``: record number ``j`` of symbol ``s`` is written
    at both ``data[s, j % cap]`` and ``data[s, j % cap + cap]`` (a mirrored ring), so the last
    ``n <= cap`` records are always one contiguous zero-copy slice (see :meth:`last`).
    ``heads(kind)[s]`` counts every record ever written for ``s``; ``overflow(kind)[s]`` counts the
    records overwritten. A record is complete (both copies) before its head moves.

    .. DANGER::
       Single writer. Exactly one :class:`TickParser` writes into a ``TickRings``; readers run on the
       same thread between two parse calls. A view from :meth:`last` or :meth:`data` shows whatever
       the next parse writes: copy what must outlive it.
    """

    cdef readonly Py_ssize_t n_symbols
    cdef list _data
    cdef list _heads
    cdef list _overflow
    cdef char* _base[N_KINDS]
    cdef Py_ssize_t _row[N_KINDS]
    cdef Py_ssize_t _size[N_KINDS]
    cdef uint64_t _cap[N_KINDS]
    cdef uint64_t _mask[N_KINDS]    # cap - 1 when cap is a power of two (no division), else 0
    cdef uint64_t* _head[N_KINDS]
    cdef uint64_t* _ovf[N_KINDS]
    cdef bint _has_writer

    def __init__(self, n_symbols, capacity=DEFAULT_CAPACITY):
        cdef int k
        cdef Py_ssize_t cap
        if int(n_symbols) < 1:
            raise ValueError(f"n_symbols must be >= 1, got {n_symbols}")
        self.n_symbols = int(n_symbols)
        self._data = []
        self._heads = []
        self._overflow = []
        for kind in _Kind:
            k = int(kind)
            if isinstance(capacity, _Mapping):
                cap = int(capacity.get(kind, DEFAULT_CAPACITY))
            else:
                cap = int(capacity)
            if cap < 1:
                raise ValueError(f"capacity of {kind.name} must be >= 1, got {cap}")
            data = _np.zeros((self.n_symbols, 2 * cap), dtype=_DTYPES[kind])
            heads = _np.zeros(self.n_symbols, dtype=_np.uint64)
            ovf = _np.zeros(self.n_symbols, dtype=_np.uint64)
            self._data.append(data)
            self._heads.append(heads)
            self._overflow.append(ovf)
            self._base[k] = <char*><Py_ssize_t>data.ctypes.data
            self._row[k] = data.strides[0]
            self._size[k] = data.itemsize
            self._cap[k] = cap
            self._mask[k] = cap - 1 if cap & (cap - 1) == 0 else 0
            self._head[k] = <uint64_t*><Py_ssize_t>heads.ctypes.data
            self._ovf[k] = <uint64_t*><Py_ssize_t>ovf.ctypes.data

    def data(self, kind):
        """The mirrored ring array of ``kind``: shape ``(n_symbols, 2 * capacity)``."""
        return self._data[int(_Kind(kind))]

    def heads(self, kind):
        """uint64[n_symbols]: records ever written per symbol for ``kind``."""
        return self._heads[int(_Kind(kind))]

    def overflow(self, kind):
        """uint64[n_symbols]: records overwritten (lost to readers) per symbol for ``kind``."""
        return self._overflow[int(_Kind(kind))]

    def capacity(self, kind):
        """Ring capacity of ``kind`` (records kept per symbol)."""
        return <Py_ssize_t>self._cap[int(_Kind(kind))]

    def last(self, kind, symbol_id, n):
        """Zero-copy view of the last ``min(n, capacity, head)`` records of ``symbol_id``, oldest
        first. Valid until the next parse (see the class note)."""
        cdef int k = int(_Kind(kind))
        cdef Py_ssize_t s = int(symbol_id)
        cdef Py_ssize_t want = int(n)
        cdef uint64_t h, cap, start
        if s < 0 or s >= self.n_symbols:
            raise IndexError(f"symbol_id {symbol_id} out of range 0..{self.n_symbols - 1}")
        if want < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        h = self._head[k][s]
        cap = self._cap[k]
        if <uint64_t>want > cap:
            want = <Py_ssize_t>cap
        if <uint64_t>want > h:
            want = <Py_ssize_t>h
        start = (h - <uint64_t>want) % cap
        return self._data[k][s, start:start + want]

    cdef inline void _commit(self, int k, Py_ssize_t s, const void* rec) noexcept nogil:
        cdef uint64_t cap = self._cap[k]
        cdef uint64_t h = self._head[k][s]
        cdef uint64_t idx = (h & self._mask[k]) if self._mask[k] or cap == 1 else h % cap
        cdef Py_ssize_t size = self._size[k]
        cdef Py_ssize_t j
        cdef char* row = self._base[k] + s * self._row[k]
        cdef uint64_t* a = <uint64_t*>(row + idx * size)
        cdef uint64_t* b = <uint64_t*>(row + (idx + cap) * size)
        cdef const uint64_t* src = <const uint64_t*>rec
        tp_copy_words(a, b, src, size >> 3)  # record sizes are multiples of 8 (aligned dtypes)
        if h >= cap:
            self._ovf[k][s] += 1
        self._head[k][s] = h + 1


cdef class TickParser:
    """Parses Alpaca v2 stream frames (JSON or msgpack) into a :class:`TickRings`.

    ``parse_json(frame)`` / ``parse_msgpack(frame)`` take bytes, bytearray or a contiguous
    memoryview and return the number of distinct symbols that data records of the frame touched;
    their ids are ``parser.touched[:n]`` in first-touch order and ``parser.frame_counts[kind]``
    says how many records of each kind the frame wrote. Drops are counted by reason in
    ``drop_counts`` (names in ``DROP_REASONS``; ``drops()`` for humans). Control messages
    (``success``, ``subscription``, ``error``) are decoded to dicts, collected until
    :meth:`take_controls` (at most ``max_controls`` kept, oldest dropped).
    """

    cdef readonly TickRings rings
    cdef readonly tuple symbols
    cdef readonly uint64_t seq
    cdef readonly uint64_t frames
    cdef readonly uint64_t controls_seen
    cdef readonly uint64_t frame_drops
    cdef SymSlot* _slots
    cdef uint64_t _mask
    cdef Py_ssize_t n_symbols
    cdef uint32_t* _stamp
    cdef uint32_t _epoch
    cdef object _touched_arr
    cdef uint32_t* _touched
    cdef Py_ssize_t _n_touched
    cdef object _frame_counts_arr
    cdef uint32_t* _fcounts
    cdef object _records_arr
    cdef uint64_t* _records
    cdef object _drops_arr
    cdef uint64_t* _drops
    cdef object _controls
    cdef Val _vals[N_KEYS]
    cdef TsCache _ts_cache
    cdef const uchar* _pf_p     # symbol span looked up early by _prefetch (NULL: none) ...
    cdef int32_t _pf_sid        # ... and its id

    def __cinit__(self):
        self._slots = NULL
        self._stamp = NULL

    def __init__(self, symbols, TickRings rings not None, *, int max_controls=1024):
        cdef Py_ssize_t i, nslots
        cdef uint64_t pos
        cdef uchar key[16]
        cdef SymSlot* slot
        syms = tuple(symbols.symbols if isinstance(symbols, _SymbolTable) else symbols)
        if len(syms) != rings.n_symbols:
            raise ValueError(f"{len(syms)} symbols but the rings hold {rings.n_symbols}")
        self.rings = rings
        self.symbols = syms
        self.n_symbols = len(syms)
        nslots = 16
        while nslots < 2 * self.n_symbols:
            nslots *= 2
        self._mask = nslots - 1
        self._slots = <SymSlot*>malloc(nslots * sizeof(SymSlot))
        self._stamp = <uint32_t*>malloc(self.n_symbols * sizeof(uint32_t))
        if self._slots == NULL or self._stamp == NULL:
            raise MemoryError()
        memset(self._slots, 0, nslots * sizeof(SymSlot))
        memset(self._stamp, 0, self.n_symbols * sizeof(uint32_t))
        for i in range(nslots):
            self._slots[i].id = -1
        for i, sym in enumerate(syms):
            if not isinstance(sym, str):
                raise TypeError(f"symbol {sym!r} is not a str")
            raw = sym.encode("utf-8")
            if not raw or len(raw) > _MAX_SYMBOL_BYTES:
                raise ValueError(f"symbol {sym!r} must be 1..{_MAX_SYMBOL_BYTES} bytes")
            memset(key, 0, 16)
            memcpy(key, <const char*>raw, len(raw))
            slot = self._find(key, len(raw))
            if slot.id >= 0:
                raise ValueError(f"duplicate symbol {sym!r}")
            memcpy(&slot.w0, key, 8)
            memcpy(&slot.w1, key + 8, 8)
            slot.len = <int32_t>len(raw)
            slot.id = <int32_t>i
        self._touched_arr = _np.zeros(self.n_symbols, dtype=_np.uint32)
        self._touched = <uint32_t*><Py_ssize_t>self._touched_arr.ctypes.data
        self._frame_counts_arr = _np.zeros(N_KINDS, dtype=_np.uint32)
        self._fcounts = <uint32_t*><Py_ssize_t>self._frame_counts_arr.ctypes.data
        self._records_arr = _np.zeros(N_KINDS, dtype=_np.uint64)
        self._records = <uint64_t*><Py_ssize_t>self._records_arr.ctypes.data
        self._drops_arr = _np.zeros(N_REASONS, dtype=_np.uint64)
        self._drops = <uint64_t*><Py_ssize_t>self._drops_arr.ctypes.data
        self._controls = _collections.deque(maxlen=max_controls)
        self._epoch = 0
        self._n_touched = 0
        self._ts_cache.w0 = 0  # no timestamp starts with eight NUL bytes
        self._ts_cache.w1 = 0
        self._ts_cache.base = 0
        self._pf_p = NULL

    def __dealloc__(self):
        free(self._slots)
        free(self._stamp)

    cdef inline SymSlot* _find(self, const uchar* key16, Py_ssize_t n) noexcept nogil:
        cdef uint64_t w0, w1
        memcpy(&w0, key16, 8)
        memcpy(&w1, key16 + 8, 8)
        return self._find_w(w0, w1, n)

    cdef inline SymSlot* _find_w(self, uint64_t w0, uint64_t w1, Py_ssize_t n) noexcept nogil:
        """Slot of the zero-padded 16-byte key ``w0``/``w1`` (``n`` bytes), or the empty slot."""
        cdef uint64_t pos
        cdef SymSlot* slot
        pos = _sym_hash(w0, w1) & self._mask
        while True:
            slot = &self._slots[pos]
            if slot.id < 0 or (slot.w0 == w0 and slot.w1 == w1 and slot.len == n):
                return slot
            pos = (pos + 1) & self._mask

    cdef inline void _prefetch(self, const Val* vals, const uchar* end) noexcept:
        """Called as soon as ``T`` and then ``S`` of a message are captured: look the symbol
        up and prefetch (for writing) the two ring slots its record will take, so the cache misses
        overlap with scanning the rest of the message. Only a hint: ``_data_message`` re-checks all."""
        cdef const Val* vt = &vals[K_T]
        cdef const Val* vs = &vals[K_S]
        cdef uint64_t symw[2]
        cdef int k
        cdef int32_t sid
        cdef uint64_t cap, h, idx
        cdef Py_ssize_t size
        cdef char* a
        cdef char* b
        cdef TickRings r
        if vt.vt != VT_STR or vt.n != 1 or vs.vt != VT_STR or vs.flags & FL_ESC or vs.n > SYM_MAX:
            return
        k = _KIND_OF[vt.p[0]]
        if k < 0 or vs.n == 0:
            return
        if TP_LITTLE_ENDIAN and end - vs.p >= 16:
            # two unaligned loads from the frame, bytes past the symbol masked off (a byte copy
            # into a zeroed buffer would stall on store forwarding when read back as words)
            memcpy(&symw[0], vs.p, 8)
            memcpy(&symw[1], vs.p + 8, 8)
            if vs.n < 8:
                symw[0] &= (1ULL << (8 * vs.n)) - 1
                symw[1] = 0
            else:
                symw[1] &= (1ULL << (8 * (vs.n - 8))) - 1
        else:
            symw[0] = 0
            symw[1] = 0
            memcpy(symw, vs.p, vs.n)
        sid = self._find_w(symw[0], symw[1], vs.n).id
        if sid < 0:
            return
        self._pf_p = vs.p
        self._pf_sid = sid
        r = self.rings
        cap = r._cap[k]
        h = r._head[k][sid]
        idx = (h & r._mask[k]) if r._mask[k] or cap == 1 else h % cap
        size = r._size[k]
        a = r._base[k] + sid * r._row[k] + idx * size
        b = a + cap * size
        __builtin_prefetch(a, 1, 3)
        __builtin_prefetch(a + size - 1, 1, 3)
        __builtin_prefetch(b, 1, 3)
        __builtin_prefetch(b + size - 1, 1, 3)

    # -- public API ----------------------------------------------------------------------------

    @property
    def touched(self):
        """uint32[n_symbols] view; the first ``n`` (the parse result) are this frame's symbol ids."""
        return self._touched_arr

    @property
    def n_touched(self):
        """Distinct symbols touched by the last frame (the last parse result)."""
        return self._n_touched

    @property
    def frame_counts(self):
        """uint32[N_KINDS] view: records written per kind by the last frame."""
        return self._frame_counts_arr

    @property
    def record_counts(self):
        """uint64[N_KINDS] view: records written per kind since construction."""
        return self._records_arr

    @property
    def drop_counts(self):
        """uint64[len(DROP_REASONS)] view: cumulative drops by reason."""
        return self._drops_arr

    def drops(self):
        """Cumulative drops as ``{reason: count}`` (every reason, zeros included)."""
        return {name: int(self._drops[j]) for j, name in enumerate(DROP_REASONS)}

    def take_controls(self):
        """Control messages (``success``, ``subscription``, ``error``) decoded since the last call,
        oldest first, as plain dicts (e.g. ``{"T": "error", "code": 406, "msg": "..."}``)."""
        out = list(self._controls)
        self._controls.clear()
        return out

    def parse_json(self, frame):
        """Parse one JSON frame; returns the number of distinct symbols its data records touched."""
        cdef Py_buffer view
        if PyBytes_CheckExact(frame):
            return self._run(<const uchar*>PyBytes_AS_STRING(frame), PyBytes_GET_SIZE(frame), 0)
        PyObject_GetBuffer(frame, &view, PyBUF_SIMPLE)
        try:
            return self._run(<const uchar*>view.buf, view.len, 0)
        finally:
            PyBuffer_Release(&view)

    def parse_msgpack(self, frame):
        """Parse one msgpack frame; returns the number of distinct symbols touched."""
        cdef Py_buffer view
        if PyBytes_CheckExact(frame):
            return self._run(<const uchar*>PyBytes_AS_STRING(frame), PyBytes_GET_SIZE(frame), 1)
        PyObject_GetBuffer(frame, &view, PyBUF_SIMPLE)
        try:
            return self._run(<const uchar*>view.buf, view.len, 1)
        finally:
            PyBuffer_Release(&view)

    # -- frame loop ----------------------------------------------------------------------------

    cdef Py_ssize_t _run(self, const uchar* buf, Py_ssize_t n, int mp) except -1:
        memset(self._fcounts, 0, N_KINDS * sizeof(uint32_t))
        self._n_touched = 0
        self.frame_drops = 0
        self._epoch += 1
        if self._epoch == 0:  # wrapped: forget every stamp
            memset(self._stamp, 0, self.n_symbols * sizeof(uint32_t))
            self._epoch = 1
        self.frames += 1
        self._pf_p = NULL
        if mp:
            self._frame_msgpack(buf, buf + n)
        else:
            self._frame_json(buf, buf + n)
        return self._n_touched

    cdef inline void _drop(self, int reason) noexcept nogil:
        self._drops[reason] += 1
        self.frame_drops += 1

    cdef inline void _drop_err(self, int err) noexcept nogil:
        self._drop(D_TRUNCATED if err == E_TRUNCATED else D_MALFORMED)

    cdef int _frame_json(self, const uchar* p, const uchar* end) except -1:
        cdef const uchar* obj
        cdef const uchar* q
        cdef int err = 0
        cdef uint64_t seen
        p = _ws(p, end)
        if p >= end:
            self._drop(D_TRUNCATED)
            return 0
        if p[0] != 91:
            self._drop(D_MALFORMED)
            return 0
        p = _ws(p + 1, end)
        if p < end and p[0] == 93:
            p += 1
        else:
            while True:
                if p >= end:
                    self._drop(D_TRUNCATED)
                    return 0
                if p[0] == 123:
                    obj = p
                    self._pf_p = NULL
                    q = _json_object(self, p, end, self._vals, &seen, &err)
                    if q == NULL:
                        self._drop_err(err)
                        return 0
                    self._message(seen, obj, q, 0)
                else:
                    q = _json_skip(p, end, 0, &err)
                    if q == NULL:
                        self._drop_err(err)
                        return 0
                    self._drop(D_NOT_A_MAP)
                p = _ws(q, end)
                if p >= end:
                    self._drop(D_TRUNCATED)
                    return 0
                if p[0] == 44:
                    p = _ws(p + 1, end)
                    continue
                if p[0] == 93:
                    p += 1
                    break
                self._drop(D_MALFORMED)
                return 0
        if _ws(p, end) != end:
            self._drop(D_MALFORMED)  # trailing bytes after the array; its records are kept
        return 0

    cdef int _frame_msgpack(self, const uchar* p, const uchar* end) except -1:
        cdef Py_ssize_t count = 0, hdr = 0, k, npairs
        cdef int r, err = 0
        cdef const uchar* q
        cdef const uchar* obj
        cdef uint64_t seen
        r = _mp_header(p, end, 0, &count, &hdr)
        if r < 0:
            self._drop(D_TRUNCATED)
            return 0
        if r == 0:
            self._drop(D_MALFORMED)
            return 0
        p += hdr
        for k in range(count):
            r = _mp_header(p, end, 1, &npairs, &hdr)
            if r < 0:
                self._drop(D_TRUNCATED)
                return 0
            if r == 1:
                obj = p
                self._pf_p = NULL
                q = _mp_object(self, p + hdr, end, npairs, self._vals, &seen, &err)
                if q == NULL:
                    self._drop_err(err)
                    return 0
                self._message(seen, obj, q, 1)
            else:
                q = _mp_capture(p, end, NULL, 0, &err)
                if q == NULL:
                    self._drop_err(err)
                    return 0
                self._drop(D_NOT_A_MAP)
            p = q
        if p != end:
            self._drop(D_MALFORMED)
        return 0

    # -- one message -----------------------------------------------------------------------------

    cdef inline bint _has(self, uint64_t seen, int key) noexcept nogil:
        return (seen >> key) & 1 and self._vals[key].vt != VT_NULL

    cdef int _message(self, uint64_t seen, const uchar* obj, const uchar* obj_end,
                      int mp) except -1:
        cdef uchar tbuf[16]
        cdef Py_ssize_t tlen
        cdef int kind
        cdef uchar c
        if not self._has(seen, K_T):
            self._drop(D_MISSING_FIELD)
            return 0
        if self._vals[K_T].vt != VT_STR:
            self._drop(D_MISTYPED_FIELD)
            return 0
        if self._vals[K_T].n == 1 and not self._vals[K_T].flags & FL_ESC:
            tlen = 1
            tbuf[0] = self._vals[K_T].p[0]
        else:
            tlen = _str_bytes(&self._vals[K_T], tbuf, 16)
        if tlen == 1:
            c = tbuf[0]
            if c == 116:
                kind = KIND_TRADE
            elif c == 113:
                kind = KIND_QUOTE
            elif c == 98 or c == 117 or c == 100:
                kind = KIND_BAR
            elif c == 99:
                kind = KIND_CORRECTION
            elif c == 120:
                kind = KIND_CANCEL
            elif c == 115:
                kind = KIND_STATUS
            elif c == 108:
                kind = KIND_LULD
            elif c == 105:
                kind = KIND_IMBALANCE
            else:
                self._drop(D_UNKNOWN_TYPE)
                return 0
            self._data_message(seen, kind, c)
            return 0
        if ((tlen == 7 and memcmp(tbuf, b"success", 7) == 0)
                or (tlen == 12 and memcmp(tbuf, b"subscription", 12) == 0)
                or (tlen == 5 and memcmp(tbuf, b"error", 5) == 0)):
            self._control(obj, obj_end, mp)
            return 0
        self._drop(D_UNKNOWN_TYPE)
        return 0

    cdef int _control(self, const uchar* obj, const uchar* obj_end, int mp) except -1:
        self.controls_seen += 1
        try:
            if mp:
                msg = _mp_to_py(obj, obj_end, 0)[0]
            else:
                msg = _orjson.loads(PyBytes_FromStringAndSize(<const char*>obj, obj_end - obj))
        except (ValueError, UnicodeDecodeError):
            self._drop(D_MALFORMED)
            return 0
        self._controls.append(msg)
        return 0

    cdef void _data_message(self, uint64_t seen, int kind, uchar tchar) noexcept:
        cdef uint64_t symw[2]
        cdef uint64_t recw[MAX_REC_WORDS]
        cdef uchar* sym = <uchar*>symw
        cdef uchar* rec = <uchar*>recw
        cdef Py_ssize_t slen, j
        cdef SymSlot* slot
        cdef const FieldSpec* fs
        cdef const Val* v
        cdef double d
        cdef int64_t iv
        cdef uint64_t uv
        cdef char* dst
        cdef int32_t sid
        # symbol
        if not self._has(seen, K_S):
            self._drop(D_MISSING_FIELD)
            return
        v = &self._vals[K_S]
        if v.vt != VT_STR:
            self._drop(D_MISTYPED_FIELD)
            return
        if v.p == self._pf_p:  # looked up by _prefetch (an unescaped, known symbol)
            sid = self._pf_sid
        else:
            symw[0] = 0
            symw[1] = 0
            slen = _str_bytes(v, sym, 16)
            if slen > SYM_MAX:
                self._drop(D_OVERLONG_SYMBOL)
                return
            sid = self._find(sym, slen).id
            if slen == 0:
                sid = -1
        if sid < 0:
            self._drop(D_UNKNOWN_SYMBOL)
            return
        # the fast paths write every word themselves
        if kind == KIND_TRADE and _fast_trade(self._vals, seen, <TradeRec*>recw, &self._ts_cache):
            self._write(kind, sid, rec, tchar)
            return
        if kind == KIND_QUOTE and _fast_quote(self._vals, seen, <QuoteRec*>recw, &self._ts_cache):
            self._write(kind, sid, rec, tchar)
            return
        for j in range(_REC_SIZE[kind] >> 3):  # the fast path bailed out: start clean
            recw[j] = 0
        for j in range(_NSPECS[kind]):
            fs = &_SPECS[kind][j]
            dst = <char*>rec + fs.offset
            if not self._has(seen, fs.key):
                if fs.flags & R_REQ:
                    self._drop(D_MISSING_FIELD)
                    return
                if fs.flags & R_NAN:
                    d = NAN
                    memcpy(dst, &d, 8)
                continue
            v = &self._vals[fs.key]
            if fs.ftype == F_PRICE or fs.ftype == F_SIZE:
                if _get_double(v, &d) != 0:
                    self._drop(D_MISTYPED_FIELD)
                    return
                if not isfinite(d) or d < 0:
                    self._drop(D_BAD_PRICE if fs.ftype == F_PRICE else D_BAD_SIZE)
                    return
                memcpy(dst, &d, 8)
            elif fs.ftype == F_TS:
                if _get_ts(v, &iv, &self._ts_cache) != 0:
                    self._drop(D_MISTYPED_FIELD if v.vt != VT_STR and v.vt != VT_TS
                               else D_BAD_TIMESTAMP)
                    return
                memcpy(dst, &iv, 8)
            elif fs.ftype == F_CODE:
                if v.vt != VT_STR:
                    self._drop(D_MISTYPED_FIELD)
                    return
                if _str_bytes(v, <uchar*>dst, 1) == 0:
                    dst[0] = 0
            elif fs.ftype == F_ID:
                if v.vt == VT_INT:
                    iv = v.i
                elif (v.vt == VT_NUM and (v.flags & (FL_INT | FL_SLOW)) == FL_INT
                      and v.u <= <uint64_t>INT64_MAX + (1 if v.flags & FL_NEG else 0)):
                    iv = <int64_t>(0 - v.u) if v.flags & FL_NEG else <int64_t>v.u
                else:
                    self._drop(D_MISTYPED_FIELD)
                    return
                memcpy(dst, &iv, 8)
            elif fs.ftype == F_COUNT:
                if v.vt == VT_INT and v.i >= 0:
                    uv = <uint64_t>v.i
                elif v.vt == VT_UINT:
                    uv = v.u
                elif v.vt == VT_NUM and v.flags & FL_INT and (v.u == 0 or not v.flags & FL_NEG):
                    if v.flags & FL_SLOW:
                        if _json_uint(v.p, v.n, &uv) != 0:
                            self._drop(D_MISTYPED_FIELD)
                            return
                    else:
                        uv = v.u
                else:
                    self._drop(D_MISTYPED_FIELD)
                    return
                memcpy(dst, &uv, 8)
            elif fs.ftype == F_CONDS:
                if _conds(v, <uchar*>dst) != 0:
                    self._drop(D_MISTYPED_FIELD)
                    return
            else:  # F_STR4 / F_STR8
                if v.vt != VT_STR:
                    self._drop(D_MISTYPED_FIELD)
                    return
                slen = _str_bytes(v, <uchar*>dst, 4 if fs.ftype == F_STR4 else 8)
        self._write(kind, sid, rec, tchar)

    cdef inline void _write(self, int kind, int32_t sid, uchar* rec, uchar tchar) noexcept:
        """Stamp ``seq`` on a complete, valid record and commit it to its ring."""
        self.seq += 1
        memcpy(<char*>rec + _OFF_SEQ[kind], &self.seq, 8)
        if kind == KIND_BAR:
            rec[_OFF_BAR_TYPE] = tchar
        self.rings._commit(kind, sid, rec)
        self._fcounts[kind] += 1
        self._records[kind] += 1
        if self._stamp[sid] != self._epoch:
            self._stamp[sid] = self._epoch
            self._touched[self._n_touched] = <uint32_t>sid
            self._n_touched += 1


# Straight-line paths for the two common kinds. They only succeed when every field is present and
# valid with the same result as the table-driven loop; otherwise the loop decides the drop reason.

cdef inline bint _f_num(const Val* v, double* out) noexcept nogil:
    return _get_double(v, out) == 0 and isfinite(out[0]) and out[0] >= 0


cdef inline bint _f_id(const Val* v, int64_t* out) noexcept nogil:
    if v.vt == VT_INT:
        out[0] = v.i
        return True
    if (v.vt == VT_NUM and (v.flags & (FL_INT | FL_SLOW)) == FL_INT
            and v.u <= <uint64_t>INT64_MAX + (1 if v.flags & FL_NEG else 0)):
        out[0] = <int64_t>(0 - v.u) if v.flags & FL_NEG else <int64_t>v.u
        return True
    return False


cdef inline int _f_code(const Val* vals, uint64_t seen, int key) noexcept nogil:
    """The code byte of an optional string field (0 when absent), -1 when the loop must decide."""
    cdef const Val* v = &vals[key]
    if not (seen >> key) & 1 or v.vt == VT_NULL:
        return 0
    if v.vt != VT_STR or v.flags & FL_ESC:
        return -1
    return v.p[0] if v.n > 0 else 0


cdef inline int64_t _f_conds(const Val* vals, uint64_t seen) noexcept nogil:
    """The four condition bytes packed little-endian (0 when absent), -1 when mistyped."""
    cdef const Val* v = &vals[K_c]
    cdef uchar b[4]
    if not (seen >> K_c) & 1 or v.vt == VT_NULL:
        return 0
    if v.vt == VT_ARR and v.flags & FL_CONDS:
        return <int64_t>(v.u & 0xFFFFFFFFULL)
    b[0] = 0
    b[1] = 0
    b[2] = 0
    b[3] = 0
    if _conds(v, b) != 0:  # writes one byte per element (up to four)
        return -1
    return <int64_t>(b[0] | (<uint32_t>b[1] << 8) | (<uint32_t>b[2] << 16) | (<uint32_t>b[3] << 24))


cdef inline void _put_tail(char* dst, uint64_t tail) noexcept nogil:
    """Store the record's last word (conditions and code bytes, packed little-endian) in one
    8-byte store: byte stores read back as a word by the ring copy would stall store forwarding."""
    cdef int j
    if TP_LITTLE_ENDIAN:
        memcpy(dst, &tail, 8)
    else:
        for j in range(8):
            dst[j] = <char>(tail >> (8 * j))


cdef inline bint _fast_trade(const Val* vals, uint64_t seen, TradeRec* r,
                             TsCache* cache) noexcept nogil:
    """Writes every word of ``r`` but ``seq`` (stamped by ``_write``)."""
    cdef uint64_t req = (1ULL << K_t) | (1ULL << K_i) | (1ULL << K_p) | (1ULL << K_s)
    cdef int64_t conds
    cdef int x, z
    if (seen & req) != req or _get_ts(&vals[K_t], &r.ts_ns, cache) != 0:
        return False
    if not (_f_id(&vals[K_i], &r.trade_id) and _f_num(&vals[K_p], &r.price)
            and _f_num(&vals[K_s], &r.size)):
        return False
    conds = _f_conds(vals, seen)
    x = _f_code(vals, seen, K_x)
    z = _f_code(vals, seen, K_z)
    if conds < 0 or x < 0 or z < 0:
        return False
    _put_tail(r.conditions, <uint64_t>conds | (<uint64_t>x << 32) | (<uint64_t>z << 40))
    return True


cdef inline bint _fast_quote(const Val* vals, uint64_t seen, QuoteRec* r,
                             TsCache* cache) noexcept nogil:
    """Writes every word of ``r`` but ``seq`` (stamped by ``_write``)."""
    cdef uint64_t req = (1ULL << K_t) | (1ULL << K_bp) | (1ULL << K_ap) | (1ULL << K_bs) | (1ULL << K_as)
    cdef int64_t conds
    cdef int bx, ax, z
    if (seen & req) != req or _get_ts(&vals[K_t], &r.ts_ns, cache) != 0:
        return False
    if not (_f_num(&vals[K_bp], &r.bid_price) and _f_num(&vals[K_ap], &r.ask_price)
            and _f_num(&vals[K_bs], &r.bid_size) and _f_num(&vals[K_as], &r.ask_size)):
        return False
    conds = _f_conds(vals, seen)
    bx = _f_code(vals, seen, K_bx)
    ax = _f_code(vals, seen, K_ax)
    z = _f_code(vals, seen, K_z)
    if conds < 0 or bx < 0 or ax < 0 or z < 0:
        return False
    _put_tail(r.conditions, <uint64_t>conds | (<uint64_t>bx << 32) | (<uint64_t>ax << 40)
              | (<uint64_t>z << 48))
    return True


cdef inline int _get_ts(const Val* v, int64_t* out, TsCache* cache) noexcept nogil:
    cdef uchar buf[40]
    cdef Py_ssize_t n
    if v.vt == VT_TS:
        return _ts_from_parts(v.i, <int64_t>v.u if v.u < 1000000000 else -1, out)
    if v.vt != VT_STR:
        return -1
    if v.flags & FL_ESC:
        n = _unescape(v.p, v.n, buf, 40)
        if n > 40:
            return -1
        return _rfc3339(buf, n, out, cache)
    return _rfc3339(v.p, v.n, out, cache)


cdef tuple _mp_to_py(const uchar* p, const uchar* end, int depth):
    """Generic msgpack -> Python (control messages only; they are rare). Returns (obj, next)."""
    cdef Val v
    cdef int err = 0
    cdef const uchar* q
    cdef Py_ssize_t count = 0, hdr = 0, k
    if depth > MAX_DEPTH:
        raise ValueError("msgpack nesting too deep")
    if _mp_header(p, end, 1, &count, &hdr) == 1:
        q = p + hdr
        out = {}
        for k in range(count):
            key, nxt = _mp_to_py(q, end, depth + 1)
            q = <const uchar*><Py_ssize_t>nxt
            val, nxt = _mp_to_py(q, end, depth + 1)
            q = <const uchar*><Py_ssize_t>nxt
            try:
                out[key] = val
            except TypeError:
                out[repr(key)] = val
        return out, <Py_ssize_t>q
    if _mp_header(p, end, 0, &count, &hdr) == 1:
        q = p + hdr
        lst = []
        for k in range(count):
            val, nxt = _mp_to_py(q, end, depth + 1)
            q = <const uchar*><Py_ssize_t>nxt
            lst.append(val)
        return lst, <Py_ssize_t>q
    q = _mp_capture(p, end, &v, depth, &err)
    if q == NULL:
        raise ValueError("bad msgpack")
    if v.vt == VT_INT:
        obj = v.i
    elif v.vt == VT_UINT:
        obj = v.u
    elif v.vt == VT_FLOAT:
        obj = v.f
    elif v.vt == VT_STR:
        obj = PyBytes_FromStringAndSize(<const char*>v.p, v.n).decode("utf-8")
    elif v.vt == VT_NULL:
        obj = None
    elif p[0] == 0xC2 or p[0] == 0xC3:
        obj = p[0] == 0xC3
    else:
        obj = PyBytes_FromStringAndSize(<const char*>p, q - p)
    return obj, <Py_ssize_t>q
