"""The shared hex vectors (tests/vectors/) checked from Python and by the C header via gcc."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import relentless_fast_signal as rs

REPO = Path(__file__).resolve().parents[2]
VECTORS = REPO / "tests" / "vectors"
SIGNALS = tomllib.loads((VECTORS / "signal_v1.toml").read_text())
FRAMING = tomllib.loads((VECTORS / "framing_v1.toml").read_text())
FIELDS = list(rs.SIGNAL_RECORD_DTYPE.names or ())
ERROR_TEXT = {
    "magic": "bad magic",
    "version": "unsupported layout version",
    "crc": "CRC-32C mismatch",
    "action": "bad action",
    "length": "not a multiple of 64",
}


def record_of(v: dict[str, Any]) -> np.ndarray:
    rec = np.zeros(1, rs.SIGNAL_RECORD_DTYPE)
    for k in FIELDS:
        if k in v:
            rec[k] = v[k]
        else:
            rec[k] = np.uint32(v[f"{k}_bits"]).view(np.float32)
    return rec


def test_vector_files_are_not_empty() -> None:
    assert len(SIGNALS["valid"]) >= 4 and len(SIGNALS["invalid"]) >= 10
    assert {"moldudp64", "moldudp64_invalid", "soupbintcp", "soupbintcp_invalid"} <= set(FRAMING)


@pytest.mark.parametrize("v", SIGNALS["valid"], ids=lambda v: v["name"])
def test_valid_signal_vectors(v: dict[str, Any]) -> None:
    wire = bytes.fromhex(v["hex"])
    rec = record_of(v)
    assert rs.pack(rec) == wire
    assert rs.unpack(wire).tobytes() == rec.tobytes()
    args = {k: rec[k][0].item() for k in FIELDS}
    if not any(np.isnan(rec[k][0]) for k in ("confidence", "price_target", "stop_loss")):
        assert rs.pack_signal(**args) == wire
    assert rs.crc32c(wire[:60]) == int.from_bytes(wire[60:], "big")


@pytest.mark.parametrize("v", SIGNALS["invalid"], ids=lambda v: v["name"])
def test_invalid_signal_vectors(v: dict[str, Any]) -> None:
    with pytest.raises(rs.SignalFormatError, match=ERROR_TEXT[v["error"]]) as ei:
        rs.unpack(bytes.fromhex(v["hex"]))
    assert ei.value.offset == v["offset"]


@pytest.mark.parametrize("v", FRAMING["moldudp64"], ids=lambda v: v["name"])
def test_moldudp64_vectors(v: dict[str, Any]) -> None:
    raw = bytes.fromhex(v["hex"])
    p = rs.moldudp64_decode(raw)
    assert (p.kind, p.session, p.sequence, p.count) == (
        v["kind"], v["session"], v["sequence"], v["count"],
    )  # fmt: skip
    assert p.messages == [bytes.fromhex(m) for m in v["messages"]]
    enc = rs.MoldUDP64Encoder(v["session"], next_sequence=v["sequence"])
    if v["kind"] == "data":
        assert enc.encode_messages(p.messages) == [raw]
    elif v["kind"] == "heartbeat":
        assert enc.heartbeat() == raw
    elif v["kind"] == "end_of_session":
        assert enc.end_of_session() == raw
    else:
        assert rs.moldudp64_request(v["session"], v["sequence"], v["count"]) == raw


@pytest.mark.parametrize("v", FRAMING["moldudp64_invalid"], ids=lambda v: v["name"])
def test_moldudp64_invalid_vectors(v: dict[str, Any]) -> None:
    with pytest.raises(rs.FramingError) as ei:
        rs.moldudp64_decode(bytes.fromhex(v["hex"]))
    assert ei.value.offset == v["offset"]


def build_soup(v: dict[str, Any]) -> rs.SoupBinTCPPacket:
    t = v["type"]
    payload = bytes.fromhex(v.get("payload", ""))
    return {
        "L": lambda: rs.SoupBinTCPPacket.login_request(
            v["username"], v["password"], v["session"], v["sequence"]
        ),
        "A": lambda: rs.SoupBinTCPPacket.login_accepted(v["session"], v["sequence"]),
        "J": lambda: rs.SoupBinTCPPacket.login_rejected(v["reject_reason"]),
        "S": lambda: rs.SoupBinTCPPacket.sequenced_data(payload),
        "U": lambda: rs.SoupBinTCPPacket.unsequenced_data(payload),
        "+": lambda: rs.SoupBinTCPPacket.debug(payload.decode("ascii")),
        "H": rs.SoupBinTCPPacket.server_heartbeat,
        "Z": rs.SoupBinTCPPacket.end_of_session,
        "R": rs.SoupBinTCPPacket.client_heartbeat,
        "O": rs.SoupBinTCPPacket.logout_request,
    }[t]()


@pytest.mark.parametrize("v", FRAMING["soupbintcp"], ids=lambda v: v["name"])
def test_soupbintcp_vectors(v: dict[str, Any]) -> None:
    raw = bytes.fromhex(v["hex"])
    p = rs.soupbintcp_decode(raw)
    assert p.packet_type == v["type"]
    for attr in ("username", "password", "session", "sequence", "reject_reason"):
        if attr in v:
            assert getattr(p, attr) == v[attr], attr
    if "payload" in v:
        assert p.payload == bytes.fromhex(v["payload"])
    built = build_soup(v)
    assert built == p
    assert built.encode() == raw


@pytest.mark.parametrize("v", FRAMING["soupbintcp_invalid"], ids=lambda v: v["name"])
def test_soupbintcp_invalid_vectors(v: dict[str, Any]) -> None:
    with pytest.raises(rs.FramingError) as ei:
        rs.soupbintcp_decode(bytes.fromhex(v["hex"]))
    assert ei.value.offset == v["offset"]


def test_c_header_checks_the_vectors(tmp_path: Path) -> None:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc not installed: the C header vector check needs a C compiler")
    exe = tmp_path / "check_vectors"
    subprocess.run(
        [gcc, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic",
         f"-I{REPO / 'include'}", str(REPO / "tests" / "c" / "check_vectors.c"), "-o", str(exe)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    run = subprocess.run(
        [str(exe), str(VECTORS / "signal_v1.toml")], capture_output=True, text=True, timeout=60
    )
    n_expected = len(SIGNALS["valid"]) + len(SIGNALS["invalid"]) + 1
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip().endswith(f"{n_expected} passed, 0 failed"), run.stdout


def test_c_header_rejects_a_corrupted_vector_file(tmp_path: Path) -> None:
    """The C checker can fail: a vector whose hex was altered is reported."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc not installed: the C header vector check needs a C compiler")
    exe = tmp_path / "check_vectors"
    subprocess.run(
        [gcc, "-std=c99", f"-I{REPO / 'include'}", str(REPO / "tests" / "c" / "check_vectors.c"),
         "-o", str(exe)],
        check=True, capture_output=True,
    )  # fmt: skip
    text = (VECTORS / "signal_v1.toml").read_text()
    first_hex = SIGNALS["valid"][0]["hex"]
    broken = first_hex[:40] + ("0" if first_hex[40] != "0" else "1") + first_hex[41:]
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace(first_hex, broken, 1))
    run = subprocess.run([str(exe), str(bad)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "FAIL valid/buy_basic" in run.stdout
