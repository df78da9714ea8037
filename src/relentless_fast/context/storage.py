"""DuckDB storage of the loader (its only writer): raw payloads and built contexts by as-of date.

Tables::

    raw_inputs(as_of DATE, source VARCHAR, fetched_unix_ns BIGINT, payload VARCHAR,
               PRIMARY KEY (as_of, source))          -- the JSON payload a source gave
    contexts(version INTEGER PRIMARY KEY, as_of DATE, built_unix_ns BIGINT, context BLOB)
                                                     -- serialised DailyContext, every build kept
    source_runs(version INTEGER, source VARCHAR, ok BOOLEAN, reason VARCHAR, requests INTEGER)

A build's payloads, context and source runs are written in one transaction
(:meth:`ContextDB.save_build`): a loader killed before the commit leaves the previous state
whole. Engines never open this file; they read the snapshot or Redis.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from relentless_fast._proto.relentless_fast_pb2 import DailyContext

PAUSE_ENV = "RF_CONTEXT_TEST_PAUSE_IN_TX"
"""Test hook: ``<marker path>:<seconds>``; inside the write transaction, touch the marker and
sleep, so a test can kill the loader mid-write. Unset in production."""

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS raw_inputs (
        as_of DATE NOT NULL, source VARCHAR NOT NULL, fetched_unix_ns BIGINT NOT NULL,
        payload VARCHAR NOT NULL, PRIMARY KEY (as_of, source))""",
    """CREATE TABLE IF NOT EXISTS contexts (
        version INTEGER PRIMARY KEY, as_of DATE NOT NULL, built_unix_ns BIGINT NOT NULL,
        context BLOB NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS source_runs (
        version INTEGER NOT NULL, source VARCHAR NOT NULL, ok BOOLEAN NOT NULL,
        reason VARCHAR NOT NULL, requests INTEGER NOT NULL)""",
)


@dataclass(frozen=True)
class StoredInput:
    """A stored payload."""

    as_of: dt.date
    source: str
    fetched_unix_ns: int
    payload: dict[str, Any]


@dataclass(frozen=True)
class SourceRun:
    """How a source did in one build."""

    source: str
    ok: bool
    reason: str
    requests: int


class ContextDB:
    """The loader's DuckDB file (open it from one process at a time)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect(str(self.path))
        for stmt in _SCHEMA:
            self.con.execute(stmt)

    def close(self) -> None:
        """Close the connection."""
        self.con.close()

    def __enter__(self) -> ContextDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def next_version(self) -> int:
        """One more than the highest stored build version."""
        row = self.con.execute("SELECT coalesce(max(version), 0) FROM contexts").fetchone()
        return int(row[0] if row else 0) + 1

    def save_build(
        self,
        as_of: dt.date,
        payloads: Mapping[str, tuple[int, dict[str, Any]]],
        ctx: DailyContext,
        runs: Iterable[SourceRun],
    ) -> None:
        """Store this run's fresh payloads, the built context and the runs, atomically."""
        self.con.execute("BEGIN TRANSACTION")
        try:
            for source, (fetched_ns, payload) in payloads.items():
                self.con.execute(
                    "INSERT OR REPLACE INTO raw_inputs VALUES (?, ?, ?, ?)",
                    [as_of, source, fetched_ns, json.dumps(payload, separators=(",", ":"))],
                )
            self.con.execute(
                "INSERT INTO contexts VALUES (?, ?, ?, ?)",
                [ctx.version, as_of, ctx.built_unix_ns, ctx.SerializeToString(deterministic=True)],
            )
            for r in runs:
                self.con.execute(
                    "INSERT INTO source_runs VALUES (?, ?, ?, ?, ?)",
                    [ctx.version, r.source, r.ok, r.reason, r.requests],
                )
            _test_pause()
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise

    def inputs_for(self, as_of: dt.date) -> dict[str, StoredInput]:
        """Payloads stored for exactly ``as_of``."""
        rows = self.con.execute(
            "SELECT as_of, source, fetched_unix_ns, payload FROM raw_inputs WHERE as_of = ?",
            [as_of],
        ).fetchall()
        return {r[1]: StoredInput(r[0], r[1], int(r[2]), json.loads(r[3])) for r in rows}

    def latest_input_before(self, source: str, as_of: dt.date) -> StoredInput | None:
        """The most recent payload of ``source`` stored for a date before ``as_of``."""
        row = self.con.execute(
            "SELECT as_of, source, fetched_unix_ns, payload FROM raw_inputs "
            "WHERE source = ? AND as_of < ? ORDER BY as_of DESC LIMIT 1",
            [source, as_of],
        ).fetchone()
        return StoredInput(row[0], row[1], int(row[2]), json.loads(row[3])) if row else None

    def context_for(self, as_of: dt.date) -> DailyContext | None:
        """The newest build for ``as_of``."""
        row = self.con.execute(
            "SELECT context FROM contexts WHERE as_of = ? ORDER BY version DESC LIMIT 1", [as_of]
        ).fetchone()
        return _decode(row[0]) if row else None

    def latest_context(self) -> DailyContext | None:
        """The newest build of the latest as-of date."""
        row = self.con.execute(
            "SELECT context FROM contexts ORDER BY as_of DESC, version DESC LIMIT 1"
        ).fetchone()
        return _decode(row[0]) if row else None

    def source_runs(self, version: int) -> list[SourceRun]:
        """The source runs of build ``version``."""
        rows = self.con.execute(
            "SELECT source, ok, reason, requests FROM source_runs "
            "WHERE version = ? ORDER BY source",
            [version],
        ).fetchall()
        return [SourceRun(r[0], bool(r[1]), r[2], int(r[3])) for r in rows]

    def count_contexts(self) -> int:
        """Number of stored builds."""
        row = self.con.execute("SELECT count(*) FROM contexts").fetchone()
        return int(row[0]) if row else 0


def _decode(blob: bytes) -> DailyContext:
    ctx = DailyContext()
    ctx.ParseFromString(bytes(blob))
    return ctx


def _test_pause() -> None:
    spec = os.environ.get(PAUSE_ENV)
    if not spec:
        return
    import time

    marker, _, secs = spec.rpartition(":")
    Path(marker).write_text("in transaction\n")
    time.sleep(float(secs))
