"""Bench-suite summary: prints every benchmark's recorded percentiles after the run."""

from __future__ import annotations

from typing import Any

import pytest

_ROWS: list[tuple[str, dict[str, Any]]] = []


@pytest.fixture(autouse=True)
def _collect_extra_info(request: pytest.FixtureRequest) -> Any:
    yield
    bench = request.node.funcargs.get("benchmark")
    if bench is not None and bench.extra_info:
        _ROWS.append((request.node.nodeid, dict(bench.extra_info)))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _ROWS:
        return
    terminalreporter.section("relentless-fast: percentiles and ratios (extra_info)")
    for nodeid, info in _ROWS:
        shown = ", ".join(
            f"{k}={v:,.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(info.items())
        )
        terminalreporter.write_line(f"{nodeid}: {shown}")
