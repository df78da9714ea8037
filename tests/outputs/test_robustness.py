"""Arbitrary bytes from the network never raise: they are answered, counted or dropped."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from relentless_fast.outputs.consumer import MoldUDP64Tracker
from relentless_fast.outputs.tcp import TcpPublisher, TcpPublisherConfig, _ClientProtocol
from relentless_fast.outputs.udp import UdpPublisher, UdpPublisherConfig
from tests.outputs.helpers import pack_batch, soup_login

_HEADERS = st.builds(
    lambda session, seq, count: struct.pack(">10sQH", session, seq, count),
    st.sampled_from([b"S1        ", b"OTHER     ", b"\x00" * 10]),
    st.integers(0, 2**64 - 1),
    st.integers(0, 0xFFFF),
)
_DATAGRAMS = st.one_of(
    st.binary(max_size=300), st.tuples(_HEADERS, st.binary(max_size=200)).map(lambda t: t[0] + t[1])
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_DATAGRAMS, max_size=12))
def test_tracker_survives_any_datagrams(datagrams: list[bytes]) -> None:
    tracker = MoldUDP64Tracker(start_seq=1)
    for datagram in datagrams:
        tracker.on_datagram(datagram, 0)
        tracker.on_timer()
    s = tracker.stats
    assert s.packets + s.malformed_packets + s.foreign_session == len(datagrams)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=40), _HEADERS), max_size=12))
def test_rerequest_server_survives_any_request(requests: list[bytes]) -> None:
    pub = UdpPublisher(UdpPublisherConfig(session="S1", rerequest_port=None, window_signals=8))
    pub.window.append_bytes(memoryview(pack_batch(1, 20)), 20)
    for request in requests:
        answer = pub.answer(request)
        assert answer is None or answer[:10] == b"S1        "
    c = pub.counters
    assert c.rerequests == len(requests)
    assert c.rerequests == (
        c.rerequests_answered
        + c.rerequests_unavailable
        + c.rerequests_malformed
        + c.rerequests_throttled
    )


class _FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False

    def write(self, data: Any) -> None:
        assert not self.closed, "write after close"
        self.out += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


_CLIENT_BYTES = st.lists(
    st.one_of(
        st.binary(max_size=60),
        st.just(soup_login()),
        st.sampled_from([b"\x00\x01R", b"\x00\x01O", b"\x00\x01U", b"\x00\x00", b"\x00\x02+x"]),
    ),
    max_size=8,
)


@settings(max_examples=200, deadline=None)
@given(_CLIENT_BYTES)
def test_soupbintcp_server_survives_any_client_bytes(chunks: list[bytes]) -> None:
    async def run() -> None:
        pub = TcpPublisher(TcpPublisherConfig(session="S1", window_signals=16))
        pub._loop = asyncio.get_running_loop()
        pub._server = object()  # type: ignore[assignment]  # publish() only checks it is set
        client = _ClientProtocol(pub)
        transport = _FakeTransport()
        client.connection_made(transport)
        for chunk in chunks:
            client.data_received(chunk)
            pub.publish(pack_batch(pub.window.next_seq, 1), 1)
        await asyncio.sleep(0)  # let scheduled replays run
        assert transport.closed or client.next_seq in (0, pub.window.next_seq)

    asyncio.run(run())
