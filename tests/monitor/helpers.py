"""Signals with random fields, and reading an audit directory back independently of the CLI."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import numpy.typing as npt

from relentless_fast.signals import SIGNAL_RECORD_DTYPE, pack


def make_records(first_seq: int, n: int, seed: int = 0) -> npt.NDArray[np.void]:
    """``n`` records with sequences ``first_seq..`` and every other field random but in range."""
    rng = np.random.default_rng(seed + first_seq)
    r = np.zeros(n, SIGNAL_RECORD_DTYPE)
    r["sequence"] = np.arange(first_seq, first_seq + n, dtype=np.uint64)
    r["action"] = rng.integers(0, 3, n)
    r["symbol_id"] = rng.integers(0, 5000, n)
    r["event_ts_ns"] = 1_764_000_000_000_000_000 + rng.integers(0, 10**12, n)
    r["emit_ts_ns"] = r["event_ts_ns"] + rng.integers(1, 10**6, n)
    for f in ("confidence", "position_size"):
        r[f] = rng.random(n, dtype=np.float32)
    r["price_target"] = rng.uniform(1, 1000, n).astype(np.float32)
    r["stop_loss"] = rng.uniform(1, 1000, n).astype(np.float32)
    for f in ("risk_score", "urgency"):
        r[f] = rng.integers(0, 256, n)
    r["strategy_id"] = rng.integers(0, 1 << 16, n)
    r["model_version"] = rng.integers(1, 1 << 16, n)
    r["flags"] = rng.integers(0, 32, n)
    r["context_version"] = rng.integers(0, 1 << 32, n)
    return r


def packed(records: npt.NDArray[np.void]) -> memoryview:
    """The records packed (layout v1) as a memoryview, the way the engine hands them over."""
    return memoryview(bytearray(pack(records)))


def read_parquet(directory: Path) -> dict[str, npt.NDArray[np.generic]]:
    """Every Parquet part in ``directory``, concatenated in sequence order, as numpy columns."""
    files = sorted(str(p) for p in directory.glob("*.parquet"))
    assert files, f"no Parquet in {directory}"
    con = duckdb.connect()
    try:
        cols: dict[str, npt.NDArray[np.generic]] = con.execute(
            "SELECT * FROM read_parquet(?) ORDER BY sequence", [files]
        ).fetchnumpy()
    finally:
        con.close()
    return cols


def assert_same(cols: dict[str, npt.NDArray[np.generic]], expected: npt.NDArray[np.void]) -> None:
    """Parquet columns equal to the records, field by field (exact: floats are f32 both sides)."""
    assert len(cols["sequence"]) == expected.shape[0]
    for name in expected.dtype.names or ():
        got = np.asarray(cols[name])
        assert got.dtype == expected[name].dtype.newbyteorder("="), name
        np.testing.assert_array_equal(got, expected[name], err_msg=name)


def sql_numpy(query: str) -> dict[str, npt.NDArray[np.generic]]:
    """A query's result as numpy columns (a fresh in-memory DuckDB)."""
    con = duckdb.connect()
    try:
        cols: dict[str, npt.NDArray[np.generic]] = con.execute(query).fetchnumpy()
    finally:
        con.close()
    return cols


def sql_rows(query: str) -> list[tuple[object, ...]]:
    """A query's rows (a fresh in-memory DuckDB)."""
    con = duckdb.connect()
    try:
        return con.execute(query).fetchall()
    finally:
        con.close()


def wait_until(predicate: Callable[[], bool], timeout_s: float = 20.0) -> None:
    """Poll ``predicate`` until true; fail (not hang) after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)
