"""Emission policy: which signals of a batch an output publishes (DESIGN.md, per output).

The audit log always gets every signal; a UDP or TCP output may publish only a subset. A filtered
output numbers its own stream (its window restamps the sequence field), so on every output the
signal's sequence equals the framing sequence and consumers see no false gaps.
"""

from __future__ import annotations

import enum

import numpy as np
import numpy.typing as npt

from relentless_fast.outputs._wire import SIGNAL_SIZE, SignalBuffer
from relentless_fast.outputs.window import Rows


class EmissionPolicy(enum.StrEnum):
    """What an output publishes."""

    ALL = "all"
    """Every inference, holds included."""
    ACTIONS = "actions"
    """Only buy/sell signals (action != hold)."""
    CHANGES = "changes"
    """Only signals whose action differs from the last one published for the symbol on this
    output; every symbol starts at hold, so its first buy/sell is published and a first hold is
    not."""


class EmissionFilter:
    """Applies an :class:`EmissionPolicy` to batches; keeps the per-symbol state CHANGES needs."""

    __slots__ = ("_last_action", "policy")

    def __init__(self, policy: EmissionPolicy | str = EmissionPolicy.ALL) -> None:
        self.policy = EmissionPolicy(policy)
        self._last_action: npt.NDArray[np.uint8] = np.zeros(1024, dtype=np.uint8)

    def select_bytes(self, signals: SignalBuffer, count: int) -> tuple[memoryview, int]:
        """The signals to publish from ``count`` packed in ``signals``: a flat byte view and
        their number (a view of ``signals`` itself under ALL: no copy)."""
        view = signals.data if isinstance(signals, np.ndarray) else memoryview(signals)
        src = view.cast("B") if count > 0 else memoryview(b"")
        if len(src) < count * SIGNAL_SIZE:
            raise ValueError(f"buffer holds {len(src)} bytes, {count} signals need {count * 64}")
        if self.policy is EmissionPolicy.ALL or count <= 0:
            return src, max(count, 0)
        rows = np.frombuffer(src, dtype=np.uint8, count=count * SIGNAL_SIZE)
        selected = self.select(rows.reshape(count, SIGNAL_SIZE))
        if selected.shape[0] == 0:  # nothing passes (a memoryview of no rows cannot be cast)
            return memoryview(b""), 0
        return np.ascontiguousarray(selected).data.cast("B"), int(selected.shape[0])

    def select(self, rows: Rows) -> Rows:
        """The rows to publish, in order (``rows`` itself under ALL)."""
        if self.policy is EmissionPolicy.ALL or rows.shape[0] == 0:
            return rows
        actions = rows[:, 3]
        if self.policy is EmissionPolicy.ACTIONS:
            kept: Rows = rows[actions != 0]
            return kept
        changed: Rows = rows[self._changed(rows, actions)]
        return changed

    def _changed(self, rows: Rows, actions: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
        symbols = rows.view(">u4")[:, 1].astype(np.int64)
        top = int(symbols.max())
        if top >= self._last_action.shape[0]:
            grown = np.zeros(max(top + 1, 2 * self._last_action.shape[0]), dtype=np.uint8)
            grown[: self._last_action.shape[0]] = self._last_action
            self._last_action = grown
        # A symbol may appear several times in one batch: compare each row with the previous row
        # of the same symbol (stable sort keeps batch order), the first one with the stored state.
        order = np.argsort(symbols, kind="stable")
        sym = symbols[order]
        act = actions[order]
        first_of_symbol = np.ones(sym.shape[0], dtype=np.bool_)
        first_of_symbol[1:] = sym[1:] != sym[:-1]
        previous = np.empty_like(act)
        previous[1:] = act[:-1]
        previous[first_of_symbol] = self._last_action[sym[first_of_symbol]]
        last_of_symbol = np.ones(sym.shape[0], dtype=np.bool_)
        last_of_symbol[:-1] = first_of_symbol[1:]
        self._last_action[sym[last_of_symbol]] = act[last_of_symbol]
        changed = np.empty(sym.shape[0], dtype=np.bool_)
        changed[order] = act != previous
        return changed
