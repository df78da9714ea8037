"""A process that appends to an audit log until killed (tests/monitor/test_audit_crash.py).

``python -m tests.monitor.audit_writer_proc DIR settle N``: append N signals in batches of 50,
print ``appended N`` and wait to be killed. ``... DIR busy``: append batches of 50 forever,
printing ``<appended> <written>`` after each (written: what the writer thread has handed to the
kernel). Records come from ``helpers.make_records`` so the parent can rebuild them.
"""

from __future__ import annotations

import sys
import time

from relentless_fast.monitor.audit import AuditLog
from relentless_fast.signals import SIGNAL_SIZE, pack
from tests.monitor.helpers import make_records

BATCH = 50


def main() -> None:
    directory, mode = sys.argv[1], sys.argv[2]
    log = AuditLog(directory, "CRASH", flush_interval_ms=10, fsync_interval_s=0)
    log.open()
    buf = bytearray(BATCH * SIGNAL_SIZE)
    view = memoryview(buf)
    seq = 1
    limit = int(sys.argv[3]) if mode == "settle" else 1 << 62
    while seq <= limit:
        buf[:] = pack(make_records(seq, BATCH))
        log.append(view, BATCH)
        seq += BATCH
        if mode == "busy":
            print(seq - 1, log.counters.signals_written, flush=True)
            time.sleep(0.0002)
    print("appended", seq - 1, flush=True)
    time.sleep(3600)


if __name__ == "__main__":
    main()
