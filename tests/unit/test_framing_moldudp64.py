"""MoldUDP64 framing: packetization arithmetic, round trips, control packets, malformed input."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import relentless_fast_signal as rs


def signals(first_seq: int, n: int) -> bytes:
    recs = np.zeros(n, rs.SIGNAL_RECORD_DTYPE)
    recs["sequence"] = np.arange(first_seq, first_seq + n, dtype=np.uint64)
    recs["symbol_id"] = np.arange(n) % 97
    recs["price_target"] = np.linspace(1.0, 500.0, n, dtype=np.float32)
    return rs.pack(recs)


@pytest.mark.parametrize(("max_datagram", "per_packet"), [(1472, 22), (1420, 21), (86, 1)])
def test_signals_per_packet_arithmetic(max_datagram: int, per_packet: int) -> None:
    enc = rs.MoldUDP64Encoder("SIG0001", max_datagram=max_datagram)
    assert enc.signals_per_packet == per_packet
    assert 20 + per_packet * 66 <= max_datagram < 20 + (per_packet + 1) * 66


def test_default_max_datagram_fills_a_1500_mtu() -> None:
    enc = rs.MoldUDP64Encoder("SIG0001")
    assert enc.max_datagram == rs.MOLDUDP64_DEFAULT_MAX_DATAGRAM == 1472
    buf = signals(1, 50)
    out = bytearray(enc.framed_size(50))
    spans = enc.encode_signals(buf, out)
    assert [length for _, length in spans] == [1472, 1472, 20 + 6 * 66]
    assert enc.next_sequence == 51


@settings(max_examples=60, deadline=None)
@given(
    first=st.integers(1, 2**40),
    n=st.integers(0, 200),
    max_datagram=st.integers(86, 4000),
    offset=st.integers(0, 50),
)
def test_signal_round_trip_through_packets(
    first: int, n: int, max_datagram: int, offset: int
) -> None:
    enc = rs.MoldUDP64Encoder("RF-TEST", next_sequence=first, max_datagram=max_datagram)
    buf = signals(first, n)
    out = bytearray(offset + enc.framed_size(n))
    spans = enc.encode_signals(buf, out, offset)
    got = b""
    expect_seq = first
    for start, length in spans:
        assert start >= offset and length <= max_datagram
        p = rs.moldudp64_decode(out[start : start + length])
        assert (p.kind, p.session, p.sequence) == ("data", "RF-TEST", expect_seq)
        assert 1 <= p.count == len(p) <= enc.signals_per_packet
        recs = p.signals()
        assert (recs["sequence"] == np.arange(expect_seq, expect_seq + p.count)).all()
        got += b"".join(p.messages)
        expect_seq += p.count
    assert got == buf and enc.next_sequence == first + n
    hb = rs.moldudp64_decode(enc.heartbeat())
    assert (hb.kind, hb.sequence, hb.count, hb.messages) == ("heartbeat", first + n, 0, [])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=40), st.integers(400, 2000))
def test_generic_messages_round_trip(messages: list[bytes], max_datagram: int) -> None:
    enc = rs.MoldUDP64Encoder("GEN", next_sequence=5, max_datagram=max_datagram)
    packets = enc.encode_messages(messages)
    got: list[bytes] = []
    for raw in packets:
        assert len(raw) <= max_datagram
        p = rs.moldudp64_decode(raw)
        assert p.sequence == 5 + len(got)
        got.extend(p.messages)
    assert got == messages and enc.next_sequence == 5 + len(messages)


def test_control_packets_match_the_reference_example() -> None:
    enc = rs.MoldUDP64Encoder("SIG0001", next_sequence=43)
    assert enc.heartbeat() == b"SIG0001   " + bytes.fromhex("000000000000002b0000")
    eos = rs.moldudp64_decode(enc.end_of_session())
    assert (eos.kind, eos.sequence, eos.count) == ("end_of_session", 43, 0xFFFF)
    req = rs.moldudp64_request("SIG0001", 42, 5)
    assert req == b"SIG0001   " + bytes.fromhex("000000000000002a0005")
    p = rs.moldudp64_decode(req)
    assert (p.kind, p.sequence, p.count) == ("request", 42, 5)


def test_sequence_gap_in_signals_is_refused_with_offset() -> None:
    enc = rs.MoldUDP64Encoder("SIG0001", next_sequence=10)
    buf = signals(10, 3) + signals(14, 1)
    with pytest.raises(rs.FramingError, match="carries sequence 14, expected 13") as ei:
        enc.encode_signals(buf, bytearray(enc.framed_size(4)))
    assert ei.value.offset == 192 and enc.next_sequence == 10


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: rs.MoldUDP64Encoder("ELEVENCHARS"), "at most 10"),
        (lambda: rs.MoldUDP64Encoder("tab\there"), "not printable"),
        (lambda: rs.MoldUDP64Encoder("S", max_datagram=85), "max_datagram 85"),
        (lambda: rs.MoldUDP64Encoder("S", max_datagram=70000), "max_datagram 70000"),
        (lambda: rs.moldudp64_request("S", 1, 0), "request count 0"),
        (lambda: rs.moldudp64_request("S", 1, 0xFFFF), "request count 65535"),
        (lambda: rs.MoldUDP64Encoder("S", max_datagram=100).encode_messages([b"x" * 79]), "fit"),
    ],
)
def test_bad_encoder_arguments(call: object, match: str) -> None:
    with pytest.raises(rs.FramingError, match=match):
        call()  # type: ignore[operator]


def test_out_too_small_and_partial_signal() -> None:
    enc = rs.MoldUDP64Encoder("S")
    with pytest.raises(ValueError, match="out too small"):
        enc.encode_signals(signals(1, 30), bytearray(enc.framed_size(30) - 1))
    with pytest.raises(rs.FramingError, match="not a multiple of 64") as ei:
        enc.encode_signals(signals(1, 2)[:100], bytearray(1000))
    assert ei.value.offset == 64


def test_every_truncation_is_a_clear_error() -> None:
    enc = rs.MoldUDP64Encoder("TRUNC")
    (raw,) = enc.encode_messages([b"abc", b"", b"hello world"])
    for cut in range(len(raw)):
        if cut == 20:
            continue  # exactly a header with count 3 is a valid re-request
        with pytest.raises(rs.FramingError) as ei:
            rs.moldudp64_decode(raw[:cut])
        assert 0 <= ei.value.offset <= cut
        assert "byte offset" in str(ei.value)
    assert rs.moldudp64_decode(raw[:20]).kind == "request"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_crash(data: bytes) -> None:
    try:
        p = rs.moldudp64_decode(data)
    except rs.FramingError as e:
        assert 0 <= e.offset <= len(data)
    else:
        assert sum(len(m) + 2 for m in p.messages) + 20 == len(data) or p.kind != "data"


def test_signals_of_a_non_signal_message_names_the_offset() -> None:
    enc = rs.MoldUDP64Encoder("S")
    (raw,) = enc.encode_messages([signals(1, 1), b"short"])
    p = rs.moldudp64_decode(raw)
    with pytest.raises(rs.SignalFormatError, match="is 5 bytes") as ei:
        p.signals()
    assert ei.value.offset == 20 + 66 + 2
    bad = bytearray(signals(1, 2))
    bad[64 + 10] ^= 1
    (raw,) = rs.MoldUDP64Encoder("S").encode_messages([bytes(bad[:64]), bytes(bad[64:])])
    with pytest.raises(rs.SignalFormatError, match="CRC") as ei:
        rs.moldudp64_decode(raw).signals()
    assert ei.value.offset == 20 + 66 + 2


def test_message_offsets_point_into_the_datagram() -> None:
    (raw,) = rs.MoldUDP64Encoder("S").encode_messages([b"ab", b"cde"])
    p = rs.moldudp64_decode(raw)
    assert p.message_offsets == [22, 26]
    assert [raw[o : o + len(m)] for o, m in zip(p.message_offsets, p.messages, strict=True)] == [
        b"ab",
        b"cde",
    ]
    assert struct.unpack(">H", raw[18:20]) == (2,)


def test_sequence_overflow_is_refused() -> None:
    enc = rs.MoldUDP64Encoder("S", next_sequence=2**64 - 3)
    with pytest.raises(rs.FramingError, match="overflow"):
        enc.encode_messages([b"a", b"b", b"c"])
    assert len(enc.encode_messages([b"a", b"b"])) == 1
    assert enc.next_sequence == 2**64 - 1  # the next sequence must itself fit in u64
    with pytest.raises(rs.FramingError, match="overflow"):
        enc.encode_signals(rs.pack_signal(0, 0, 2**64 - 1, 0, 0, 0, 0, 0, 0), bytearray(86))


def test_large_batch_framed_with_gil_released_matches_small_batches() -> None:
    n = 4 * rs.GIL_RELEASE_MIN_SIGNALS + 3
    buf = signals(1, n)
    big = rs.MoldUDP64Encoder("S")
    out_big = bytearray(big.framed_size(n))
    big.encode_signals(buf, out_big)
    small = rs.MoldUDP64Encoder("S")
    per = small.signals_per_packet
    pieces = []
    for i in range(0, n, per):
        chunk = buf[64 * i : 64 * min(i + per, n)]
        out = bytearray(small.framed_size(len(chunk) // 64))
        small.encode_signals(chunk, out)
        pieces.append(bytes(out))
    assert bytes(out_big) == b"".join(pieces)
