"""Signal codec (layout v1): pack/unpack round trips, every corruption case, buffers, threads."""

from __future__ import annotations

import pickle
import struct
import threading
from typing import Any

import crc32c as crc32c_ref
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import relentless_fast_signal as rs

FIELDS = [name for name in rs.SIGNAL_RECORD_DTYPE.names or ()]
FLOAT_FIELDS = ("confidence", "price_target", "stop_loss", "position_size")
REF = struct.Struct(">HBBIQQQffffBBHHHI")


def ref_pack(f: dict[str, Any]) -> bytes:
    """Independent reference: struct + the crc32c package."""
    body = REF.pack(rs.MAGIC, rs.LAYOUT_VERSION, *(f[k] for k in FIELDS))
    return body + struct.pack(">I", crc32c_ref.crc32c(body))


def sample(**over: Any) -> dict[str, Any]:
    f: dict[str, Any] = dict(
        action=1, symbol_id=7, sequence=42, event_ts_ns=1_700_000_000_123_456_789,
        emit_ts_ns=1_700_000_000_123_500_000, confidence=0.75, price_target=187.25,
        stop_loss=180.5, position_size=0.5, risk_score=64, urgency=255, strategy_id=3,
        model_version=2, flags=rs.FLAG_CANARY | rs.FLAG_COALESCED, context_version=20240601,
    )  # fmt: skip
    f.update(over)
    return f


