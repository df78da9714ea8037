"""``relentless-fast audit summary|query|export|recover DIR``: read the audit log with DuckDB.

Every command sees one view, ``signals``: the Parquet parts and the journals still in the
directory (a running engine's current part, or a crashed one's), one row per signal with the
fields of ``SIGNAL_RECORD_DTYPE`` and ``session``. Reading never changes the files; ``recover``
converts orphaned journals to Parquet.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Any

from relentless_fast.monitor.audit import (
    JOURNAL_SUFFIX,
    PARQUET_SUFFIX,
    SIGNAL_COLUMNS,
    iter_journals,
    recover,
    valid_signals,
)


class AuditReadError(RuntimeError):
    """No audit files to read, or a bad filter."""


def register(sub: Any) -> None:
    """Add ``audit`` with its four subcommands."""
    p = sub.add_parser(
        "audit",
        help="summarise, query, export or recover the audit log (every signal emitted)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmds = p.add_subparsers(dest="audit_command", metavar="ACTION", required=True)

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("directory", help="the audit directory (monitor.audit_dir)")
        q.add_argument("--date", help="only files of this UTC date (YYYY-MM-DD)")
        q.add_argument("--session", help="only signals of this session")

    s = cmds.add_parser("summary", help="per session: signals, sequence range, gaps, actions")
    common(s)
    s.set_defaults(func=cmd_summary)
    q = cmds.add_parser("query", help="run SQL over the view `signals` and print the rows")
    common(q)
    q.add_argument("sql", help='e.g. "SELECT symbol_id, count(*) FROM signals GROUP BY 1"')
    q.set_defaults(func=cmd_query)
    e = cmds.add_parser("export", help="write the signals to one .parquet, .csv or .json file")
    common(e)
    e.add_argument("output", help="target file; the format follows its extension")
    e.set_defaults(func=cmd_export)
    r = cmds.add_parser("recover", help="convert journals no running engine holds to Parquet")
    r.add_argument("directory")
    r.set_defaults(func=cmd_recover)


def connect(directory: str | Path, *, date: str | None = None, session: str | None = None) -> Any:
    """A DuckDB connection with the view ``signals`` over ``directory``'s audit files."""
    import duckdb

    root = Path(directory)
    if not root.is_dir():
        raise AuditReadError(f"{root}: not a directory")
    prefix = ""
    if date:
        try:
            prefix = dt.date.fromisoformat(date).isoformat() + "_"
        except ValueError:
            raise AuditReadError(f"--date {date!r}: expected YYYY-MM-DD") from None
    parquet = sorted(str(p) for p in root.glob(f"{prefix}*{PARQUET_SUFFIX}"))
    con = duckdb.connect()
    parts: list[str] = []
    if parquet:
        listing = ", ".join("'" + p.replace("'", "''") + "'" for p in parquet)
        parts.append(f"SELECT * FROM read_parquet([{listing}])")
    for i, (path, file_session) in enumerate(iter_journals(root)):
        if prefix and not path.name.startswith(prefix):
            continue
        records, _skipped = valid_signals(path.read_bytes())
        cols = {name: records[name].copy() for name in SIGNAL_COLUMNS}
        con.register(f"_j{i}", cols)
        quoted = file_session.replace("'", "''")
        parts.append(f"SELECT *, '{quoted}'::VARCHAR AS session FROM _j{i}")
    if not parts:
        raise AuditReadError(f"{root}: no audit files ({PARQUET_SUFFIX} or {JOURNAL_SUFFIX})")
    body = " UNION ALL BY NAME ".join(parts)
    where = ""
    if session is not None:
        where = " WHERE session = '" + session.replace("'", "''") + "'"
    con.execute(f"CREATE TEMP VIEW signals AS SELECT * FROM ({body}){where}")
    return con


SUMMARY_SQL = """
SELECT session,
       count(*) AS signals,
       min(sequence) AS first_sequence,
       max(sequence) AS last_sequence,
       (max(sequence) - min(sequence) + 1) - count(DISTINCT sequence) AS missing,
       count(*) - count(DISTINCT sequence) AS duplicates,
       count(*) FILTER (WHERE action = 1) AS buy,
       count(*) FILTER (WHERE action = 2) AS sell,
       count(*) FILTER (WHERE action = 0) AS hold,
       count(DISTINCT symbol_id) AS symbols,
       min(emit_ts_ns) AS first_emit_ns,
       max(emit_ts_ns) AS last_emit_ns
FROM signals GROUP BY session ORDER BY first_emit_ns
"""


def summary(con: Any) -> list[dict[str, Any]]:
    """One dict per session (columns of :data:`SUMMARY_SQL`)."""
    cur = con.execute(SUMMARY_SQL)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _utc(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat(timespec="milliseconds")


def _run(args: argparse.Namespace, body: Any) -> int:
    try:
        con = connect(args.directory, date=args.date, session=args.session)
        try:
            result: int = body(con)
        finally:
            con.close()
    except AuditReadError as exc:
        print(f"relentless-fast audit: {exc}", file=sys.stderr)
        return 2
    return result


def cmd_summary(args: argparse.Namespace) -> int:
    """Print one block per session."""

    def body(con: Any) -> int:
        for row in summary(con):
            print(f"session {row['session']}")
            print(
                f"  signals {row['signals']}  sequences {row['first_sequence']}.."
                f"{row['last_sequence']}  missing {row['missing']}  "
                f"duplicates {row['duplicates']}"
            )
            print(
                f"  buy {row['buy']}  sell {row['sell']}  hold {row['hold']}  "
                f"symbols {row['symbols']}"
            )
            print(f"  emitted {_utc(row['first_emit_ns'])} .. {_utc(row['last_emit_ns'])}")
        return 0

    return _run(args, body)


def cmd_query(args: argparse.Namespace) -> int:
    """Print the query's rows, tab-separated, with a header line."""
    import duckdb

    def body(con: Any) -> int:
        try:
            cur = con.execute(args.sql)
        except duckdb.Error as exc:
            print(f"relentless-fast audit query: {exc}", file=sys.stderr)
            return 2
        print("\t".join(d[0] for d in cur.description))
        for row in cur.fetchall():
            print("\t".join("" if v is None else str(v) for v in row))
        return 0

    return _run(args, body)


_FORMATS = {
    ".parquet": "FORMAT parquet, COMPRESSION zstd",
    ".csv": "FORMAT csv, HEADER",
    ".json": "FORMAT json",
}


def cmd_export(args: argparse.Namespace) -> int:
    """Write every selected signal (in session, sequence order) to one file."""
    out = Path(args.output)
    options = _FORMATS.get(out.suffix.lower())
    if options is None:
        print(f"relentless-fast audit export: {out}: use .parquet, .csv or .json", file=sys.stderr)
        return 2

    def body(con: Any) -> int:
        target = str(out).replace("'", "''")
        con.execute(
            f"COPY (SELECT * FROM signals ORDER BY session, sequence) TO '{target}' ({options})"
        )
        (n,) = con.execute("SELECT count(*) FROM signals").fetchone()
        print(f"{n} signals -> {out}")
        return 0

    return _run(args, body)


def cmd_recover(args: argparse.Namespace) -> int:
    """Convert orphaned journals; print one line each."""
    root = Path(args.directory)
    if not root.is_dir():
        print(f"relentless-fast audit recover: {root}: not a directory", file=sys.stderr)
        return 2
    done = recover(root)
    for path, rows, skipped in done:
        print(f"{path.name}: {rows} signals" + (f", {skipped} invalid skipped" if skipped else ""))
    if not done:
        print("nothing to recover")
    return 0
