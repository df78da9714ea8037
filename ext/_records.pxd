# C mirrors of relentless_fast/records.py. Field order and types must match the numpy dtypes
# (declared with align=True, i.e. natural C alignment); tests/unit/test_records.py checks sizes.
from libc.stdint cimport int64_t, uint64_t, uint8_t

cdef enum:
    KIND_TRADE = 0
    KIND_QUOTE = 1
    KIND_BAR = 2
    KIND_CORRECTION = 3
    KIND_CANCEL = 4
    KIND_STATUS = 5
    KIND_LULD = 6
    KIND_IMBALANCE = 7
    N_KINDS = 8

ctypedef struct TradeRec:
    int64_t ts_ns
    uint64_t seq
    int64_t trade_id
    double price
    double size
    char conditions[4]
    uint8_t exchange
    uint8_t tape

ctypedef struct QuoteRec:
    int64_t ts_ns
    uint64_t seq
    double bid_price
    double ask_price
    double bid_size
    double ask_size
    char conditions[4]
    uint8_t bid_exchange
    uint8_t ask_exchange
    uint8_t tape

ctypedef struct BarRec:
    int64_t ts_ns
    uint64_t seq
    double open
    double high
    double low
    double close
    double volume
    double vwap
    uint64_t trade_count
    uint8_t bar_type

ctypedef struct CorrectionRec:
    int64_t ts_ns
    uint64_t seq
    int64_t orig_id
    double orig_price
    double orig_size
    int64_t corr_id
    double corr_price
    double corr_size
    uint8_t exchange
    uint8_t tape

ctypedef struct CancelRec:
    int64_t ts_ns
    uint64_t seq
    int64_t trade_id
    double price
    double size
    uint8_t exchange
    uint8_t action
    uint8_t tape

ctypedef struct StatusRec:
    int64_t ts_ns
    uint64_t seq
    char status_code[4]
    char reason_code[8]
    uint8_t tape

ctypedef struct LuldRec:
    int64_t ts_ns
    uint64_t seq
    double limit_up
    double limit_down
    uint8_t indicator
    uint8_t tape

ctypedef struct ImbalanceRec:
    int64_t ts_ns
    uint64_t seq
    double price
    uint8_t tape
