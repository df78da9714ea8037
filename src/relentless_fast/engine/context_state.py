"""The context the engine fuses into model rows, swapped atomically between batches.

A :class:`FusedContext` is immutable once built: ``rows[s] = concat(global, per_symbol[s])`` for
every symbol of the engine's table (float32[S, C]), the context version and whether it is stale.
The engine holds one reference and replaces it in a single assignment; a batch gathers its rows
from the reference it read when it was dispatched, so every row of a batch sees one version and a
new version applies from the next batch on.

Until a context is published the engine runs on the neutral context (zeros, version 0) and every
signal carries the ``context stale`` flag; a published context older than the allowed number of
trading days is used and also flagged stale.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from relentless_fast.context import embedding
from relentless_fast.context.store import LoadedContext
from relentless_fast.symbols import SymbolTable


@dataclass(frozen=True, slots=True)
class FusedContext:
    """Per-symbol model context rows of one context version."""

    rows: npt.NDArray[np.float32]
    """float32[S, CONTEXT_DIM], read-only."""
    version: int
    stale: bool
    as_of: dt.date | None = None

    @classmethod
    def neutral(cls, n_symbols: int) -> FusedContext:
        """Zeros, version 0, stale."""
        rows = np.zeros((n_symbols, embedding.CONTEXT_DIM), np.float32)
        rows.flags.writeable = False
        return cls(rows, 0, True, None)

    @classmethod
    def from_parts(
        cls,
        global_part: npt.NDArray[np.float32],
        per_symbol: npt.NDArray[np.float32],
        version: int,
        *,
        stale: bool = False,
        as_of: dt.date | None = None,
    ) -> FusedContext:
        """Fuse ``global_part`` (float32[G]) with ``per_symbol`` (float32[S, P])."""
        n = per_symbol.shape[0]
        if global_part.shape != (embedding.GLOBAL_DIM,):
            raise ValueError(
                f"global part has shape {global_part.shape}, expected G={embedding.GLOBAL_DIM}"
            )
        if per_symbol.ndim != 2 or per_symbol.shape[1] != embedding.SYMBOL_DIM:
            raise ValueError(
                f"per-symbol part has shape {per_symbol.shape}, "
                f"expected (S, {embedding.SYMBOL_DIM})"
            )
        rows = np.empty((n, embedding.CONTEXT_DIM), np.float32)
        rows[:, : embedding.GLOBAL_DIM] = global_part
        rows[:, embedding.GLOBAL_DIM :] = per_symbol
        rows.flags.writeable = False
        return cls(rows, int(version), stale, as_of)

    @classmethod
    def from_loaded(
        cls,
        loaded: LoadedContext,
        table: SymbolTable,
        *,
        today: dt.date | None = None,
        max_trading_days: int = 1,
    ) -> FusedContext:
        """Fuse a published context for ``table`` (rows follow the engine's ids, by name)."""
        ids = {s: i for i, s in enumerate(table.symbols)}
        per_symbol = loaded.symbols_for(ids)
        if per_symbol.shape[0] < len(table):  # symbols of the table the context does not name
            pad = embedding.neutral_symbols(len(table))
            pad[: per_symbol.shape[0]] = per_symbol
            per_symbol = pad
        stale = False
        if today is not None:
            stale = not loaded.is_fresh(today, max_trading_days)
        return cls.from_parts(
            loaded.global_part, per_symbol, loaded.version, stale=stale, as_of=loaded.as_of
        )
