"""The audit log: every signal kept, field by field; bounded buffer; rotation; recovery."""

from __future__ import annotations

import datetime as dt
import errno
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from relentless_fast.monitor import audit as audit_mod
from relentless_fast.monitor.audit import (
    AuditLog,
    convert_journal,
    parse_part_name,
    part_name,
    recover,
    valid_signals,
)
from relentless_fast.signals import SIGNAL_SIZE, pack
from tests.monitor.helpers import (
    assert_same,
    make_records,
    read_parquet,
    sql_numpy,
    sql_rows,
    wait_until,
)


def append_batches(log: AuditLog, sizes: list[int], first_seq: int = 1) -> np.ndarray:
    """Append batches of the given sizes through one reused buffer (like the engine)."""
    buf = bytearray(max(sizes) * SIGNAL_SIZE)
    view = memoryview(buf)
    seq = first_seq
    all_records = []
    for m in sizes:
        rec = make_records(seq, m)
        buf[: m * SIGNAL_SIZE] = pack(rec)
        log.append(view, m)
        all_records.append(rec)
        seq += m
    return np.concatenate(all_records)


def test_every_signal_of_many_batches_is_in_parquet_after_close(tmp_path: Path) -> None:
    sizes = [int(x) for x in np.random.default_rng(3).integers(1, 300, 400)]
    with AuditLog(tmp_path, "T1", buffer_signals=1 << 16, chunks=8) as log:
        expected = append_batches(log, sizes)
        journal = log.journal_path
        assert journal is not None and journal.name.endswith("_T1_0001.journal")
    assert log.counters.signals_dropped == 0
    assert log.counters.signals_written == log.counters.parquet_rows == sum(sizes)
    assert not list(tmp_path.glob("*.journal")), "journal removed once converted"
    assert_same(read_parquet(tmp_path), expected)


def test_a_batch_larger_than_a_chunk_is_split_not_dropped(tmp_path: Path) -> None:
    with AuditLog(tmp_path, "BIG", buffer_signals=4096, chunks=4) as log:
        expected = append_batches(log, [1500, 7, 1500])  # chunks of 1024 signals
    assert log.counters.signals_dropped == 0
    assert_same(read_parquet(tmp_path), expected)


def test_rotation_splits_parts_and_keeps_every_signal(tmp_path: Path) -> None:
    with AuditLog(tmp_path, "ROT", rotate_signals=1000, buffer_signals=8192) as log:
        expected = append_batches(log, [100] * 45)
    parts = sorted(p.name for p in tmp_path.glob("*.parquet"))
    assert len(parts) >= 4, parts
    numbers = [parse_part_name(p.split(".")[0]) for p in parts]
    assert [n[2] for n in numbers if n] == list(range(1, len(parts) + 1))
    assert_same(read_parquet(tmp_path), expected)


def test_session_column_and_names(tmp_path: Path) -> None:
    with AuditLog(tmp_path, "A/B C", rotate_signals=10) as log:
        append_batches(log, [5])
    (out,) = tmp_path.glob("*.parquet")
    parsed = parse_part_name(out.stem)
    assert parsed is not None and parsed[1] == "A-B-C" and parsed[2] == 1
    assert sql_rows(f"SELECT DISTINCT session FROM '{out}'") == [("A/B C",)]
    assert part_name(dt.date(2026, 1, 2), "S", 7) == "2026-01-02_S_0007"


def test_a_second_log_of_the_same_session_takes_the_next_part(tmp_path: Path) -> None:
    with AuditLog(tmp_path, "S") as first:
        append_batches(first, [3])
    with AuditLog(tmp_path, "S") as second:
        append_batches(second, [3], first_seq=4)
    names = sorted(p.name for p in tmp_path.glob("*.parquet"))
    assert [n.rsplit("_", 1)[1] for n in names] == ["0001.parquet", "0002.parquet"]


