from __future__ import annotations

from pathlib import Path

import pytest

from relentless_fast.symbols import MAX_SYMBOL_BYTES, SymbolTable, SymbolTableError


def test_ids_follow_table_order_not_arrival() -> None:
    table = SymbolTable(["MSFT", "AAPL", "SPY"])
    assert [table.id_of(s) for s in ("AAPL", "SPY", "MSFT")] == [1, 2, 0]
    assert table.symbol_of(2) == "SPY"
    assert table.get("TSLA") is None
    assert "AAPL" in table and "TSLA" not in table
    assert len(table) == 3 and list(table) == ["MSFT", "AAPL", "SPY"]


def test_round_trip_through_file(tmp_path: Path) -> None:
    table = SymbolTable(["BRK.B", "AAPL"])
    path = tmp_path / "symbols.txt"
    table.save(path)
    again = SymbolTable.from_file(path)
    assert again.symbols == table.symbols
    assert again.version == table.version
    assert SymbolTable(["AAPL", "BRK.B"]).version != table.version


@pytest.mark.parametrize(
    ("symbols", "message"),
    [
        ([], "empty"),
        (["AAPL", "AAPL"], "duplicate"),
        (["X" * (MAX_SYMBOL_BYTES + 1)], "longer"),
        (["AA PL"], "invalid"),
        (["ÄPPL"], "invalid"),
    ],
)
def test_bad_tables_are_refused(symbols: list[str], message: str) -> None:
    with pytest.raises(SymbolTableError, match=message):
        SymbolTable(symbols)


def test_bad_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("0 AAPL\n2 MSFT\n")
    with pytest.raises(SymbolTableError, match=r"bad.txt:2: id 2 out of order"):
        SymbolTable.from_file(path)
