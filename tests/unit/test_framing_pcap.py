"""Captures: the recorded MoldUDP64 / SoupBinTCP samples decode with our decoders, and a capture
of OUR framing decodes cleanly in Wireshark's stock dissectors (when tshark is installed)."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import relentless_fast_signal as rs

# ITCH 5.0 message lengths by type (the payloads in the Nasdaq MoldUDP64 samples).
ITCH50_LENGTH = {b"A": 36, b"D": 19, b"F": 40, b"E": 31, b"X": 23, b"U": 35, b"P": 44}
UDP_PORT, REREQUEST_PORT, TCP_PORT = 8610, 8611, 8620


# ---- minimal classic-pcap reader / writer (Ethernet, optional 802.1Q, IPv4, UDP, TCP) ----------


@dataclass(frozen=True)
class Segment:
    proto: str  # "udp" or "tcp"
    src: tuple[str, int]
    dst: tuple[str, int]
    payload: bytes


def read_pcap(path: Path) -> Iterator[Segment]:
    data = path.read_bytes()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError(f"{path.name}: not a classic pcap file")
    (linktype,) = struct.unpack_from(endian + "I", data, 20)
    if linktype != 1:
        raise ValueError(f"{path.name}: link type {linktype}, only Ethernet (1) is read")
    at = 24
    while at + 16 <= len(data):
        _, _, incl, _ = struct.unpack_from(endian + "IIII", data, at)
        frame = data[at + 16 : at + 16 + incl]
        at += 16 + incl
        seg = parse_ethernet(frame)
        if seg is not None:
            yield seg


def parse_ethernet(frame: bytes) -> Segment | None:
    off = 12
    (ethertype,) = struct.unpack_from(">H", frame, off)
    while ethertype in (0x8100, 0x88A8):  # VLAN tags
        off += 4
        (ethertype,) = struct.unpack_from(">H", frame, off)
    if ethertype != 0x0800:
        return None
    ip = frame[off + 2 :]
    ihl = (ip[0] & 0x0F) * 4
    (total,) = struct.unpack_from(">H", ip, 2)
    ip = ip[:total]  # drop Ethernet padding / trailers beyond the IP datagram
    proto = ip[9]
    src_ip, dst_ip = ".".join(map(str, ip[12:16])), ".".join(map(str, ip[16:20]))
    l4 = ip[ihl:]
    sport, dport = struct.unpack_from(">HH", l4, 0)
    if proto == 17:
        (ulen,) = struct.unpack_from(">H", l4, 4)
        return Segment("udp", (src_ip, sport), (dst_ip, dport), l4[8:ulen])
    if proto == 6:
        doff = (l4[12] >> 4) * 4
        return Segment("tcp", (src_ip, sport), (dst_ip, dport), l4[doff:])
    return None


def ip_checksum(header: bytes) -> int:
    total: int = sum(struct.unpack(f">{len(header) // 2}H", header))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


class PcapWriter:
    """Writes Ethernet/IPv4 frames; tracks TCP sequence numbers per direction."""

    def __init__(self) -> None:
        self.buf = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        self.t_us = 1_764_000_000 * 1_000_000
        self.tcp_seq: dict[tuple[int, int], int] = {}

    def _frame(self, src: str, dst: str, proto: int, l4: bytes) -> None:
        hdr = struct.pack(
            ">BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0x4000, 64, proto, 0,
            bytes(map(int, src.split("."))), bytes(map(int, dst.split("."))),
        )  # fmt: skip
        hdr = hdr[:10] + struct.pack(">H", ip_checksum(hdr)) + hdr[12:]
        eth = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
        frame = eth + hdr + l4
        self.t_us += 100
        self.buf += struct.pack("<IIII", self.t_us // 1_000_000, self.t_us % 1_000_000,
                                len(frame), len(frame))  # fmt: skip
        self.buf += frame

    def udp(self, sport: int, dport: int, payload: bytes) -> None:
        l4 = struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload
        self._frame("127.0.0.1", "127.0.0.2", 17, l4)

    def tcp(self, sport: int, dport: int, payload: bytes, flags: int = 0x18) -> None:
        seq = self.tcp_seq.setdefault((sport, dport), 1000 * sport)
        ack = self.tcp_seq.setdefault((dport, sport), 1000 * dport)
        src, dst = ("127.0.0.1", "127.0.0.2") if dport == TCP_PORT else ("127.0.0.2", "127.0.0.1")
        l4 = struct.pack(">HHIIBBHHH", sport, dport, seq, ack if flags & 0x10 else 0,
                         5 << 4, flags, 65535, 0, 0) + payload  # fmt: skip
        self._frame(src, dst, 6, l4)
        self.tcp_seq[(sport, dport)] = seq + len(payload) + (1 if flags & 0x03 else 0)

    def handshake(self, client_port: int) -> None:
        self.tcp(client_port, TCP_PORT, b"", 0x02)
        self.tcp(TCP_PORT, client_port, b"", 0x12)
        self.tcp(client_port, TCP_PORT, b"", 0x10)


# ---- the recorded samples decode with our decoders -----------------------------------------


def test_moldudp64_itch_samples_decode(shared_fixtures: Path) -> None:
    pcap_dir = shared_fixtures / "pcap"
    multi = [s for s in read_pcap(pcap_dir / "moldudp64_itch50_multiple_packets.pcap")]
    assert [s.proto for s in multi] == ["udp", "udp"]
    packets = [rs.moldudp64_decode(s.payload) for s in multi]
    assert [(p.kind, p.session, p.sequence, p.count) for p in packets] == [
        ("data", "000010059B", 14764496, 1),
        ("data", "000010059B", 19009117, 38),
    ]
    assert len(multi[1].payload) == 1472
    for p in packets:
        for m in p.messages:
            assert len(m) == ITCH50_LENGTH[m[:1]], m[:1]
    assert {m[:1] for m in packets[1].messages} <= {b"A", b"F"}
    assert packets[0].messages[0][:1] == b"D"

    (single,) = read_pcap(pcap_dir / "moldudp64_itch50_add_order_A.pcap")
    p = rs.moldudp64_decode(single.payload)
    assert (p.session, p.sequence, p.count) == ("000010059B", 14757721, 1)
    assert p.messages[0][:1] == b"A" and len(p.messages[0]) == 36
    with pytest.raises(rs.SignalFormatError):
        p.signals()  # ITCH is not our signal: refused, with an offset


@pytest.mark.parametrize(
    ("name", "ptype", "length", "first_payload_byte"),
    [
        ("soupbintcp_S_sequenced_ouch50_order_accepted.pcap", "S", 74, b"A"),
        ("soupbintcp_U_unsequenced_ouch50_enter_order.pcap", "U", 54, b"O"),
        ("soupbintcp_H_server_heartbeat.pcap", "H", 1, b""),
        ("soupbintcp_R_client_heartbeat.pcap", "R", 1, b""),
    ],
)
def test_soupbintcp_samples_decode(
    shared_fixtures: Path, name: str, ptype: str, length: int, first_payload_byte: bytes
) -> None:
    segs = [s for s in read_pcap(shared_fixtures / "pcap" / name) if s.payload]
    dec = rs.SoupBinTCPDecoder()
    got = [p for s in segs for p in dec.feed(s.payload)]
    assert dec.pending == 0
    (p,) = got
    assert p.packet_type == ptype
    assert len(p.payload) + 1 == length
    assert p.payload[:1] == first_payload_byte
    assert rs.soupbintcp_decode(p.encode()) == p
    assert p.encode() == b"".join(s.payload for s in segs)


# ---- Wireshark reads our framing -------------------------------------------------------------


def write_our_capture(path: Path) -> dict[str, object]:
    """UDP MoldUDP64 (data, heartbeat, re-request, end of session) and two SoupBinTCP sessions."""
    w = PcapWriter()
    recs = np.zeros(30, rs.SIGNAL_RECORD_DTYPE)
    recs["sequence"] = np.arange(1, 31)
    recs["symbol_id"] = np.arange(30)
    recs["action"] = np.arange(30) % 3
    wire = rs.pack(recs)

    enc = rs.MoldUDP64Encoder("RFSIG01")
    out = bytearray(enc.framed_size(30))
    spans = enc.encode_signals(wire, out)
    for start, length in spans:
        w.udp(40000, UDP_PORT, bytes(out[start : start + length]))
    w.udp(40000, UDP_PORT, enc.heartbeat())
    w.udp(40001, REREQUEST_PORT, rs.moldudp64_request("RFSIG01", 5, 3))
    w.udp(40000, UDP_PORT, enc.end_of_session())

    sp = rs.SoupBinTCPPacket
    w.handshake(50000)
    w.tcp(50000, TCP_PORT, sp.login_request("alice", "secret", "", 1).encode())
    w.tcp(TCP_PORT, 50000, sp.login_accepted("RFSIG01", 1).encode())
    soup = bytearray(30 * rs.SOUPBINTCP_SIGNAL_PACKET_SIZE)
    rs.soupbintcp_encode_signals(wire, soup)
    w.tcp(TCP_PORT, 50000, bytes(soup[: 10 * 67]))  # ten S packets in one segment
    w.tcp(TCP_PORT, 50000, bytes(soup[10 * 67 : 10 * 67 + 30]))  # one S split over two
    w.tcp(TCP_PORT, 50000, bytes(soup[10 * 67 + 30 :]))
    w.tcp(TCP_PORT, 50000, sp.server_heartbeat().encode())
    w.tcp(50000, TCP_PORT, sp.client_heartbeat().encode())
    w.tcp(50000, TCP_PORT, sp.unsequenced_data(b"cancel-all").encode())
    w.tcp(TCP_PORT, 50000, sp.debug("relentless-fast test").encode())
    w.tcp(TCP_PORT, 50000, sp.end_of_session().encode())
    w.tcp(50000, TCP_PORT, sp.logout_request().encode())
    w.handshake(50001)
    w.tcp(50001, TCP_PORT, sp.login_request("mallet", "guess", "RFSIG01", 0).encode())
    w.tcp(TCP_PORT, 50001, sp.login_rejected("A").encode())
    path.write_bytes(bytes(w.buf))
    return {"mold_packets": len(spans), "signals": 30, "wire": wire}


def test_our_capture_round_trips_through_our_reader(tmp_path: Path) -> None:
    info = write_our_capture(tmp_path / "ours.pcap")
    segs = list(read_pcap(tmp_path / "ours.pcap"))
    udp = [rs.moldudp64_decode(s.payload) for s in segs if s.proto == "udp"]
    assert [p.kind for p in udp] == ["data", "data", "heartbeat", "request", "end_of_session"]
    assert b"".join(m for p in udp for m in p.messages) == info["wire"]
    dec = rs.SoupBinTCPDecoder()
    types = [p.packet_type for s in segs if s.proto == "tcp" and s.src[1] == TCP_PORT
             and s.dst[1] == 50000 for p in dec.feed(s.payload)]  # fmt: skip
    assert types == ["A"] + ["S"] * 30 + ["H", "+", "Z"]


def tshark_fields(pcap: Path, *fields: str, display_filter: str = "") -> list[list[str]]:
    tshark = shutil.which("tshark")
    assert tshark is not None
    cmd = [tshark, "-n", "-r", str(pcap), "-T", "fields", "-E", "separator=/t",
           "-d", f"udp.port=={UDP_PORT},moldudp64",
           "-d", f"udp.port=={REREQUEST_PORT},moldudp64",
           "-d", f"tcp.port=={TCP_PORT},soupbintcp"]  # fmt: skip
    if display_filter:
        cmd += ["-Y", display_filter]
    for f in fields:
        cmd += ["-e", f]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    return [line.split("\t") for line in run.stdout.splitlines()]


def tshark_verbose(pcap: Path, display_filter: str) -> str:
    tshark = shutil.which("tshark")
    assert tshark is not None
    cmd = [tshark, "-n", "-r", str(pcap), "-d", f"tcp.port=={TCP_PORT},soupbintcp", "-V",
           "-Y", display_filter]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout


def test_wireshark_decodes_our_framing(tmp_path: Path) -> None:
    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed (apt-get install tshark): Wireshark check skipped")
    pcap = tmp_path / "ours.pcap"
    write_our_capture(pcap)

    mold = tshark_fields(pcap, "moldudp64.session", "moldudp64.sequence", "moldudp64.count",
                         "moldudp64.msglen", display_filter="moldudp64")  # fmt: skip
    assert [row[:3] for row in mold] == [
        ["RFSIG01   ", "1", "22"],
        ["RFSIG01   ", "23", "8"],
        ["RFSIG01   ", "31", "0"],
        ["RFSIG01   ", "5", "3"],
        ["RFSIG01   ", "31", "65535"],
    ]
    assert mold[0][3].split(",") == ["64"] * 22

    soup = tshark_fields(pcap, "soupbintcp.packet_type", display_filter="soupbintcp")
    decoded = "".join(t.strip("'") for row in soup for t in row[0].split(","))
    assert decoded == "LA" + "S" * 30 + "HRU+ZO" + "LJ", decoded

    # The dissector numbers S packets from the Login Accepted, as our decoder does.
    verbose = tshark_verbose(pcap, "soupbintcp.packet_type == 0x53")
    numbers = [int(n) for n in re.findall(r"Sequence number: (\d+) \(Calculated\)", verbose)]
    assert numbers == list(range(1, 31))
    assert verbose.count("Message: 524601") == 30  # our magic + layout version

    bad = tshark_fields(
        pcap, "frame.number", display_filter="_ws.malformed || _ws.expert.severity >= warning"
    )
    assert bad == [], f"frames with malformed/warning expert info: {bad}"


def test_wireshark_check_can_fail(tmp_path: Path) -> None:
    """The malformed/expert filter above flags a broken packet (so its silence means something)."""
    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed (apt-get install tshark): Wireshark check skipped")
    w = PcapWriter()
    good = rs.MoldUDP64Encoder("RFSIG01").encode_messages([b"x" * 64])[0]
    w.udp(40000, UDP_PORT, good)
    w.udp(40000, UDP_PORT, good[:18] + b"\x00\x02" + good[20:])  # count 2, one block
    pcap = tmp_path / "broken.pcap"
    pcap.write_bytes(bytes(w.buf))
    bad = tshark_fields(
        pcap, "frame.number", display_filter="_ws.malformed || _ws.expert.severity >= warning"
    )
    assert bad == [["2"]]
