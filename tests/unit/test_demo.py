"""``relentless-fast demo`` runs the native path end to end and reports what it did."""

from __future__ import annotations

import re

import pytest

from relentless_fast.cli import main


def test_demo_summary_counts_ticks_drops_and_signals(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--frames", "400", "--broken-every", "100"]) == 0
    out = capsys.readouterr().out
    ticks = int(re.search(r"ticks parsed\s+([\d,]+)", out).group(1).replace(",", ""))  # type: ignore[union-attr]
    signals = int(re.search(r"signals packed\s+([\d,]+)", out).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert ticks > 400 and 0 < signals <= ticks
    assert "truncated=4" in out  # frames 100, 200, 300, 400 were cut short
    assert "ns per tick" in out and "CRC  ok" in out


def test_demo_msgpack(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--frames", "200", "--encoding", "msgpack", "--broken-every", "0"]) == 0
    assert "dropped                    0  none" in capsys.readouterr().out
