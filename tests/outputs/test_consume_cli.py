"""``relentless-fast consume`` end to end: a subprocess against both publishers."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from relentless_fast.outputs.cli import parse_url
from relentless_fast.outputs.consumer import UdpSource
from relentless_fast.outputs.tcp import TcpPublisher, TcpPublisherConfig
from relentless_fast.outputs.udp import UdpPublisher, UdpPublisherConfig
from relentless_fast.symbols import SymbolTable
from tests.outputs.helpers import free_udp_port, pack_batch

REPO = Path(__file__).resolve().parents[2]


async def _consume(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "relentless_fast.outputs.cli",
        "consume",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO,
    )


async def _feed_until_exit(
    proc: asyncio.subprocess.Process, publish: Callable[[bytearray, int], int], per_batch: int = 3
) -> tuple[int, str, str]:
    """Publish a batch every 20 ms until the consumer exits (at most 20 s)."""
    communicate = asyncio.create_task(proc.communicate())
    seq = 1
    for _ in range(1000):
        if communicate.done():
            break
        publish(pack_batch(seq, per_batch, symbol_id=2), per_batch)
        seq += per_batch
        await asyncio.sleep(0.02)
    out, err = await asyncio.wait_for(communicate, 20)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_consume_udp_from_sequence_one_recovers_what_it_missed(tmp_path: Path) -> None:
    port = free_udp_port()
    cfg = UdpPublisherConfig(
        host="127.0.0.1",
        port=port,
        session="CLI1",
        rerequest_host="127.0.0.1",
        rerequest_port=0,
        heartbeat_interval_s=0.1,
    )
    table = tmp_path / "symbols.txt"
    SymbolTable(["AAPL", "MSFT", "NVDA"]).save(table)
    async with UdpPublisher(cfg) as pub:
        assert pub.rerequest_address is not None
        pub.publish(pack_batch(1, 6, symbol_id=2), 6)  # before the consumer is up: recovered
        url = f"udp://127.0.0.1:{port}?rerequest=127.0.0.1:{pub.rerequest_address[1]}"
        proc = await _consume(
            url,
            "--from-seq",
            "1",
            "--count",
            "30",
            "--symbols",
            str(table),
            "--rerequest-interval",
            "0.1",
        )
        code, out, err = await _feed_until_exit(proc, pub.publish)
    lines = out.splitlines()
    assert code == 0, err
    assert [line.split()[0] for line in lines] == [f"seq={i}" for i in range(1, 31)]
    assert lines[0].split()[1:3] == ["NVDA", "buy"]
    assert "conf=0.750 target=101.25 stop=99.50 size=0.500" in lines[0]
    assert "flags=stale ctx=9" in lines[0]


async def test_consume_tcp_summary_and_login_failure() -> None:
    cfg = TcpPublisherConfig(
        host="127.0.0.1", port=0, session="CLI2", username="ops", password="pw"
    )
    async with TcpPublisher(cfg) as pub:
        host, port = pub.address
        proc = await _consume(
            f"tcp://{host}:{port}",
            "--username",
            "ops",
            "--password",
            "pw",
            "--from-seq",
            "1",
            "--count",
            "12",
            "--summary",
        )
        code, out, err = await _feed_until_exit(proc, pub.publish)
        assert code == 0, err
        assert out.startswith("session CLI2: 12 signals (buy 12, sell 0, hold 0), sequences 1..12")
        assert "gaps 0, recovered 0, lost 0" in out
        assert "bad signals 0, sequence mismatches 0" in out
        assert "emit->receive latency us" in out
        proc = await _consume(f"tcp://{host}:{port}", "--username", "ops", "--password", "no")
        _, err_b = await asyncio.wait_for(proc.communicate(), 20)
        assert proc.returncode == 2
        assert "login rejected (A)" in err_b.decode()


async def test_consume_refuses_bad_urls() -> None:
    for url in ("http://x:1", "udp://127.0.0.1", "udp://127.0.0.1:9?bogus=1", "tcp://h:1?x=1"):
        proc = await _consume(url)
        _, err = await asyncio.wait_for(proc.communicate(), 20)
        assert proc.returncode == 2, url
        assert "relentless-fast consume:" in err.decode()


def test_parse_url_forms() -> None:
    assert parse_url("tcp://10.0.0.1:8620") == ("10.0.0.1", 8620)
    assert parse_url("udp://239.255.86.10:8610?rerequest=10.0.0.2:8611&interface=10.0.0.9") == (
        UdpSource(
            host="239.255.86.10", port=8610, interface="10.0.0.9", rerequest=("10.0.0.2", 8611)
        )
    )
    src = parse_url("udp://0.0.0.0:8610?group=239.1.2.3")
    assert isinstance(src, UdpSource) and src.group == "239.1.2.3"
    with pytest.raises(ValueError, match="rerequest must be HOST:PORT"):
        parse_url("udp://0.0.0.0:8610?rerequest=nope")
