"""The in-memory window of recent signals that re-requests and TCP replays are served from.

A preallocated ring of 64-byte slots: appending a batch is one or two numpy copies, a lookup is an
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

    __slots__ = ("_capacity", "_next_seq", "_slots", "_u32", "_u64", "restamped")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"window capacity must be >= 1 signal, got {capacity}")
        self._capacity = capacity
        self._slots: Rows = np.zeros((capacity, SIGNAL_SIZE), dtype=np.uint8)
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
        n = rows.shape[0]
        first = self._next_seq
        if n == 0:
            return first
        if n > self._capacity:  # only the newest `capacity` rows can be kept
            self._next_seq += n - self._capacity
            rows = rows[n - self._capacity :]
            n = self._capacity
            first = self._next_seq
        start = (first - 1) % self._capacity
        end = start + n
        if end <= self._capacity:
            self._slots[start:end] = rows
            self._check(start, end, first)
        else:
            head = self._capacity - start
            self._slots[start:] = rows[:head]
            self._check(start, self._capacity, first)
            self._slots[: n - head] = rows[head:]
            self._check(0, n - head, first + head)
        self._next_seq = first + n
        return first

    def _check(self, lo: int, hi: int, first_seq: int) -> None:
        """Restamp slots ``lo:hi`` unless they already carry ``first_seq``, +1, ... (fast path)."""
        seqs = self._u64[lo:hi, 1]
        if int(seqs[0]) == first_seq and (
            hi - lo == 1
            or (int(seqs[-1]) == first_seq + (hi - lo - 1) and bool((np.diff(seqs) == 1).all()))
        ):
            return
        self._stamp(lo, hi, first_seq)

    def _stamp(self, lo: int, hi: int, first_seq: int) -> None:
        seqs = self._u64[lo:hi, 1]
        expected = np.arange(first_seq, first_seq + (hi - lo), dtype=np.uint64)
        bad = np.flatnonzero(seqs != expected)
        seqs[bad] = expected[bad]
        for i in bad + lo:  # only mismatched rows pay for a CRC
            self._u32[i, 15] = crc32c(self._slots[i, :60])
        self.restamped += int(bad.size)

    def chunk(self, seq: int, max_count: int) -> Rows:
        """Up to ``max_count`` consecutive signals from ``seq``, as a view into the ring.

        The view stops at the end of the ring or of the held range, so it may be shorter than asked;
        it is empty when ``seq`` is not held. Valid until the next :meth:`append`.
        """
        if seq < self.first_seq or seq >= self._next_seq or max_count <= 0:
            return self._slots[:0]
        start = (seq - 1) % self._capacity
        n = min(max_count, self._next_seq - seq, self._capacity - start)
        return self._slots[start : start + n]
