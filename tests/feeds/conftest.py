"""Feed tests: every async test runs under asyncio and uvloop; helpers shared by the files."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

import pytest
import uvloop

from relentless_fast.feeds.synthetic import SyntheticFeed


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """Parametrise the async tests of this directory over both event loops."""
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    """Poll ``predicate`` every few ms; fail the test with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}")
        await asyncio.sleep(0.005)


def json_frames(
    n: int, seed: int = 7, symbols: tuple[str, ...] = ("AAPL", "MSFT", "AMD")
) -> list[bytes]:
    """``n`` seeded synthetic JSON data frames of 1-8 messages each."""
    syn = SyntheticFeed(list(symbols), seed=seed)
    return [SyntheticFeed.json_frame(m) for m in syn.frames(n, 1, 8)]
