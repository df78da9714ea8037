"""outputs: ns/signal to publish a packed batch over UDP (MoldUDP64) and TCP (SoupBinTCP).

Groups (side by side in one run, same pre-packed signals with the right sequence numbers, real
loopback sockets):

- ``udp-publish-<B>``: ``UdpPublisher.publish(buf, B)`` (window copy, Rust framing into filled
  1472-byte datagrams, one ``sendto`` per datagram) versus the seed's way: ``struct.pack`` of a
  MoldUDP64 header per signal and one ``sendto`` per signal.
- ``tcp-publish-<B>``: ``TcpPublisher.publish(buf, B)`` to one caught-up client (frames once,
  one ``transport.write`` per client) versus ``struct.pack`` + ``transport.write`` per signal.
  A thread drains the client socket so the server never buffers.

``extra_info`` has P50/P99/P99.9 per signal for ours and the baseline and ``ratio`` =
baseline / ours (> 1: we are faster), plus a correctness flag (what the receiver got decodes).

Run: ``.venv/bin/pytest bench/test_bench_outputs.py --benchmark-disable-gc``
(``RF_BENCH_SMOKE=1`` shrinks sizes).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

import relentless_fast_signal as rs
from bench.latency import percentiles, sample_ns, scaled
from relentless_fast.outputs.tcp import TcpPublisher, TcpPublisherConfig
from relentless_fast.outputs.udp import UdpPublisher, UdpPublisherConfig

TOTAL_SIGNALS = scaled(400_000, 4_000)
MAX_SAMPLES = scaled(10_000, 20)
WARMUP = scaled(50, 2)


def _signals(n: int) -> bytearray:
    recs = np.zeros(n, rs.SIGNAL_RECORD_DTYPE)
    recs["action"] = np.arange(n) % 3
    recs["symbol_id"] = np.arange(n) % 500
    recs["sequence"] = np.arange(1, n + 1)
    recs["event_ts_ns"] = 1_764_000_000_000_000_000
    recs["emit_ts_ns"] = 1_764_000_000_000_025_000
    recs["confidence"] = 0.5
    recs["price_target"] = 101.0
    recs["stop_loss"] = 99.0
    recs["position_size"] = 0.25
    out = bytearray(64 * n)
    rs.pack_into(recs, out)
    return out


def _slices(buf: bytearray, batch: int) -> Iterator[memoryview]:
    mv = memoryview(buf)
    for off in range(0, len(buf) - 64 * batch + 1, 64 * batch):
        yield mv[off : off + 64 * batch]


def _plan(batch: int) -> tuple[bytearray, int]:
    samples = min(MAX_SAMPLES, TOTAL_SIGNALS // batch - WARMUP)
    return _signals((samples + WARMUP) * batch), samples


def _record(benchmark: Any, batch: int, ours: np.ndarray, base: np.ndarray, ok: bool) -> None:
    p_ours = percentiles(ours, scale=batch)
    p_base = percentiles(base, scale=batch)
    benchmark.extra_info.update({f"ours_{k}": v for k, v in p_ours.items()})
    benchmark.extra_info.update({f"naive_{k}": v for k, v in p_base.items()})
    benchmark.extra_info["ratio_p50"] = p_base["p50_ns"] / p_ours["p50_ns"]
    benchmark.extra_info["ratio_p99"] = p_base["p99_ns"] / p_ours["p99_ns"]
    benchmark.extra_info["correct"] = ok


def _drain(sock: socket.socket, stop: threading.Event, got: list[int]) -> None:
    sock.settimeout(0.05)
    while not stop.is_set():
        try:
            data = sock.recv(1 << 20)
        except TimeoutError:
            continue
        except OSError:
            return
        if not data:
            return
        got[0] += len(data)


@pytest.mark.parametrize("batch", [1, 32, 256])
def test_udp_publish(benchmark: Any, batch: int) -> None:
    benchmark.group = f"udp-publish-{batch}"
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    rx.bind(("127.0.0.1", 0))
    port = rx.getsockname()[1]
    loop = asyncio.new_event_loop()
    cfg = UdpPublisherConfig(host="127.0.0.1", port=port, session="BENCH", rerequest_port=None)
    pub = UdpPublisher(cfg)
    loop.run_until_complete(pub.start())
    buf, samples = _plan(batch)
    it = _slices(buf, batch)
    ours = sample_ns(lambda: pub.publish(next(it), batch), samples, warmup=WARMUP)
    first = rx.recv(65536)
    ok = rs.moldudp64_decode(first).sequence == 1 and pub.counters.restamped == 0

    base_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    base_sock.setblocking(False)
    header = struct.Struct(">10sQHH")
    session = b"BENCH     "
    it2 = _slices(buf, batch)
    seq = [1]

    def naive() -> None:
        chunk = next(it2)
        for i in range(batch):
            sig = chunk[64 * i : 64 * i + 64]
            base_sock.sendto(header.pack(session, seq[0], 1, 64) + sig, ("127.0.0.1", port))
            seq[0] += 1

    base = sample_ns(naive, samples, warmup=WARMUP)
    it3 = _slices(buf, batch)
    benchmark.pedantic(lambda: pub.publish(next(it3), batch), rounds=min(samples, 200))
    _record(benchmark, batch, ours, base, ok)
    loop.run_until_complete(pub.aclose())
    loop.close()
    base_sock.close()
    rx.close()


@pytest.mark.parametrize("batch", [1, 32, 256])
def test_tcp_publish(benchmark: Any, batch: int) -> None:
    benchmark.group = f"tcp-publish-{batch}"
    loop = asyncio.new_event_loop()
    pub = TcpPublisher(
        TcpPublisherConfig(
            host="127.0.0.1",
            port=0,
            session="BENCH",
            heartbeat_interval_s=60,
            client_timeout_s=600,
            max_client_buffer_bytes=1 << 30,
        )
    )
    loop.run_until_complete(pub.start())
    client = socket.create_connection(pub.address)
    client.sendall(rs.SoupBinTCPPacket.login_request("", "", "", 0).encode())
    while pub.counters.logins_accepted == 0:  # the server accepts and answers on its loop
        loop.run_until_complete(asyncio.sleep(0.01))
    accepted = client.recv(33)
    stop = threading.Event()
    got = [0]
    drainer = threading.Thread(target=_drain, args=(client, stop, got), daemon=True)
    drainer.start()
    buf, samples = _plan(batch)
    it = _slices(buf, batch)
    ours = sample_ns(lambda: pub.publish(next(it), batch), samples, warmup=WARMUP)
    ok = (
        rs.soupbintcp_decode(accepted).packet_type == "A" and pub.counters.slow_clients_dropped == 0
    )

    transport = next(iter(pub._clients))._transport  # the same client's transport, for the baseline
    assert transport is not None
    frame = struct.Struct(">HB")
    it2 = _slices(buf, batch)

    def naive() -> None:
        chunk = next(it2)
        for i in range(batch):
            transport.write(frame.pack(65, 0x53) + bytes(chunk[64 * i : 64 * i + 64]))

    write: Callable[[], None] = naive
    base = sample_ns(write, samples, warmup=WARMUP)
    _record(benchmark, batch, ours, base, ok)
    benchmark.pedantic(lambda: None, rounds=1)
    stop.set()
    loop.run_until_complete(pub.aclose(grace_s=0.1))
    loop.close()
    client.close()
    drainer.join(2)
