"""SoupBinTCP 3.00: every packet type, padding rules, streaming decode in any chunking, errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import relentless_fast_signal as rs

P = rs.SoupBinTCPPacket


def every_packet() -> list[rs.SoupBinTCPPacket]:
    sig = rs.pack_signal(1, 2, 7, 3, 4, 0.5, 10.0, 9.0, 0.25)
    return [
        P.login_request("alice", "secret", "", 1),
        P.login_accepted("SIG001", 7),
        P.debug("hello"),
        P.sequenced_data(sig),
        P.server_heartbeat(),
        P.sequenced_data(b"second"),
        P.login_rejected("A"),
        P.login_rejected("S"),
        P.unsequenced_data(b"order"),
        P.client_heartbeat(),
        P.logout_request(),
        P.end_of_session(),
    ]


def test_reference_examples_byte_exact() -> None:
    login = P.login_request("alice", "secret").encode()
    assert login == bytes.fromhex("002f4c") + b"alice secret    " + b" " * 29 + b"0"
    login1 = P.login_request("alice", "secret", "", 1).encode()
    assert login1[-20:] == b" " * 19 + b"1"
    acc = P.login_accepted("SIG001", 43).encode()
    assert acc == bytes.fromhex("001f41") + b"    SIG001" + b" " * 18 + b"43"
    assert P.server_heartbeat().encode() == bytes.fromhex("000148")
    sig = bytes(range(64))
    assert P.sequenced_data(sig).encode() == bytes.fromhex("004153") + sig


def test_every_type_round_trips_and_has_expected_fields() -> None:
    for p in every_packet():
        raw = p.encode()
        assert int.from_bytes(raw[:2], "big") == len(raw) - 2
        assert raw[2:3].decode() == p.packet_type
        back = rs.soupbintcp_decode(raw)
        assert back == p, (back, p)
    lr = rs.soupbintcp_decode(P.login_request("bob", "pw", "SESS", 99).encode())
    assert (lr.username, lr.password, lr.session, lr.sequence) == ("bob", "pw", "SESS", 99)
    assert rs.soupbintcp_decode(P.login_rejected("S").encode()).reject_reason == "S"
    assert rs.soupbintcp_decode(P.debug("text").encode()).payload == b"text"
    assert P.server_heartbeat().sequence is None and P.server_heartbeat().session is None


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=60))
def test_stream_decoder_any_chunking(cuts: list[int]) -> None:
    packets = every_packet()
    stream = b"".join(p.encode() for p in packets)
    dec = rs.SoupBinTCPDecoder()
    got: list[rs.SoupBinTCPPacket] = []
    pos = 0
    i = 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        got.extend(dec.feed(stream[pos : pos + step]))
        pos += step
        i += 1
    assert got == packets
    assert dec.pending == 0 and dec.position == len(stream)
    offsets = [p.offset for p in got]
    assert offsets[0] == 0 and offsets == sorted(offsets)
    # Sequenced packets are numbered from the Login Accepted's sequence.
    assert [p.sequence for p in got if p.packet_type == "S"] == [7, 8]
    assert dec.next_sequence == 9


def test_stream_of_signals_from_the_batch_encoder() -> None:
    recs = np.zeros(100, rs.SIGNAL_RECORD_DTYPE)
    recs["sequence"] = np.arange(1, 101)
    wire = rs.pack(recs)
    out = bytearray(5 + 100 * rs.SOUPBINTCP_SIGNAL_PACKET_SIZE)
    assert rs.soupbintcp_encode_signals(wire, out, 5) == 6700
    dec = rs.SoupBinTCPDecoder()
    dec.next_sequence = 1
    got = dec.feed(memoryview(out)[5:])
    assert [p.sequence for p in got] == list(range(1, 101))
    back = rs.unpack(b"".join(p.payload for p in got))
    assert (back["sequence"] == recs["sequence"]).all()
    with pytest.raises(ValueError, match="out too small"):
        rs.soupbintcp_encode_signals(wire, bytearray(6699))
    with pytest.raises(rs.FramingError, match="not a multiple of 64"):
        rs.soupbintcp_encode_signals(wire[:65], bytearray(6700))


@pytest.mark.parametrize(
    ("raw", "offset", "match"),
    [
        (b"\x00\x01Q", 2, "unknown SoupBinTCP packet type 0x51"),
        (b"\x00\x00", 0, "packet length 0"),
        (b"\x00\x02Hx", 0, "needs a 0-byte payload"),
        (b"\x00\x02J?", 3, "reject reason"),
        (b"\x00\x1fA" + b"S" * 10 + b"x" * 20, 13, "non-digit"),
        (b"\x00\x1fA" + b"S" * 10 + b" " * 20, 13, "blank"),
        (b"\x00\x1fA" + b"S" * 10 + b"99999999999999999999", 13, "overflows"),
        (b"\x00\x1fA" + b"\x01" * 10 + b"1".rjust(20), 3, "not printable"),
        (b"\x00\x05S", 3, "buffer has 3"),
        (b"\x00\x01SS", 3, "buffer has 4"),
    ],
)
def test_malformed_single_packets(raw: bytes, offset: int, match: str) -> None:
    with pytest.raises(rs.FramingError, match=match) as ei:
        rs.soupbintcp_decode(raw)
    assert ei.value.offset == offset


def test_decoder_tolerates_left_justified_and_zero_padded_numbers() -> None:
    raw = b"\x00\x1fA" + b"SESSION1  " + b"42".ljust(20)
    assert rs.soupbintcp_decode(raw).sequence == 42
    raw = b"\x00\x1fA" + b"  SESSION1" + b"0" * 18 + b"42"
    p = rs.soupbintcp_decode(raw)
    assert (p.session, p.sequence) == ("SESSION1", 42)


def test_stream_error_is_sticky_and_keeps_earlier_packets() -> None:
    dec = rs.SoupBinTCPDecoder()
    good = P.server_heartbeat().encode() + P.debug("x").encode()
    with pytest.raises(rs.FramingError, match="unknown") as ei:
        dec.feed(good + b"\x00\x01?" + P.server_heartbeat().encode())
    assert ei.value.offset == len(good) + 2
    assert [p.packet_type for p in ei.value.packets] == ["H", "+"]  # type: ignore[attr-defined]
    with pytest.raises(rs.FramingError) as again:
        dec.feed(P.server_heartbeat().encode())
    assert again.value.offset == ei.value.offset


def test_partial_packet_is_pending_not_an_error() -> None:
    dec = rs.SoupBinTCPDecoder()
    raw = P.login_accepted("S", 5).encode()
    assert dec.feed(raw[:1]) == [] and dec.pending == 1
    assert dec.feed(raw[1:30]) == [] and dec.pending == 30
    (p,) = dec.feed(raw[30:])
    assert p.sequence == 5 and dec.pending == 0


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: P.login_request("toolong", "pw"), "username is 7 bytes"),
        (lambda: P.login_request("u", "p" * 11), "password is 11 bytes"),
        (lambda: P.login_request("u", "p", "S" * 11), "session is 11 bytes"),
        (lambda: P.login_request("u s", "p"), "not printable ASCII without spaces"),
        (lambda: P.login_accepted("é", 1), "not printable"),
        (lambda: P.login_rejected("X"), "reject reason"),
        (lambda: P.login_rejected("AS"), "one ASCII character"),
        (lambda: P.debug("naïve"), "ASCII"),
        (lambda: P.sequenced_data(b"x" * 65535), "exceeds"),
    ],
)
def test_encoder_refuses_bad_fields(build: object, match: str) -> None:
    with pytest.raises(rs.FramingError, match=match):
        build()  # type: ignore[operator]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120), st.integers(1, 7))
def test_random_stream_never_crashes(data: bytes, step: int) -> None:
    dec = rs.SoupBinTCPDecoder()
    try:
        for i in range(0, len(data), step):
            for p in dec.feed(data[i : i + step]):
                assert p.offset < len(data)
    except rs.FramingError as e:
        assert 0 <= e.offset <= len(data)


def test_largest_packet_round_trips() -> None:
    big = bytes(range(256)) * 255 + b"x" * 254  # 65534 bytes: packet length 65535
    raw = P.unsequenced_data(big).encode()
    assert raw[:2] == b"\xff\xff"
    dec = rs.SoupBinTCPDecoder()
    (p,) = dec.feed(raw)
    assert p.payload == big
