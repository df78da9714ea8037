"""The symbol table: symbol -> dense ``u32`` id, stable across runs and shards.

Ids come from the table's order (config list or a saved file), never from arrival order, so two
engines given the same table agree on every id. Ids are dense and 0-based: they index the rings and
the feature array directly. The table is published to consumers (file, ``relentless-fast symbols``,
the gRPC service) and its version is a hash of its contents.

File format: UTF-8 text, one ``<id> <SYMBOL>`` pair per line, ids 0..N-1 in order; ``#`` starts a
comment.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path

MAX_SYMBOL_BYTES = 15
"""Longest accepted symbol in bytes (US equities are at most 5-6 characters plus suffixes)."""


class SymbolTableError(ValueError):
    """A symbol table that cannot be used (duplicate, empty, overlong or non-ASCII symbol)."""


class SymbolTable:
    """An immutable, ordered symbol table."""

    __slots__ = ("_ids", "_symbols")

    def __init__(self, symbols: Iterable[str]) -> None:
        self._symbols: tuple[str, ...] = tuple(symbols)
        self._ids: dict[str, int] = {}
        for i, sym in enumerate(self._symbols):
            _check_symbol(sym)
            if sym in self._ids:
                raise SymbolTableError(f"duplicate symbol {sym!r} at ids {self._ids[sym]} and {i}")
            self._ids[sym] = i
        if not self._symbols:
            raise SymbolTableError("symbol table is empty")

    @classmethod
    def from_file(cls, path: str | Path) -> SymbolTable:
        """Read a table written by :meth:`save`; ids must be 0..N-1 in order."""
        symbols: list[str] = []
        for lineno, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) != 2 or not parts[0].isdigit():
                raise SymbolTableError(f"{path}:{lineno}: expected '<id> <SYMBOL>', got {raw!r}")
            if int(parts[0]) != len(symbols):
                raise SymbolTableError(
                    f"{path}:{lineno}: id {parts[0]} out of order, expected {len(symbols)}"
                )
            symbols.append(parts[1])
        return cls(symbols)

    def save(self, path: str | Path) -> None:
        """Write the table in the file format above."""
        lines = [f"# relentless-fast symbol table {self.version}"]
        lines += [f"{i} {s}" for i, s in enumerate(self._symbols)]
        Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")

    @property
    def version(self) -> str:
        """First 16 hex digits of the SHA-256 of the ordered symbols."""
        return hashlib.sha256("\n".join(self._symbols).encode()).hexdigest()[:16]

    @property
    def symbols(self) -> tuple[str, ...]:
        """Symbols in id order."""
        return self._symbols

    def id_of(self, symbol: str) -> int:
        """The id of ``symbol``; :class:`KeyError` when it is not in the table."""
        return self._ids[symbol]

    def get(self, symbol: str) -> int | None:
        """The id of ``symbol`` or ``None``."""
        return self._ids.get(symbol)

    def symbol_of(self, symbol_id: int) -> str:
        """The symbol with id ``symbol_id``; :class:`IndexError` when out of range."""
        return self._symbols[symbol_id]

    def __len__(self) -> int:
        return len(self._symbols)

    def __iter__(self) -> Iterator[str]:
        return iter(self._symbols)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._ids

    def __repr__(self) -> str:
        return f"SymbolTable({len(self)} symbols, version {self.version})"


def _check_symbol(sym: str) -> None:
    if not sym or not sym.isascii() or not sym.isprintable() or " " in sym:
        raise SymbolTableError(f"invalid symbol {sym!r}: must be non-empty printable ASCII")
    if len(sym) > MAX_SYMBOL_BYTES:
        raise SymbolTableError(f"symbol {sym!r} is longer than {MAX_SYMBOL_BYTES} bytes")