def records_of(rows: list[dict[str, Any]]) -> np.ndarray:
    recs = np.zeros(len(rows), rs.SIGNAL_RECORD_DTYPE)
    for i, r in enumerate(rows):
        for k, v in r.items():
            if k.endswith("_bits"):
                recs[k[:-5]][i] = np.uint32(v).view(np.float32)
            else:
                recs[k][i] = v
    return recs


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Record equality that treats floats bitwise (NaN payloads, -0.0)."""
    return a.tobytes() == b.tobytes() if a.dtype == b.dtype else False


int_fields = {
    "action": st.integers(0, 2),
    "symbol_id": st.integers(0, 2**32 - 1),
    "sequence": st.integers(0, 2**64 - 1),
    "event_ts_ns": st.integers(0, 2**64 - 1),
    "emit_ts_ns": st.integers(0, 2**64 - 1),
    "risk_score": st.integers(0, 255),
    "urgency": st.integers(0, 255),
    "strategy_id": st.integers(0, 2**16 - 1),
    "model_version": st.integers(0, 2**16 - 1),
    "flags": st.integers(0, rs.FLAGS_DEFINED),
    "context_version": st.integers(0, 2**32 - 1),
}
float_bits = {f"{k}_bits": st.integers(0, 2**32 - 1) for k in FLOAT_FIELDS}
signal_rows = st.fixed_dictionaries({**int_fields, **float_bits})


def test_constants_and_dtypes() -> None:
    assert (rs.SIGNAL_SIZE, rs.MAGIC, rs.LAYOUT_VERSION) == (64, 0x5246, 1)
    assert [rs.FLAG_CANARY, rs.FLAG_CONTEXT_STALE, rs.FLAG_FALLBACK] == [1, 2, 4]
    assert [rs.FLAG_COALESCED, rs.FLAG_HALTED] == [8, 16]
    assert (rs.ACTION_HOLD, rs.ACTION_BUY, rs.ACTION_SELL) == (0, 1, 2)
    assert rs.SIGNAL_RECORD_DTYPE.itemsize == 64
    assert rs.SIGNAL_WIRE_DTYPE.itemsize == 64
    assert "magic" not in FIELDS and "crc32c" not in FIELDS and len(FIELDS) == 15
    wire_fields: dict[str, Any] = dict(rs.SIGNAL_WIRE_DTYPE.fields or {})
    for name in FIELDS:
        dt = wire_fields[name][0]
        assert dt.itemsize == rs.SIGNAL_RECORD_DTYPE[name].itemsize
        assert dt.byteorder in (">", "|")
    assert wire_fields["crc32c"][1] == 60 and wire_fields["action"][1] == 3
    assert rs.build_profile in ("release", "debug")


def test_crc32c_check_value_and_continuation() -> None:
    assert rs.crc32c(b"123456789") == 0xE3069283
    assert rs.crc32c(b"56789", rs.crc32c(b"1234")) == 0xE3069283
    assert rs.crc32c(memoryview(b"xx123456789")[2:]) == 0xE3069283
    assert rs.crc32c(b"") == 0


def test_pack_signal_matches_reference_and_decodes() -> None:
    f = sample()
    b = rs.pack_signal(**f)
    assert isinstance(b, bytes) and b == ref_pack(f)
    (rec,) = rs.unpack(b)
    for k, v in f.items():
        assert rec[k] == v, k
    view = np.frombuffer(b, rs.SIGNAL_WIRE_DTYPE)[0]
    assert view["magic"] == 0x5246 and view["crc32c"] == int.from_bytes(b[60:], "big")
    assert view["price_target"] == np.float32(187.25)


def test_pack_signal_positional_defaults() -> None:
    b = rs.pack_signal(2, 1, 1, 0, 0, 0.5, 1.0, 2.0, 0.25)
    f = sample(action=2, symbol_id=1, sequence=1, event_ts_ns=0, emit_ts_ns=0, confidence=0.5,
               price_target=1.0, stop_loss=2.0, position_size=0.25, risk_score=0, urgency=0,
               strategy_id=0, model_version=0, flags=0, context_version=0)  # fmt: skip
    assert b == ref_pack(f)


@pytest.mark.parametrize(
    ("field", "value", "exc"),
    [
        ("action", 3, rs.SignalFormatError),
        ("flags", 0x20, rs.SignalFormatError),
        ("symbol_id", 2**32, OverflowError),
        ("sequence", -1, OverflowError),
        ("risk_score", 256, OverflowError),
    ],
)
def test_pack_signal_refuses_bad_fields(field: str, value: int, exc: type[Exception]) -> None:
    with pytest.raises(exc):
        rs.pack_signal(**sample(**{field: value}))


@settings(max_examples=200, deadline=None)
@given(signal_rows)
def test_single_round_trip_bit_exact(row: dict[str, int]) -> None:
    recs = records_of([row])
    packed = rs.pack(recs)
    f = {k: recs[k][0].item() for k in FIELDS}
    assert packed == ref_pack(f) or any(np.isnan(recs[k][0]) for k in FLOAT_FIELDS)
    assert same_bits(rs.unpack(packed), recs)


@settings(max_examples=60, deadline=None)
@given(st.lists(signal_rows, min_size=0, max_size=300), st.integers(0, 100))
def test_batch_round_trip_into_reused_buffer(rows: list[dict[str, int]], offset: int) -> None:
    recs = records_of(rows)
    out = bytearray(b"\xee" * (offset + 64 * len(rows) + 7))
    assert rs.pack_into(recs, out, offset) == 64 * len(rows)
    assert out[:offset] == b"\xee" * offset and out[-7:] == b"\xee" * 7
    body = bytes(out[offset : offset + 64 * len(rows)])
    assert rs.validate(body) == len(rows)
    assert same_bits(rs.unpack(body), recs)
    # Each signal equals the single-signal path.
    for i in range(min(len(rows), 5)):
        assert body[64 * i : 64 * (i + 1)] == rs.pack(recs[i : i + 1])
    back = np.zeros(len(rows) + 3, rs.SIGNAL_RECORD_DTYPE)
    assert rs.unpack_into(body, back) == len(rows)
    assert same_bits(back[: len(rows)], recs)


def test_pack_into_numpy_and_memoryview_outputs() -> None:
    recs = records_of([sample(sequence=i) for i in range(1, 11)])
    ref = rs.pack(recs)
    arr = np.zeros(640, np.uint8)
    assert rs.pack_into(recs, arr) == 640 and arr.tobytes() == ref
    wire = np.zeros(10, rs.SIGNAL_WIRE_DTYPE)
    rs.pack_into(recs, wire)
    assert (wire["sequence"] == np.arange(1, 11)).all() and (wire["magic"] == 0x5246).all()
    big = bytearray(2000)
    rs.pack_into(recs, memoryview(big)[100:], 0)
    assert bytes(big[100:740]) == ref


@pytest.mark.parametrize(
    ("mutate", "kind", "offset"),
    [
        (lambda b: b.__setitem__(64, 0), "bad magic", 64),
        (lambda b: b.__setitem__(128 + 2, 2), "unsupported layout version 2", 128),
        (lambda b: b.__setitem__(2, 0), "unsupported layout version 0", 0),
        (lambda b: b.__setitem__(64 + 30, b[64 + 30] ^ 1), "CRC-32C mismatch", 64),
        (lambda b: b.__setitem__(191, b[191] ^ 0x80), "CRC-32C mismatch", 128),
    ],
)
def test_corruption_names_offset(mutate: Any, kind: str, offset: int) -> None:
    good = rs.pack(records_of([sample(sequence=i) for i in range(1, 4)]))
    bad = bytearray(good)
    mutate(bad)
    for fn in (rs.unpack, rs.validate):
        with pytest.raises(rs.SignalFormatError, match=kind) as ei:
            fn(bytes(bad))
        assert ei.value.offset == offset
        assert f"byte offset {offset}" in str(ei.value)
        assert isinstance(ei.value, ValueError)


def test_bad_action_with_valid_crc_is_rejected() -> None:
    body = bytearray(ref_pack(sample())[:60])
    body[3] = 7
    sig = bytes(body) + struct.pack(">I", crc32c_ref.crc32c(bytes(body)))
    with pytest.raises(rs.SignalFormatError, match="bad action 7") as ei:
        rs.unpack(rs.pack_signal(**sample()) + sig)
    assert ei.value.offset == 64


@pytest.mark.parametrize(("length", "offset"), [(1, 0), (63, 0), (65, 64), (100, 64), (191, 128)])
def test_truncated_length_names_offset(length: int, offset: int) -> None:
    buf = rs.pack(records_of([sample()] * 3))[:length]
    with pytest.raises(rs.SignalFormatError, match="not a multiple of 64") as ei:
        rs.unpack(buf)
    assert ei.value.offset == offset


def test_empty_buffer_is_zero_signals() -> None:
    assert rs.unpack(b"").shape == (0,) and rs.validate(b"") == 0


def test_output_too_small_is_clear_and_writes_nothing() -> None:
    recs = records_of([sample()] * 4)
    out = bytearray(b"\x00" * 255)
    with pytest.raises(ValueError, match="out too small: 256 bytes needed"):
        rs.pack_into(recs, out)
    with pytest.raises(ValueError, match="at offset 10"):
        rs.pack_into(recs, bytearray(256), 10)
    assert out == bytearray(255)
    with pytest.raises(ValueError, match="records too small"):
        rs.unpack_into(rs.pack(recs), np.zeros(3, rs.SIGNAL_RECORD_DTYPE))


def test_pack_into_reports_bad_record_offset() -> None:
    recs = records_of([sample(), sample(), sample()])
    recs["action"][2] = 9
    with pytest.raises(rs.SignalFormatError, match="bad action 9") as ei:
        rs.pack_into(recs, bytearray(192))
    assert ei.value.offset == 128


def test_wrong_types_are_type_errors() -> None:
    recs = records_of([sample()])
    with pytest.raises(TypeError, match="SIGNAL_RECORD_DTYPE"):
        rs.pack_into(np.zeros(4, np.uint64), bytearray(64))
    packed_dtype = np.dtype([(n, rs.SIGNAL_RECORD_DTYPE[n]) for n in FIELDS])  # unaligned
    with pytest.raises(TypeError, match="SIGNAL_RECORD_DTYPE"):
        rs.pack_into(np.zeros(1, packed_dtype), bytearray(64))
    with pytest.raises(TypeError, match="writable"):
        rs.pack_into(recs, bytes(64))
    with pytest.raises(TypeError, match="C-contiguous"):
        rs.pack_into(np.zeros(4, rs.SIGNAL_RECORD_DTYPE)[::2], bytearray(128))
    with pytest.raises(TypeError):
        rs.unpack("not bytes")  # type: ignore[arg-type]


def test_error_pickles_with_offset() -> None:
    e = rs.SignalFormatError("x", 128)
    e2 = pickle.loads(pickle.dumps(e))
    assert type(e2) is rs.SignalFormatError and e2.offset == 128 and str(e2) == "x"


def test_gil_released_batches_are_correct_under_threads() -> None:
    n = max(4 * rs.GIL_RELEASE_MIN_SIGNALS, 4096)
    rng = np.random.default_rng(7)
    batches = []
    for t in range(4):
        recs = np.zeros(n, rs.SIGNAL_RECORD_DTYPE)
        recs["sequence"] = np.arange(n) + t * n
        recs["price_target"] = rng.random(n, dtype=np.float32) * 1000
        recs["action"] = rng.integers(0, 3, n)
        batches.append(recs)
    expected = [rs.pack(b) for b in batches]
    errors: list[BaseException] = []

    def work(t: int) -> None:
        out = bytearray(64 * n)
        try:
            for _ in range(20):
                rs.pack_into(batches[t], out)
                assert bytes(out) == expected[t]
                assert same_bits(rs.unpack(out), batches[t])
        except BaseException as e:  # reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors


def test_cent_prices_below_2_pow_17_survive_rounding() -> None:
    """docs/signal-format.md: cent prices below $131,072 come back exactly after rounding."""
    rng = np.random.default_rng(17)
    cents = np.concatenate([rng.integers(0, 13_107_200, 20_000), [13_107_199, 1, 0]])
    recs = np.zeros(cents.size, rs.SIGNAL_RECORD_DTYPE)
    recs["price_target"] = cents / 100
    back = rs.unpack(rs.pack(recs))["price_target"].astype(np.float64)
    assert (np.round(back * 100).astype(np.int64) == cents).all()
    above = np.zeros(1, rs.SIGNAL_RECORD_DTYPE)
    above["price_target"] = 131_072.01
    got = float(rs.unpack(rs.pack(above))["price_target"][0])
    assert round(got * 100) != 13_107_201  # the documented limit is real


@pytest.mark.parametrize("position", range(9))
def test_corruption_found_at_any_position_of_a_batch(position: int) -> None:
    """The batch paths check four signals at a time; the first bad one is still the one named."""
    good = rs.pack(records_of([sample(sequence=i) for i in range(9)]))
    for byte in (0, 2, 30, 61):
        bad = bytearray(good)
        bad[64 * position + byte] ^= 0x04
        if position < 8:
            bad[64 * 8] ^= 0xFF  # a later bad signal must not mask this one
        for fn in (rs.unpack, rs.validate):
            with pytest.raises(rs.SignalFormatError) as ei:
                fn(bytes(bad))
            assert ei.value.offset == 64 * position


def test_output_overlapping_the_input_is_refused() -> None:
    recs = records_of([sample()] * 4)
    with pytest.raises(ValueError, match="overlaps"):
        rs.pack_into(recs, recs.view(np.uint8))
    wire = bytearray(rs.pack(recs))
    with pytest.raises(ValueError, match="overlaps"):
        rs.unpack_into(wire, np.frombuffer(wire, rs.SIGNAL_RECORD_DTYPE))
    with pytest.raises(ValueError, match="overlaps"):
        rs.soupbintcp_encode_signals(wire, memoryview(wire))
    enc = rs.MoldUDP64Encoder("S", next_sequence=42)
    big = bytearray(2000)
    big[:256] = wire
    with pytest.raises(ValueError, match="overlaps"):
        enc.encode_signals(memoryview(big)[:256], big, 256)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_no_memory_growth_over_many_calls() -> None:
    """Buffers, bytes, arrays, packets and exceptions are all released (RSS stays flat)."""
    try:
        _rss_bytes()
    except OSError:
        pytest.skip("/proc/self/statm not available")
    recs = records_of([sample(sequence=i) for i in range(1, 23)])
    out = bytearray(64 * 22)
    enc = rs.MoldUDP64Encoder("LEAK", max_datagram=1472)
    frame = bytearray(enc.framed_size(22))
    stream = rs.SoupBinTCPPacket.login_accepted("LEAK", 1).encode() + b"".join(
        rs.SoupBinTCPPacket.sequenced_data(out[i : i + 64]).encode() for i in range(0, 1408, 64)
    )

    def once() -> None:
        rs.pack_into(recs, out)
        rs.unpack(out)
        rs.pack_signal(**sample())
        enc.next_sequence = 1
        spans = enc.encode_signals(out, frame)
        rs.moldudp64_decode(frame[: spans[0][1]]).signals()
        rs.SoupBinTCPDecoder().feed(stream)
        with pytest.raises(rs.SignalFormatError):
            rs.unpack(out[:100])
        with pytest.raises(TypeError):
            rs.pack_into(recs, b"read-only")

    for _ in range(2_000):
        once()
    before = _rss_bytes()
    for _ in range(20_000):
        once()
    assert _rss_bytes() - before < 4 * 1024 * 1024
