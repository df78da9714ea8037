"""The signal window (ring of 64-byte slots) and the emission policies."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from relentless_fast.outputs._wire import check_signal, crc32c
from relentless_fast.outputs.policy import EmissionFilter, EmissionPolicy
from relentless_fast.outputs.window import SignalWindow
from tests.outputs.helpers import pack_batch, pack_signal


def _rows(buf: bytes | bytearray) -> np.ndarray:
    return np.frombuffer(bytes(buf), dtype=np.uint8).reshape(-1, 64)


def test_crc_check_value() -> None:
    assert crc32c(b"123456789") == 0xE3069283


def test_window_wraps_and_serves_chunks() -> None:
    w = SignalWindow(10)
    assert (w.first_seq, w.next_seq) == (1, 1)
    assert w.append(_rows(pack_batch(1, 7))) == 1
    assert w.append(_rows(pack_batch(8, 6))) == 8  # wraps: holds 4..13
    assert (w.first_seq, w.next_seq) == (4, 14)
    assert w.chunk(3, 5).shape == (0, 64)  # evicted
    assert w.chunk(14, 5).shape == (0, 64)  # not yet sent
    first = w.chunk(4, 100)  # stops at the end of the ring
    assert [bytes(r) for r in first] == [pack_signal(s) for s in range(4, 11)]
    assert [bytes(r) for r in w.chunk(11, 100)] == [pack_signal(s) for s in range(11, 14)]
    assert w.restamped == 0


def test_window_keeps_the_newest_of_an_oversized_batch() -> None:
    w = SignalWindow(4)
    assert w.append(_rows(pack_batch(1, 6))) == 3
    held = [*w.chunk(3, 4), *w.chunk(5, 4)]  # two views: the ring wraps after sequence 4
    assert [bytes(r) for r in held] == [pack_signal(s) for s in range(3, 7)]


def test_window_restamps_sequence_and_crc_only_where_needed() -> None:
    w = SignalWindow(8)
    batch = bytearray(pack_batch(1, 2) + pack_signal(99) + pack_signal(4))
    w.append(_rows(batch))
    held = w.chunk(1, 4)
    assert [struct.unpack_from(">Q", bytes(r), 8)[0] for r in held] == [1, 2, 3, 4]
    assert all(check_signal(bytes(r)) is None for r in held)
    assert w.restamped == 1
    assert struct.unpack_from(">Q", batch, 2 * 64 + 8)[0] == 99  # caller's buffer untouched


def test_window_refuses_zero_capacity() -> None:
    with pytest.raises(ValueError, match="capacity"):
        SignalWindow(0)


def _actions(rows: np.ndarray) -> list[tuple[int, int]]:
    return [(int(struct.unpack_from(">I", bytes(r), 4)[0]), int(r[3])) for r in rows]


def test_policy_all_and_actions() -> None:
    batch = _rows(b"".join(pack_signal(i, action=a) for i, a in enumerate([0, 1, 2, 0], 1)))
    assert EmissionFilter("all").select(batch) is batch
    assert [a for _, a in _actions(EmissionFilter(EmissionPolicy.ACTIONS).select(batch))] == [1, 2]


def test_policy_changes_tracks_each_symbol_across_and_within_batches() -> None:
    f = EmissionFilter(EmissionPolicy.CHANGES)
    seq = iter(range(1, 100))

    def batch(pairs: list[tuple[int, int]]) -> np.ndarray:
        return _rows(b"".join(pack_signal(next(seq), symbol_id=s, action=a) for s, a in pairs))

    # symbol 1: hold (start state, dropped), buy, buy (dropped); symbol 5000 grows the state array
    out = f.select(batch([(1, 0), (2, 1), (1, 1), (1, 1), (5000, 2)]))
    assert _actions(out) == [(2, 1), (1, 1), (5000, 2)]
    out = f.select(batch([(2, 1), (1, 2), (5000, 2), (1, 0), (2, 0)]))
    assert _actions(out) == [(1, 2), (1, 0), (2, 0)]
    assert _actions(f.select(batch([(1, 0), (2, 0)]))) == []


def test_policy_rejects_unknown_name() -> None:
    with pytest.raises(ValueError):
        EmissionFilter("sometimes")


def test_a_batch_the_policy_filters_out_entirely_gives_no_bytes() -> None:
    from relentless_fast.signals import SIGNAL_RECORD_DTYPE, pack

    rec = np.zeros(3, SIGNAL_RECORD_DTYPE)  # all hold
    rec["sequence"] = [1, 2, 3]
    packed = bytearray(pack(rec))
    src, n = EmissionFilter(EmissionPolicy.ACTIONS).select_bytes(packed, 3)
    assert (n, bytes(src)) == (0, b"")
