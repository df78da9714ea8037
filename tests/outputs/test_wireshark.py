"""Captures of both streams decode in Wireshark's stock dissectors with no warnings.

Needs ``dumpcap``/``tshark`` and permission to capture on the loopback interface; skipped
otherwise.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from relentless_fast.outputs.consumer import TcpConsumer
from relentless_fast.outputs.tcp import TcpPublisher, TcpPublisherConfig
from relentless_fast.outputs.udp import UdpPublisher, UdpPublisherConfig
from tests.outputs.helpers import free_udp_port, pack_batch

N = 200


async def _traffic(udp_port: int, tcp_port: int) -> None:
    tcp = TcpPublisher(
        TcpPublisherConfig(
            host="127.0.0.1", port=tcp_port, session="WS1", heartbeat_interval_s=0.05
        )
    )
    await tcp.start()
    udp = UdpPublisher(
        UdpPublisherConfig(
            host="127.0.0.1",
            port=udp_port,
            session="WS1",
            heartbeat_interval_s=0.05,
            rerequest_port=None,
        )
    )
    await udp.start()
    consumer = TcpConsumer("127.0.0.1", tcp_port, start_seq=1, heartbeat_interval_s=0.05)
    reader = asyncio.create_task(consumer.run())
    for i in range(N // 10):
        tcp.publish(pack_batch(1 + 10 * i, 10), 10)
        udp.publish(pack_batch(1 + 10 * i, 10), 10)
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.15)  # idle: heartbeats both ways
    await udp.aclose()
    await tcp.aclose()
    await asyncio.wait_for(reader, 10)
    assert consumer.stats.signals == N


def _tshark(pcap: Path, udp_port: int, tcp_port: int, *args: str) -> str:
    cmd = [
        "tshark",
        "-r",
        str(pcap),
        "-d",
        f"udp.port=={udp_port},moldudp64",
        "-d",
        f"tcp.port=={tcp_port},soupbintcp",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout


def test_captures_decode_in_stock_dissectors(tmp_path: Path) -> None:
    if not (shutil.which("tshark") and shutil.which("dumpcap")):
        pytest.skip("tshark/dumpcap not installed")
    udp_port = free_udp_port()
    with socket.socket() as probe:  # a free TCP port for the capture filter
        probe.bind(("127.0.0.1", 0))
        tcp_port = probe.getsockname()[1]
    pcap = tmp_path / "signals.pcapng"
    cap = subprocess.Popen(
        [
            "dumpcap",
            "-q",
            "-i",
            "lo",
            "-f",
            f"udp port {udp_port} or tcp port {tcp_port}",
            "-w",
            str(pcap),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while not (pcap.exists() and pcap.stat().st_size > 0):
            if cap.poll() is not None or time.monotonic() > deadline:
                cap.kill()
                err = cap.communicate(timeout=10)[1].decode()
                pytest.skip(f"cannot capture on loopback: {err.strip()[:200]}")
            time.sleep(0.05)
        time.sleep(0.3)  # the capture filter is live shortly after the file header is written
        asyncio.run(_traffic(udp_port, tcp_port))
        time.sleep(0.3)
    finally:
        if cap.returncode is None:
            cap.terminate()
            cap.communicate(timeout=10)  # also closes the stderr pipe
    experts = _tshark(pcap, udp_port, tcp_port, "-q", "-z", "expert,warn")
    assert "Warning" not in experts and "Error" not in experts and "Malformed" not in experts, (
        experts
    )
    mold = _tshark(
        pcap,
        udp_port,
        tcp_port,
        "-Y",
        "moldudp64.msgseq",
        "-T",
        "fields",
        "-E",
        "occurrence=a",
        "-e",
        "moldudp64.msgseq",
    )
    mold_seqs = [int(s) for line in mold.split() for s in line.split(",")]
    assert mold_seqs == list(range(1, N + 1))
    kinds = _tshark(
        pcap,
        udp_port,
        tcp_port,
        "-Y",
        "soupbintcp",
        "-T",
        "fields",
        "-E",
        "occurrence=a",
        "-e",
        "soupbintcp.packet_type",
    )
    types = [t.strip("'") for line in kinds.split() for t in line.split(",")]
    assert types.count("S") == N
    assert {"L", "A", "H", "R", "Z"} <= set(types)
    # Wireshark 4.0 prints "X" for the computed soupbintcp.seq_num field; compare payloads.
    messages = _tshark(
        pcap,
        udp_port,
        tcp_port,
        "-Y",
        "soupbintcp.packet_type == 0x53",
        "-T",
        "fields",
        "-E",
        "occurrence=a",
        "-e",
        "soupbintcp.message",
    )
    payloads = [
        bytes.fromhex(m.replace(":", "")) for line in messages.split() for m in line.split(",")
    ]
    assert payloads == [pack_batch(s, 1) for s in range(1, N + 1)]
    accepted = _tshark(pcap, udp_port, tcp_port, "-Y", "soupbintcp.packet_type == 0x41", "-V")
    assert "Session:        WS1" in accepted and "Next sequence number: 1" in accepted
