"""atheris (libFuzzer) harness for the tick parser: any input, both encodings, never a crash, and
the counters always agree with the rings.

Run: ``.venv/bin/python tests/fuzz/fuzz_tickparse.py -runs=20000 [corpus_dir]``
(tests/unit/test_tickparse_fuzz.py runs it for a bounded count with a synthetic seed corpus).
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports():
    from relentless_fast._tickparse import TickParser, TickRings
    from relentless_fast.records import Kind

SYMBOLS = ["AAPL", "AMD", "SPY", "BRK.B", "X"]
RINGS = TickRings(len(SYMBOLS), 4)
PARSER = TickParser(SYMBOLS, RINGS)


def _check(data: bytes, mp: bool) -> None:
    heads = sum(int(RINGS.heads(k).sum()) for k in Kind)
    seq, drops = PARSER.seq, int(PARSER.drop_counts.sum())
    n = PARSER.parse_msgpack(data) if mp else PARSER.parse_json(data)
    written = sum(int(RINGS.heads(k).sum()) for k in Kind) - heads
    if written != int(PARSER.frame_counts.sum()) or PARSER.seq - seq != written:
        raise AssertionError(f"record counters disagree on {data!r}")
    if int(PARSER.drop_counts.sum()) - drops != PARSER.frame_drops:
        raise AssertionError(f"drop counters disagree on {data!r}")
    touched = PARSER.touched[:n].tolist()
    if len(set(touched)) != n or any(t >= len(SYMBOLS) for t in touched):
        raise AssertionError(f"bad touched ids {touched} on {data!r}")
    if n > written:
        raise AssertionError("more symbols touched than records written")
    PARSER.take_controls()


def test_one_input(data: bytes) -> None:
    _check(data, mp=False)
    _check(data, mp=True)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
