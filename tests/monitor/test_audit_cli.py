"""``relentless-fast audit summary|query|export|recover``: Parquet and journals read with DuckDB."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from relentless_fast.cli import main
from relentless_fast.monitor.audit import AuditLog
from relentless_fast.signals import pack
from tests.monitor.helpers import assert_same, make_records, packed, sql_numpy, sql_rows


@pytest.fixture
def audit_dir(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """One closed session (Parquet, with a gap at 101..110) and one crashed (a journal)."""
    d = tmp_path / "audit"
    first = np.concatenate([make_records(1, 100), make_records(111, 40)])
    with AuditLog(d, "DONE") as log:
        log.append(packed(first), first.shape[0])
    crashed = make_records(1, 25)
    (d / "2026-11-25_CRASHED_0001.journal").write_bytes(pack(crashed) + b"\x52\x46\x01")
    return d, first, crashed


def test_summary_counts_gaps_and_actions(
    audit_dir: tuple[Path, np.ndarray, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    d, first, _ = audit_dir
    assert main(["audit", "summary", str(d)]) == 0
    out = capsys.readouterr().out
    assert "session DONE" in out and "session CRASHED" in out
    assert "signals 140  sequences 1..150  missing 10  duplicates 0" in out
    assert "signals 25  sequences 1..25  missing 0" in out
    buys = int((first["action"] == 1).sum())
    assert f"buy {buys} " in out


def test_query_prints_rows(
    audit_dir: tuple[Path, np.ndarray, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    d, _, _ = audit_dir
    sql = "SELECT session, count(*) AS n, max(sequence) FROM signals GROUP BY 1 ORDER BY 1"
    assert main(["audit", "query", str(d), sql]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split("\t")[:2] == ["session", "n"]
    assert lines[1:] == ["CRASHED\t25\t25", "DONE\t140\t150"]
    assert (
        main(["audit", "query", str(d), "--session", "DONE", "SELECT count(*) FROM signals"]) == 0
    )
    assert capsys.readouterr().out.splitlines()[1] == "140"
    assert main(["audit", "query", str(d), "SELECT nope FROM signals"]) == 2
    assert "nope" in capsys.readouterr().err


def test_export_to_parquet_and_csv(
    audit_dir: tuple[Path, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    d, first, _ = audit_dir
    out = tmp_path / "all.parquet"
    assert main(["audit", "export", str(d), str(out), "--session", "DONE"]) == 0
    cols = sql_numpy(f"SELECT * FROM '{out}'")
    assert_same(cols, first)
    csv = tmp_path / "all.csv"
    assert main(["audit", "export", str(d), str(csv)]) == 0
    assert sql_rows(f"SELECT count(*) FROM '{csv}'") == [(165,)]
    assert main(["audit", "export", str(d), str(tmp_path / "x.txt")]) == 2


def test_date_filter_and_missing_dir(
    audit_dir: tuple[Path, np.ndarray, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    d, _, _ = audit_dir
    assert main(["audit", "summary", str(d), "--date", "2026-11-25"]) == 0
    assert "session CRASHED" in capsys.readouterr().out
    assert main(["audit", "summary", str(d), "--date", "1999-01-01"]) == 2
    assert "no audit files" in capsys.readouterr().err
    assert main(["audit", "summary", str(d), "--date", "yesterday"]) == 2
    assert main(["audit", "summary", str(d / "nope")]) == 2


def test_recover_converts_the_crashed_journal(
    audit_dir: tuple[Path, np.ndarray, np.ndarray], capsys: pytest.CaptureFixture[str]
) -> None:
    d, _, crashed = audit_dir
    assert main(["audit", "recover", str(d)]) == 0
    assert (
        "2026-11-25_CRASHED_0001.parquet: 25 signals, 1 invalid skipped" in capsys.readouterr().out
    )
    assert not list(d.glob("*.journal"))
    assert_same(sql_numpy(f"SELECT * FROM '{d}/*CRASHED*.parquet'"), crashed)
    assert main(["audit", "recover", str(d)]) == 0
    assert "nothing to recover" in capsys.readouterr().out
