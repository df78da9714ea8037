"""Property and fuzz tests: generated frames equal the reference; mutated frames never crash and
every counter stays consistent. The atheris harness in tests/fuzz/ runs for a bounded count."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relentless_fast._tickparse import TickParser, TickRings
from relentless_fast.feeds.synthetic import ALL_KINDS_MIX, SyntheticFeed, format_rfc3339
from relentless_fast.records import Kind
from tests.reference_decoder import Pair

SYMBOLS = ["AAPL", "AMD", "SPY", "BRK.B", "X"]
REPO = Path(__file__).resolve().parents[2]
FUZZ_SETTINGS = settings(
    max_examples=int(os.environ.get("RF_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- strategies --------------------------------------------------------------------------------

prices = st.one_of(
    st.floats(min_value=0, max_value=1e6, allow_nan=False),
    st.integers(min_value=0, max_value=10**7),
    st.decimals(min_value=0, max_value=10000, places=4).map(float),
)
sizes = st.one_of(st.integers(min_value=0, max_value=2**53), st.floats(0, 1e9))
ids = st.integers(min_value=-(2**63), max_value=2**63 - 1)
codes = st.text(min_size=0, max_size=3)
timestamps = st.builds(
    lambda ns, digits: format_rfc3339(ns - ns % 10 ** (9 - digits)),
    st.integers(min_value=0, max_value=2**63 - 1),
    st.integers(min_value=0, max_value=9),
)
symbols = st.one_of(st.sampled_from(SYMBOLS), st.text(max_size=17))
junk = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=4),
                 st.lists(st.integers(0, 3), max_size=2))  # fmt: skip

FIELD_VALUES: dict[str, Any] = {
    "S": symbols, "t": timestamps, "i": ids, "x": codes, "p": prices, "s": sizes,
    "c": st.lists(st.text(max_size=2), max_size=6), "z": codes, "bx": codes, "bp": prices,
    "bs": sizes, "ax": codes, "ap": prices, "as": sizes, "o": prices, "h": prices, "l": prices,
    "v": sizes, "n": st.integers(0, 2**64 - 1), "vw": prices, "sc": codes,
    "rc": st.text(max_size=10),
    "oi": ids, "op": prices, "os": sizes, "ci": ids, "cp": prices, "cs": sizes, "a": codes,
    "u": prices, "d": prices,
}  # fmt: skip
TYPE_KEYS = {
    "t": ["S", "i", "x", "p", "s", "c", "z", "t"],
    "q": ["S", "bx", "bp", "bs", "ax", "ap", "as", "c", "z", "t"],
    "b": ["S", "o", "h", "l", "c", "v", "n", "vw", "t"],
    "u": ["S", "o", "h", "l", "c", "v", "n", "vw", "t"],
    "d": ["S", "o", "h", "l", "c", "v", "t"],
    "c": ["S", "x", "oi", "op", "os", "ci", "cp", "cs", "z", "t"],
    "x": ["S", "i", "x", "p", "s", "a", "z", "t"],
    "s": ["S", "sc", "rc", "z", "t"],
    "l": ["S", "u", "d", "i", "z", "t"],
    "i": ["S", "p", "z", "t"],
}


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    typ = draw(st.sampled_from([*TYPE_KEYS, "success", "error", "zz"]))
    msg: dict[str, Any] = {"T": typ}
    for key in TYPE_KEYS.get(typ, ["S"]):
        if typ == "c" and key == "c":
            continue
        value_strategy = FIELD_VALUES[key]
        if typ == "l" and key == "i":
            value_strategy = codes
        if typ in "bud" and key == "c":
            value_strategy = prices
        roll = draw(st.integers(0, 30))
        if roll == 0:
            continue  # missing
        msg[key] = draw(junk) if roll == 1 else draw(value_strategy)
    extra = draw(st.dictionaries(st.text(max_size=3), junk, max_size=2))
    for key, value in extra.items():
        msg.setdefault(key, value)
    order = draw(st.permutations(list(msg)))
    return {k: msg[k] for k in order}


frames = st.lists(messages(), max_size=12)


def _ts_to_msgpack(msg: Any) -> Any:
    if isinstance(msg, dict) and isinstance(msg.get("t"), str):
        try:
            from tests.reference_decoder import parse_rfc3339

            ns = parse_rfc3339(msg["t"])
        except ValueError:
            return msg
        return {**msg, "t": msgpack.Timestamp(ns // 10**9, ns % 10**9)}
    return msg


# -- properties --------------------------------------------------------------------------------


@FUZZ_SETTINGS
@given(frames, st.integers(0, 2))
def test_generated_frames_equal_reference(msgs: list[dict[str, Any]], indent: int) -> None:
    pair = Pair(SYMBOLS, capacity=64)
    frame = orjson.dumps(msgs) if indent == 0 else json.dumps(msgs, indent=indent).encode()
    pair.feed(frame)
    pair.feed(msgpack.packb([_ts_to_msgpack(m) for m in msgs]), msgpack=True)


def _mutate(data: bytes, rnd: np.random.Generator) -> bytes:
    buf = bytearray(data)
    for _ in range(int(rnd.integers(1, 4))):
        if not buf:
            break
        op = int(rnd.integers(0, 5))
        pos = int(rnd.integers(0, len(buf)))
        if op == 0:
            buf[pos] = int(rnd.integers(0, 256))
        elif op == 1:
            del buf[pos : pos + int(rnd.integers(1, 8))]
        elif op == 2:
            buf[pos:pos] = bytes(rnd.choice(list(b'{}[]",:\\0123456789.eE-tfn \x00\xff'), 3))
        elif op == 3:
            end = pos + int(rnd.integers(1, 30))
            buf[pos:pos] = buf[pos:end]
        else:
            del buf[pos:]
    return bytes(buf)


def check_consistent(parser: TickParser, frame: bytes, *, mp: bool) -> None:
    """Parse ``frame`` and check every counter against the rings (no reference needed)."""
    rings = parser.rings
    heads_before = [rings.heads(k).copy() for k in Kind]
    seq_before, drops_before = parser.seq, parser.drop_counts.copy()
    n = parser.parse_msgpack(frame) if mp else parser.parse_json(frame)
    written = [rings.heads(k) - heads_before[k] for k in Kind]
    assert [int(w.sum()) for w in written] == parser.frame_counts.tolist()
    assert parser.seq - seq_before == int(parser.frame_counts.sum())
    assert int((parser.drop_counts - drops_before).sum()) == parser.frame_drops
    touched = parser.touched[:n].tolist()
    assert len(set(touched)) == n
    assert set(touched) == {s for w in written for s in np.flatnonzero(w).tolist()}
    for kind in Kind:
        for sid in np.flatnonzero(written[kind]).tolist():
            recs = rings.last(kind, sid, int(written[kind][sid]))
            assert (recs["ts_ns"] >= 0).all() and (recs["seq"] > seq_before).all()
            for name in recs.dtype.names or ():
                if recs.dtype[name].kind == "f" and name != "vwap":
                    assert np.isfinite(recs[name]).all() and (recs[name] >= 0).all()


SEED_FRAMES = [
    SyntheticFeed.json_frame(m) for m in SyntheticFeed(SYMBOLS, 4, ALL_KINDS_MIX).frames(40, 1, 6)
]
SEED_MP = [
    SyntheticFeed.msgpack_frame(m)
    for m in SyntheticFeed(SYMBOLS, 4, ALL_KINDS_MIX).frames(40, 1, 6)
]


@FUZZ_SETTINGS
@given(st.integers(0, 2**32 - 1), st.sampled_from(range(len(SEED_FRAMES))))
def test_mutated_frames_never_crash_and_counters_agree(seed: int, which: int) -> None:
    rnd = np.random.default_rng(seed)
    pair = Pair(SYMBOLS, capacity=8)
    for mp, seeds in ((False, SEED_FRAMES), (True, SEED_MP)):
        frame = _mutate(seeds[which], rnd)
        check_consistent(pair.parser, frame, mp=mp)
        pair.parser.take_controls()


@FUZZ_SETTINGS
@given(st.binary(max_size=200))
def test_random_bytes_never_crash(data: bytes) -> None:
    parser = TickParser(SYMBOLS, TickRings(len(SYMBOLS), 2))
    check_consistent(parser, data, mp=False)
    check_consistent(parser, data, mp=True)
    check_consistent(parser, b"[" + data, mp=False)
    check_consistent(parser, b"\x91" + data, mp=True)


def test_mutations_orjson_accepts_match_the_reference() -> None:
    rnd = np.random.default_rng(1234)
    pair = Pair(SYMBOLS, capacity=4096)
    other = TickParser(SYMBOLS, TickRings(len(SYMBOLS), 4))  # frames the reference cannot judge
    compared = 0
    for _ in range(3000):
        frame = _mutate(SEED_FRAMES[int(rnd.integers(0, len(SEED_FRAMES)))], rnd)
        try:
            ok = isinstance(orjson.loads(frame), list)
        except orjson.JSONDecodeError:
            ok = False
        if ok:
            pair.feed(frame)
            compared += 1
        else:
            check_consistent(other, frame, mp=False)
    assert compared > 100


def test_atheris_harness_bounded_run(tmp_path: Path) -> None:
    import pytest

    try:
        import atheris  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"atheris not importable: {exc}")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for j, frame in enumerate(SEED_FRAMES[:10] + SEED_MP[:10]):
        (corpus / f"seed{j}").write_bytes(frame)
    runs = os.environ.get("RF_ATHERIS_RUNS", "20000")
    proc = subprocess.run(
        [sys.executable, str(REPO / "tests" / "fuzz" / "fuzz_tickparse.py"), f"-runs={runs}",
         "-max_len=4096", "-seed=1", str(corpus)],
        cwd=REPO, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Done" in proc.stderr, proc.stderr[-2000:]
