"""The in-memory window of recent signals that re-requests and TCP replays are served from.

A preallocated ring of 64-byte slots: appending a batch is one or two buffer copies, a lookup is an
index computation; nothing is allocated per signal.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from relentless_fast.outputs._wire import SIGNAL_SIZE, crc32c

Rows = npt.NDArray[np.uint8]
"""A ``(n, 64)`` uint8 array of packed signals."""


class SignalWindow:
    """The last ``capacity`` signals of one output's session, keyed by sequence number.

    Sequence numbers start at 1 and are assigned by :meth:`append`: the window owns the output's
    sequence. A signal whose sequence field (bytes 8..16) differs from the sequence it is given (an
    output that filters signals, or an engine that numbers differently) is restamped: the field and
    its CRC-32C are rewritten in the window's copy, never in the caller's buffer.
    """

    __slots__ = ("_bytes", "_capacity", "_next_seq", "_slots", "_u32", "_u64", "restamped")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"window capacity must be >= 1 signal, got {capacity}")
        self._capacity = capacity
        self._slots: Rows = np.zeros((capacity, SIGNAL_SIZE), dtype=np.uint8)
        self._bytes = self._slots.data.cast("B")  # flat view: cheap slicing and copies
        self._u64 = self._slots.view(">u8")  # (capacity, 8): column 1 is the sequence
        self._u32 = self._slots.view(">u4")  # (capacity, 16): column 15 is the CRC
        self._next_seq = 1
        self.restamped = 0
        """Signals whose sequence field had to be rewritten (counter)."""

    @property
    def capacity(self) -> int:
        """Signals kept."""
        return self._capacity

    @property
    def next_seq(self) -> int:
        """The sequence the next appended signal gets."""
        return self._next_seq

    @property
    def first_seq(self) -> int:
        """The oldest sequence still held (``next_seq`` when the window is empty)."""
        return max(1, self._next_seq - self._capacity)

    def append(self, rows: Rows) -> int:
        """Copy ``rows`` in, numbering them from :attr:`next_seq`; return the first sequence."""
        return self.append_bytes(np.ascontiguousarray(rows).data.cast("B"), rows.shape[0])

    def append_bytes(self, src: memoryview, n: int) -> int:
        """Like :meth:`append` for ``n`` signals in the flat byte view ``src``."""
        first = self._next_seq
        if n <= 0:
            return first
        cap = self._capacity
        if n > cap:  # only the newest `capacity` signals can be kept
            src = src[(n - cap) * SIGNAL_SIZE : n * SIGNAL_SIZE]
            self._next_seq += n - cap
            first = self._next_seq
            n = cap
        start = (first - 1) % cap
        end = start + n
        if end <= cap:
            self._bytes[start * SIGNAL_SIZE : end * SIGNAL_SIZE] = src[: n * SIGNAL_SIZE]
            self._check(start, end, first)
        else:
            head = cap - start
            self._bytes[start * SIGNAL_SIZE :] = src[: head * SIGNAL_SIZE]
            self._bytes[: (n - head) * SIGNAL_SIZE] = src[head * SIGNAL_SIZE : n * SIGNAL_SIZE]
            self._check(start, cap, first)
            self._check(0, n - head, first + head)
        self._next_seq = first + n
        return first

    def _check(self, lo: int, hi: int, first_seq: int) -> None:
        """Restamp slots ``lo:hi`` unless they already carry ``first_seq``, +1, ... (fast path:
        one list comparison for a typical batch; numpy above 64 signals)."""
        n = hi - lo
        seqs = self._u64[lo:hi, 1]
        if n <= 64:
            if seqs.tolist() == list(range(first_seq, first_seq + n)):
                return
            expected = np.arange(first_seq, first_seq + n, dtype=np.uint64)
        else:
            expected = np.arange(first_seq, first_seq + n, dtype=np.uint64)
            if np.array_equal(seqs, expected):
                return
        bad = np.flatnonzero(seqs != expected)
        seqs[bad] = expected[bad]
        for i in bad + lo:  # only mismatched rows pay for a CRC
            self._u32[i, 15] = crc32c(self._slots[i, :60])
        self.restamped += int(bad.size)

    def segment(self, seq: int, max_count: int) -> memoryview:
        """Up to ``max_count`` consecutive signals from ``seq`` as a flat byte view of the ring.

        The view stops at the end of the ring or of the held range, so it may be shorter than asked
        (``len // 64`` signals); it is empty when ``seq`` is not held. Valid until the next append.
        """
        cap = self._capacity
        if seq < self._next_seq - cap or seq < 1 or seq >= self._next_seq or max_count <= 0:
            return self._bytes[:0]
        start = (seq - 1) % cap
        n = min(max_count, self._next_seq - seq, cap - start)
        return self._bytes[start * SIGNAL_SIZE : (start + n) * SIGNAL_SIZE]

    def chunk(self, seq: int, max_count: int) -> Rows:
        """:meth:`segment` as a ``(n, 64)`` array view."""
        seg = self.segment(seq, max_count)
        start = (seq - 1) % self._capacity
        return self._slots[start : start + len(seg) // SIGNAL_SIZE]
