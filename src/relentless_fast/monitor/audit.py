"""The audit log: every signal the engine emits, journalled first, then kept as Parquet.

Three stages, each on its own thread of control:

1. :meth:`AuditLog.append` (the event loop, once per batch) copies the batch's packed 64-byte
   signals into the current chunk of a preallocated pool: one copy, no allocation beyond a
   memoryview slice, under a lock the writer takes only to swap chunks. No free chunk (the disk
   is slower than the signals) drops the batch, counted in ``signals_dropped`` and logged at most
   every few seconds: the hot path never waits for the disk.
2. The writer thread wakes every ``flush_interval_ms`` (or when a chunk fills), takes the filled
   chunks and the partly filled current one, and ``os.write``\\ s them to the journal: the signals
   back to back, exactly as on the wire (layout v1, each one carrying its CRC-32C). It
   ``fsync``\\ s every ``fsync_interval_s`` and rotates the journal every ``rotate_signals``
   signals and at a UTC date change.
3. The converter thread turns each finished journal into Parquet (DuckDB ``COPY ... (FORMAT
   parquet)``, one column per field of ``SIGNAL_RECORD_DTYPE`` plus ``session``), written to a
   temporary name, renamed, and only then removes the journal.

Files are ``<dir>/<YYYY-MM-DD>_<session>_<part>.journal`` and ``.parquet`` (date in UTC when the
part was opened, part numbers never reused for a session name in a directory).

What a crash loses (documented in docs/operations.md): a ``SIGKILL``\\ ed engine loses only the
signals appended in the last ``flush_interval_ms`` that the writer had not yet handed to the kernel
(everything ``os.write`` accepted is in the page cache and survives the process); the journal then
stays behind and the next :meth:`AuditLog.open` in the directory (or ``relentless-fast audit
recover``) converts it, keeping every complete signal whose CRC checks and dropping a torn tail.
A power loss can also lose what was not yet ``fsync``\\ ed (at most ``fsync_interval_s``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import os
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from relentless_fast.signals import (
    SIGNAL_RECORD_DTYPE,
    SIGNAL_SIZE,
    SignalFormatError,
    unpack,
    validate,
)

log = logging.getLogger(__name__)

JOURNAL_SUFFIX: Final = ".journal"
PARQUET_SUFFIX: Final = ".parquet"
SIGNAL_COLUMNS: Final[tuple[str, ...]] = tuple(np.dtype(SIGNAL_RECORD_DTYPE).names or ())
"""Parquet columns, in order: the record fields, then ``session``."""
_NAME_RE: Final = re.compile(r"^(\d{4}-\d{2}-\d{2})_(.+)_(\d{4,})$")
_CONVERT_SLICE: Final = 1 << 17
_DROP_LOG_INTERVAL_S: Final = 5.0


@dataclass(slots=True)
class AuditCounters:
    """What the audit log did (monotonic counts since the log was made)."""

    signals_appended: int = 0
    """Signals copied into the buffer by :meth:`AuditLog.append`."""
    signals_dropped: int = 0
    """Signals not logged because every buffer chunk was waiting for the disk."""
    signals_written: int = 0
    """Signals the kernel accepted into a journal (they survive a crash of the process)."""
    write_errors: int = 0
    """Failed journal writes (the chunk's signals are counted in ``signals_lost``)."""
    signals_lost: int = 0
    """Signals taken from the buffer but not written because the write failed."""
    fsyncs: int = 0
    journals_opened: int = 0
    parquet_files: int = 0
    parquet_rows: int = 0
    convert_errors: int = 0
    """Journals that could not be converted (they stay on disk for ``audit recover``)."""
    signals_invalid: int = 0
    """Journal records skipped at conversion (torn tail after a crash, bad CRC)."""


def safe_session(session: str) -> str:
    """``session`` reduced to characters safe in a file name (others become ``-``)."""
    return re.sub(r"[^A-Za-z0-9.-]", "-", session) or "session"


def part_name(date: dt.date, session: str, part: int) -> str:
    """The file stem of one audit part: ``<YYYY-MM-DD>_<session>_<part:04d>``."""
    return f"{date.isoformat()}_{safe_session(session)}_{part:04d}"


def parse_part_name(stem: str) -> tuple[dt.date, str, int] | None:
    """(date, file-safe session, part) from a part's file stem, or None."""
    m = _NAME_RE.match(stem)
    if m is None:
        return None
    try:
        date = dt.date.fromisoformat(m.group(1))
    except ValueError:
        return None
    return date, m.group(2), int(m.group(3))


def _prefaulted(n: int) -> bytearray:
    """A zeroed buffer whose pages are already mapped (no page fault on the hot path's copy)."""
    buf = bytearray(n)
    np.frombuffer(buf, np.uint8)[::4096] = 1
    return buf


def _utc_today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


class AuditLog:
    """Every signal of one engine session, to a journal and then Parquet (module docstring).

    Parameters
    ----------
    directory:
        Where the files go (created when missing).
    session:
        The engine session name, written into file names and the ``session`` column.
    buffer_signals:
        Signals the in-memory buffer holds while the disk catches up (the memory bound:
        ``buffer_signals * 64`` bytes, split into ``chunks`` chunks).
    flush_interval_ms:
        The writer hands buffered signals to the kernel at least this often: the most a
        ``SIGKILL`` can lose.
    fsync_interval_s:
        ``fsync`` the journal at most this often while signals arrive (0: only at rotation and
        close): what a power loss can lose in addition.
    rotate_signals:
        Signals per journal part before it is closed and converted to Parquet.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        session: str,
        *,
        buffer_signals: int = 1 << 18,
        chunks: int = 16,
        flush_interval_ms: float = 10.0,
        fsync_interval_s: float = 1.0,
        rotate_signals: int = 1_000_000,
        recover: bool = True,
    ) -> None:
        if chunks < 2 or buffer_signals < chunks:
            raise ValueError("need chunks >= 2 and buffer_signals >= chunks")
        if flush_interval_ms <= 0 or fsync_interval_s < 0 or rotate_signals < 1:
            raise ValueError("flush_interval_ms > 0, fsync_interval_s >= 0, rotate_signals >= 1")
        self.directory = Path(directory)
        self.session = session
        self.counters = AuditCounters()
        self._chunk_bytes = (buffer_signals // chunks) * SIGNAL_SIZE
        self._chunks = chunks
        self._flush_interval_s = flush_interval_ms / 1000.0
        self._fsync_interval_s = fsync_interval_s
        self._rotate_bytes = rotate_signals * SIGNAL_SIZE
        self._recover = recover
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._free: deque[bytearray] = deque()
        self._full: deque[tuple[bytearray, int]] = deque()
        self._cur = bytearray()
        self._cur_view = memoryview(self._cur)
        self._fill = 0
        self._open = False
        self._closing = False
        self._last_drop_log = 0.0
        self._writer: threading.Thread | None = None
        self._converter: threading.Thread | None = None
        self._jobs: queue.Queue[Path | None] = queue.Queue()
        self._fd = -1
        self._journal: Path | None = None
        self._journal_bytes = 0
        self._journal_date = _utc_today()
        self._part = 0
        self._last_fsync = 0.0
        self._dirty = False
        self.parquet_paths: list[Path] = []
        """Parquet files this log has written (its own parts and recovered ones)."""

    # -- lifecycle --------------------------------------------------------------------------

    def open(self) -> None:
        """Allocate the buffer, open the first journal, start the writer and converter threads.

        Orphaned journals in the directory (a crashed engine's, not locked by a live one) are
        queued for conversion first when ``recover`` is set.
        """
        if self._open:
            raise RuntimeError("audit log already open")
        self.directory.mkdir(parents=True, exist_ok=True)
        self._free.extend(_prefaulted(self._chunk_bytes) for _ in range(self._chunks - 1))
        self._cur = _prefaulted(self._chunk_bytes)
        self._cur_view = memoryview(self._cur)
        if self._recover:
            for orphan in sorted(self.directory.glob("*" + JOURNAL_SUFFIX)):
                self._jobs.put(orphan)
        self._part = self._next_part()
        self._open_journal()
        self._open = True
        self._converter = threading.Thread(
            target=self._convert_loop, name="rf-audit-convert", daemon=True
        )
        self._converter.start()
        self._writer = threading.Thread(target=self._write_loop, name="rf-audit-write", daemon=True)
        self._writer.start()

    def close(self) -> None:
        """Write everything appended, close the journal, convert it; returns when all is on disk.

        Blocking (joins both threads): call it off the event loop (``Monitor.aclose`` does).
        """
        if not self._open:
            return
        self._open = False
        self._closing = True
        self._wake.set()
        if self._writer is not None:
            self._writer.join()
        self._jobs.put(None)
        if self._converter is not None:
            self._converter.join()

    def __enter__(self) -> AuditLog:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def journal_path(self) -> Path | None:
        """The journal being written now (None when closed)."""
        return self._journal

    # -- hot path ---------------------------------------------------------------------------

    def append(self, packed: memoryview, m: int) -> None:
        """Log the first ``m`` signals of ``packed`` (``m * 64`` bytes, layout v1).

        One copy into the preallocated buffer; never blocks on the disk. Pass a memoryview
        (slicing a ``bytearray`` would copy it once more). Signals appended while the log is not
        open, or when the buffer is full, are counted in ``signals_dropped``.
        """
        n = m * SIGNAL_SIZE
        if n <= 0:
            return
        with self._lock:
            if not self._open:
                self._drop(m)
                return
            fill = self._fill
            cap = self._chunk_bytes
            if fill + n <= cap:
                self._cur_view[fill : fill + n] = packed[:n]
                self._fill = fill + n
                self.counters.signals_appended += m
                if fill + n == cap:
                    self._hand_off()
                return
            self._append_split(packed, n)

    def _append_split(self, packed: memoryview, n: int) -> None:
        """A batch that crosses chunk boundaries (lock held)."""
        done = 0
        while done < n:
            space = self._chunk_bytes - self._fill
            if space == 0:
                if not self._hand_off():
                    self._drop((n - done) // SIGNAL_SIZE)
                    return
                continue
            step = min(space, n - done)
            self._cur_view[self._fill : self._fill + step] = packed[done : done + step]
            self._fill += step
            done += step
            self.counters.signals_appended += step // SIGNAL_SIZE
        if self._fill == self._chunk_bytes:
            self._hand_off()

    def _hand_off(self) -> bool:
        """Queue the current chunk for the writer and take a free one (lock held)."""
        if not self._free:
            return False
        self._full.append((self._cur, self._fill))
        self._cur = self._free.popleft()
        self._cur_view = memoryview(self._cur)
        self._fill = 0
        self._wake.set()
        return True

    def _drop(self, m: int) -> None:
        self.counters.signals_dropped += m
        now = time.monotonic()
        if now - self._last_drop_log >= _DROP_LOG_INTERVAL_S:
            self._last_drop_log = now
            log.warning(
                "audit log buffer full or closed: %d signals dropped so far",
                self.counters.signals_dropped,
            )

    # -- writer thread ----------------------------------------------------------------------

    def _take(self) -> list[tuple[bytearray, int]]:
        """Every filled chunk, then the partly filled current one (in append order)."""
        with self._lock:
            taken = list(self._full)
            self._full.clear()
            if self._fill and (self._free or self._closing):
                taken.append((self._cur, self._fill))
                if self._free:
                    self._cur = self._free.popleft()
                else:  # closing: nothing appends any more
                    self._cur = bytearray(0)
                self._cur_view = memoryview(self._cur)
                self._fill = 0
        return taken

    def _write_loop(self) -> None:
        while True:
            self._wake.wait(self._flush_interval_s)
            self._wake.clear()
            closing = self._closing
            self._drain()
            if closing:
                break
        self._drain()
        self._close_journal()

    def _drain(self) -> None:
        while True:
            taken = self._take()
            if not taken:
                break
            for buf, n in taken:
                self._write(memoryview(buf)[:n])
                if len(buf) == self._chunk_bytes:
                    self._free.append(buf)
        if self._dirty and self._fsync_interval_s:
            now = time.monotonic()
            if now - self._last_fsync >= self._fsync_interval_s:
                self._fsync()

    def _write(self, data: memoryview) -> None:
        if _utc_today() != self._journal_date:
            self._rotate()
        try:
            written = 0
            while written < len(data):
                written += os.write(self._fd, data[written:])
        except OSError as exc:
            self.counters.write_errors += 1
            lost = (len(data) - written) // SIGNAL_SIZE
            self.counters.signals_lost += lost
            self.counters.signals_written += written // SIGNAL_SIZE
            log.error("audit journal write failed (%s): %d signals lost", exc, lost)
            # keep the file on a signal boundary so the journal stays readable
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._journal_bytes + written - written % SIGNAL_SIZE)
                os.lseek(self._fd, 0, os.SEEK_END)
            self._journal_bytes += written - written % SIGNAL_SIZE
            return
        self._journal_bytes += written
        self.counters.signals_written += written // SIGNAL_SIZE
        self._dirty = True
        if self._journal_bytes >= self._rotate_bytes:
            self._rotate()

    def _fsync(self) -> None:
        with contextlib.suppress(OSError):
            os.fsync(self._fd)
            self.counters.fsyncs += 1
        self._last_fsync = time.monotonic()
        self._dirty = False

    def _next_part(self) -> int:
        mine = safe_session(self.session)
        parts = [0]
        for path in self.directory.iterdir():
            parsed = parse_part_name(path.name.split(".", 1)[0])
            if parsed is not None and parsed[1] == mine:
                parts.append(parsed[2])
        return max(parts) + 1

    def _open_journal(self) -> None:
        self._journal_date = _utc_today()
        while True:  # another log of the same session name may have taken this part meanwhile
            stem = part_name(self._journal_date, self.session, self._part)
            path = self.directory / (stem + JOURNAL_SUFFIX)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
            except FileExistsError:
                self._part += 1
                continue
            break
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # marks it live for other engines' recovery
        self._fd, self._journal, self._journal_bytes = fd, path, 0
        self.counters.journals_opened += 1

    def _close_journal(self) -> None:
        if self._fd < 0:
            return
        self._fsync()
        os.close(self._fd)
        self._fd = -1
        assert self._journal is not None
        self._jobs.put(self._journal)
        self._journal = None

    def _rotate(self) -> None:
        self._close_journal()
        self._part += 1
        self._open_journal()

    # -- converter thread -------------------------------------------------------------------

    def _convert_loop(self) -> None:
        while True:
            path = self._jobs.get()
            if path is None:
                return
            try:
                result = convert_journal(path, self.session if self._owns(path) else None)
            except Exception as exc:  # a converter failure must not kill the thread
                self.counters.convert_errors += 1
                log.error("audit journal %s not converted (kept for recovery): %s", path, exc)
                continue
            if result is not None:
                out, rows, invalid = result
                self.parquet_paths.append(out)
                self.counters.parquet_files += 1
                self.counters.parquet_rows += rows
                self.counters.signals_invalid += invalid

    def _owns(self, path: Path) -> bool:
        parsed = parse_part_name(path.stem)
        return parsed is not None and parsed[1] == safe_session(self.session)


# -- reading and converting -----------------------------------------------------------------


def valid_signals(data: bytes | memoryview) -> tuple[npt.NDArray[np.void], int]:
    """The complete, valid signals of a journal's bytes as records, and how many were skipped.

    A trailing partial signal (a write torn by a crash) and any signal whose magic, layout or
    CRC-32C does not check are skipped; the rest keep their order.
    """
    view = memoryview(data).cast("B")
    whole = len(view) - len(view) % SIGNAL_SIZE
    skipped = 1 if whole != len(view) else 0
    body = view[:whole]
    try:
        validate(body)
        return unpack(body), skipped
    except SignalFormatError:
        pass
    good = []
    for off in range(0, whole, SIGNAL_SIZE):
        one = body[off : off + SIGNAL_SIZE]
        try:
            validate(one)
        except SignalFormatError:
            skipped += 1
            continue
        good.append(one.tobytes())
    return unpack(b"".join(good)), skipped


def _columns(records: npt.NDArray[np.void]) -> dict[str, npt.NDArray[np.generic]]:
    return {name: np.ascontiguousarray(records[name]) for name in SIGNAL_COLUMNS}


def _session_of(path: Path) -> str:
    parsed = parse_part_name(path.name.split(".", 1)[0])
    return parsed[1] if parsed is not None else path.stem


def convert_journal(path: Path, session: str | None = None) -> tuple[Path, int, int] | None:
    """Turn one journal into Parquet next to it, then remove the journal.

    Returns (parquet path, rows, records skipped), or None when another process holds the
    journal (a live engine's) or it is gone. ``session`` defaults to the one in the file name.
    The Parquet file appears atomically (temporary name, then rename).
    """
    import duckdb

    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        with os.fdopen(os.dup(fd), "rb") as fh:
            data = fh.read()
        records, skipped = valid_signals(data)
        if records.shape[0] == 0 and skipped == 0:  # a part that never got a signal
            path.unlink()
            return None
        out = path.with_suffix(PARQUET_SUFFIX)
        tmp = path.with_suffix(".parquet.tmp")
        con = duckdb.connect()
        try:
            empty = _columns(records[:0])
            con.register("empty", empty)
            con.execute("CREATE TABLE signals AS SELECT * FROM empty")
            con.unregister("empty")
            for start in range(0, records.shape[0], _CONVERT_SLICE):
                con.register("part", _columns(records[start : start + _CONVERT_SLICE]))
                con.execute("INSERT INTO signals SELECT * FROM part")
                con.unregister("part")
            target = str(tmp).replace("'", "''")
            con.execute(
                f"COPY (SELECT *, ?::VARCHAR AS session FROM signals) "
                f"TO '{target}' (FORMAT parquet, COMPRESSION zstd)",
                [session if session is not None else _session_of(path)],
            )
        finally:
            con.close()
        _fsync_path(tmp)
        os.replace(tmp, out)
        _fsync_path(path.parent)
        path.unlink()
        return out, int(records.shape[0]), skipped
    finally:
        os.close(fd)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def recover(directory: str | os.PathLike[str]) -> list[tuple[Path, int, int]]:
    """Convert every orphaned journal in ``directory`` (those no live engine holds)."""
    done = []
    for path in sorted(Path(directory).glob("*" + JOURNAL_SUFFIX)):
        result = convert_journal(path)
        if result is not None:
            done.append(result)
    return done


def iter_journals(directory: str | os.PathLike[str]) -> Iterator[tuple[Path, str]]:
    """Journals in ``directory`` (live or orphaned) with their file-name session."""
    for path in sorted(Path(directory).glob("*" + JOURNAL_SUFFIX)):
        yield path, _session_of(path)