def test_date_change_rotates_to_a_file_of_the_new_date(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    day = [dt.date(2026, 3, 2)]
    monkeypatch.setattr(audit_mod, "_utc_today", lambda: day[0])
    log = AuditLog(tmp_path, "D", flush_interval_ms=1)
    log.open()
    expected = [append_batches(log, [10])]
    wait_until(lambda: log.counters.signals_written == 10)
    day[0] = dt.date(2026, 3, 3)
    expected.append(append_batches(log, [10], first_seq=11))
    log.close()
    names = sorted(p.name for p in tmp_path.glob("*.parquet"))
    assert names == ["2026-03-02_D_0001.parquet", "2026-03-03_D_0002.parquet"]
    assert_same(read_parquet(tmp_path), np.concatenate(expected))


def test_full_buffer_drops_and_counts_without_waiting_for_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer is stuck on the disk: appends keep returning; what does not fit is counted."""
    release = threading.Event()
    stuck = threading.Event()
    real_write = AuditLog._write

    def slow_write(self: AuditLog, data: memoryview) -> None:
        stuck.set()
        release.wait(30)
        real_write(self, data)

    monkeypatch.setattr(AuditLog, "_write", slow_write)
    log = AuditLog(tmp_path, "FULL", buffer_signals=4096, chunks=4)  # 4 chunks of 1024
    log.open()
    first = append_batches(log, [1024])  # fills chunk 1, handed to the writer, which blocks
    assert stuck.wait(10)
    rest = append_batches(log, [256] * 40, first_seq=1025)  # 10240 signals, room for 3072
    assert log.counters.signals_dropped > 0
    assert log.counters.signals_appended + log.counters.signals_dropped == 1024 + 10240
    release.set()
    log.close()
    cols = read_parquet(tmp_path)
    assert len(cols["sequence"]) == log.counters.signals_appended
    kept = np.isin(rest["sequence"], cols["sequence"])
    # whole batches are kept or dropped, in order: the kept ones are a prefix here
    assert kept[: int(kept.sum())].all()
    assert_same(cols, np.concatenate([first, rest[kept]]))


def test_appends_after_close_are_counted_not_crashing(tmp_path: Path) -> None:
    log = AuditLog(tmp_path, "C")
    log.open()
    log.close()
    append_batches(log, [5])
    assert log.counters.signals_dropped == 5
    log.close()  # idempotent


def test_write_error_is_counted_and_the_journal_stays_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.write
    failed: list[int] = []
    log = AuditLog(tmp_path, "E", flush_interval_ms=1)

    def flaky(fd: int, data: object) -> int:
        if not failed and fd == log._fd:
            failed.append(fd)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "write", flaky)
    log.open()
    append_batches(log, [10])
    wait_until(lambda: log.counters.write_errors == 1)
    later = append_batches(log, [7], first_seq=11)
    log.close()
    assert log.counters.signals_lost == 10
    assert_same(read_parquet(tmp_path), later)


def test_torn_tail_and_bad_crc_are_skipped(tmp_path: Path) -> None:
    rec = make_records(1, 20)
    data = bytearray(pack(rec))
    data[5 * SIGNAL_SIZE + 10] ^= 0xFF  # one corrupt signal
    data += pack(make_records(21, 1))[:40]  # a write torn by a crash
    got, skipped = valid_signals(bytes(data))
    assert skipped == 2
    np.testing.assert_array_equal(got, np.delete(rec, 5))
    journal = tmp_path / "2026-01-01_X_0001.journal"
    journal.write_bytes(data)
    result = convert_journal(journal)
    assert result is not None and result[1:] == (19, 2)
    assert not journal.exists()
    assert_same(read_parquet(tmp_path), np.delete(rec, 5))


def test_open_recovers_orphans_but_not_a_live_engines_journal(tmp_path: Path) -> None:
    orphan = tmp_path / "2026-01-01_OLD_0001.journal"
    old = make_records(1, 50)
    orphan.write_bytes(pack(old))
    live = AuditLog(tmp_path, "LIVE", recover=False)
    live.open()
    live_records = append_batches(live, [30])
    live_journal = live.journal_path
    assert live_journal is not None
    assert recover(tmp_path) == [(orphan.with_suffix(".parquet"), 50, 0)]
    with AuditLog(tmp_path, "NEW") as new:  # its open finds no orphan left, skips the live one
        append_batches(new, [1], first_seq=1)
    assert live_journal.exists(), "a live journal is never converted by another log"
    live.close()
    assert not live_journal.exists()
    live_parquet = live_journal.with_suffix(".parquet")
    assert_same(sql_numpy(f"SELECT * FROM '{live_parquet}' ORDER BY sequence"), live_records)
    assert_same(sql_numpy(f"SELECT * FROM '{orphan.with_suffix('.parquet')}'"), old)
    assert set(sql_rows(f"SELECT session FROM '{tmp_path}/*OLD*.parquet'")) == {("OLD",)}


def test_open_converts_an_orphan_on_its_converter_thread(tmp_path: Path) -> None:
    orphan = tmp_path / "2026-01-01_GONE_0003.journal"
    old = make_records(1, 8)
    orphan.write_bytes(pack(old))
    with AuditLog(tmp_path, "GONE") as log:
        append_batches(log, [2], first_seq=9)
    assert not orphan.exists()
    assert log.counters.parquet_files == 2
    names = sorted(p.name for p in tmp_path.glob("*.parquet"))
    assert names[-1].endswith("_GONE_0004.parquet"), names  # numbering continues past the orphan


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="chunks"):
        AuditLog(tmp_path, "X", chunks=1)
    with pytest.raises(ValueError, match="flush_interval_ms"):
        AuditLog(tmp_path, "X", flush_interval_ms=0)
    log = AuditLog(tmp_path, "X")
    log.open()
    with pytest.raises(RuntimeError, match="already open"):
        log.open()
    log.close()


def test_two_live_logs_of_one_session_name_never_share_a_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = AuditLog(tmp_path, "SAME"), AuditLog(tmp_path, "SAME")
    a.open()
    # as if both had scanned the directory before either opened its journal
    monkeypatch.setattr(b, "_next_part", lambda: 1)
    b.open()
    try:
        assert a.journal_path != b.journal_path
        ra = append_batches(a, [4])
        rb = append_batches(b, [4], first_seq=5)
    finally:
        a.close()
        b.close()
    assert_same(read_parquet(tmp_path), np.concatenate([ra, rb]))
