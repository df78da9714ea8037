"""A SIGKILLed engine loses at most what its writer had not handed to the kernel (documented).

The writer process is killed without any chance to flush; the journal it leaves is then
recovered to Parquet and compared field by field with what was appended.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from relentless_fast.monitor.audit import recover
from tests.monitor.audit_writer_proc import BATCH
from tests.monitor.helpers import assert_same, make_records, read_parquet

REPO_ROOT = Path(__file__).resolve().parents[2]


def start(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.monitor.audit_writer_proc", str(tmp_path), *args],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )


def expected(n: int) -> np.ndarray:
    return np.concatenate([make_records(s, BATCH) for s in range(1, n + 1, BATCH)])


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    assert proc.stdout is not None
    proc.stdout.close()


def test_idle_engine_killed_loses_nothing(tmp_path: Path) -> None:
    """Appended, then idle for longer than the flush interval: all of it survives SIGKILL."""
    proc = start(tmp_path, "settle", "5000")
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().split() == ["appended", "5000"]
        (journal,) = tmp_path.glob("*.journal")
        deadline = time.monotonic() + 20  # the flush interval is 10 ms; generous for CI
        while journal.stat().st_size < 5000 * 64 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert journal.stat().st_size == 5000 * 64, "the writer flushes without close()"
    finally:
        kill(proc)
    ((_, rows, skipped),) = recover(tmp_path)
    assert (rows, skipped) == (5000, 0)
    assert_same(read_parquet(tmp_path), expected(5000))


def test_busy_engine_killed_keeps_everything_the_writer_wrote(tmp_path: Path) -> None:
    """Killed mid-stream: the journal holds a gap-free prefix of what was appended, at least
    everything the writer had reported written, and nothing damaged."""
    proc = start(tmp_path, "busy")
    appended = written = 0
    try:
        assert proc.stdout is not None
        while written < 20_000:
            line = proc.stdout.readline()
            assert line, "writer process ended early"
            appended, written = (int(x) for x in line.split())
    finally:
        kill(proc)
    ((_, rows, skipped),) = recover(tmp_path)
    assert skipped <= 1  # at most one torn signal at the very end
    assert written <= rows
    assert rows > 0 and appended >= written
    cols = read_parquet(tmp_path)
    assert_same(cols, expected(rows + BATCH)[:rows])
