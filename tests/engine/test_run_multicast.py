"""``relentless-fast run`` on its UDP default, the multicast group, received on loopback.

The engine runs as a real subprocess with ``[outputs.udp] host`` left at its default
(239.255.86.10) and ``multicast_interface = 127.0.0.1`` (DESIGN.md: tests set
``IP_MULTICAST_IF`` to 127.0.0.1); a consumer joins the group on 127.0.0.1. A machine without a
multicast route on loopback is found by trying, and the test is skipped with the reason.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from relentless_fast import signals
from relentless_fast.config import load_config
from relentless_fast.outputs.consumer import UdpConsumer, UdpSource
from tests.engine.conftest import REPO_ROOT

GROUP = "239.255.86.10"
LOOPBACK = "127.0.0.1"
MODEL = str(REPO_ROOT / "models" / "relentless_financial")
FRAMES = 200


def loopback_multicast_problem() -> str | None:
    """None when a datagram sent to GROUP through 127.0.0.1 comes back to a member socket
    joined on 127.0.0.1; else why not."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        receiver.bind((GROUP, 0))
        mreq = socket.inet_aton(GROUP) + socket.inet_aton(LOOPBACK)
        receiver.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        receiver.settimeout(1.0)
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(LOOPBACK))
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        sender.sendto(b"probe", (GROUP, receiver.getsockname()[1]))
        data, _ = receiver.recvfrom(64)
        return None if data == b"probe" else f"unexpected datagram {data!r}"
    except OSError as exc:
        return f"no multicast on loopback here ({GROUP} via {LOOPBACK}): {exc}"
    finally:
        receiver.close()
        sender.close()


def clean_env() -> dict[str, str]:
    """This environment without ``RELENTLESS_*`` overrides (the defaults are under test)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("RELENTLESS_")}


async def run_engine_and_receive(
    extra: list[str],
) -> tuple[int, dict[str, Any], str, UdpConsumer, list[tuple[int, npt.NDArray[np.void]]]]:
    """Join the group, run ``relentless-fast run`` to the end of its synthetic feed, receive
    until end of session. Returns (exit code, snapshot, stderr, consumer, signals)."""
    received: list[tuple[int, npt.NDArray[np.void]]] = []
    consumer = UdpConsumer(
        UdpSource(host=GROUP, port=0, group=GROUP, interface=LOOPBACK),
        on_signal=lambda seq, rec, _ns: received.append((seq, rec.copy())),
    )
    await consumer.start()
    port = consumer.address[1]
    argv = [sys.executable, "-m", "relentless_fast.cli", "run", "--seconds", "30",
            "--feed.synthetic_frames", str(FRAMES), "--feed.synthetic_max_messages", "20",
            "--outputs.udp.port", str(port), "--outputs.udp.multicast_interface", LOOPBACK,
            "--outputs.udp.rerequest_port", "-1", "--outputs.grpc.enabled", "false",
            "--context.snapshot_path", "", "--inference.model_base_path", MODEL,
            "--engine.kill_signal", "", "--monitor.audit_enabled", "false",
            "--monitor.metrics_enabled", "false", *extra]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=REPO_ROOT,
        env=clean_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        if proc.returncode == 0:  # end of session was sent before the counters were printed
            await consumer.run(seconds=5)
    finally:
        consumer.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    snapshot = json.loads(out) if proc.returncode == 0 else {}
    return proc.returncode or 0, snapshot, err.decode(errors="replace"), consumer, received


def test_the_udp_default_is_the_multicast_group() -> None:
    udp = load_config(env={}).outputs.udp
    assert udp.host == GROUP and udp.enabled


def test_run_publishes_every_signal_to_the_default_group_on_loopback() -> None:
    problem = loopback_multicast_problem()
    if problem is not None:
        pytest.skip(problem)
    code, snap, err, consumer, received = asyncio.run(run_engine_and_receive([]))
    assert code == 0, err
    udp = snap["udp"]
    assert snap["frames"] == FRAMES and snap["signals"] > 0
    assert udp["signals_sent"] == udp["signals_in"] == snap["signals"]
    assert udp["send_errors"] == 0 and udp["eagain_drops"] == 0
    stats = consumer.stats
    assert stats.end_of_session and stats.clean and stats.gaps == 0
    assert stats.session == snap["session"]
    assert stats.signals == snap["signals"] == snap["last_sequence"]
    # Every signal decodes (CRC checked by the consumer) and carries its framing sequence.
    assert [seq for seq, _ in received] == list(range(1, snap["last_sequence"] + 1))
    records = np.concatenate([rec for _, rec in received])
    assert records.dtype == signals.SIGNAL_RECORD_DTYPE
    assert (records["sequence"] == np.arange(1, len(records) + 1)).all()
    n_symbols = len(load_config(env={}).engine.symbols)
    assert (records["symbol_id"] < n_symbols).all()
    assert (records["flags"] & signals.FLAG_CONTEXT_STALE).all()  # no context store configured
