"""``relentless-fast demo`` runs the whole pipeline and reports what it did."""

from __future__ import annotations

import re

import pytest

from relentless_fast.cli import main


def _count(out: str, label: str) -> int:
    m = re.search(rf"{label}\s+([\d,]+)", out)
    assert m is not None, f"{label!r} missing from:\n{out}"
    return int(m.group(1).replace(",", ""))


def test_demo_summary_counts_ticks_drops_signals_and_latency(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["demo", "--frames", "400", "--broken-every", "100", "--rate", "0"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    ticks = _count(out, "ticks parsed")
    sent = _count(out, "signals sent")
    assert ticks > 400 and 0 < sent <= ticks
    assert _count(out, "signals recvd") == sent
    assert "truncated=4" in out  # frames 100, 200, 300, 400 were cut short
    assert "consumer check            ok" in out and "end of session seen" in out
    assert re.search(r"tick-to-signal\s+P50 [\d,.]+ us\s+P99 [\d,.]+ us\s+P99\.9", out)


def test_demo_msgpack(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "demo",
        "--frames",
        "200",
        "--encoding",
        "msgpack",
        "--broken-every",
        "0",
        "--rate",
        "0",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "dropped                    0  none" in out and "consumer check            ok" in out


def test_demo_on_the_bundled_sample_recording(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--source", "sample", "--rate", "0"]) == 0
    out = capsys.readouterr().out
    assert "bundled sample recording" in out and "synthetic" in out
    assert _count(out, "signals recvd") == _count(out, "signals sent") > 0
