"""Engine tests: every async test runs under asyncio and uvloop; config, model, frames."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import uvloop

from relentless_fast._proto.relentless_fast_pb2 import DailyContext, SymbolContext
from relentless_fast.config import Config, load_config
from relentless_fast.context import embedding
from relentless_fast.engine.core import load_embedded
from relentless_fast.engine.sources import render_frames
from relentless_fast.inference.embedded import EmbeddedBackend

REPO_ROOT = Path(__file__).resolve().parents[2]
SYMBOLS = ("AAPL", "MSFT", "NVDA", "AMZN", "TSLA")


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


def make_config(**overrides: Any) -> Config:
    """Engine config for tests: test symbols, no outputs, no context store, no GC freeze."""
    base = {
        "engine.symbols": ",".join(SYMBOLS),
        "engine.gc_freeze": "false",
        "engine.kill_signal": "",
        "outputs.udp.enabled": "false",
        "outputs.grpc.enabled": "false",
        "context.snapshot_path": "",
        "monitor.metrics_enabled": "false",
        "monitor.audit_enabled": "false",
        "inference.model_base_path": str(REPO_ROOT / "models" / "relentless_financial"),
        "feed.synthetic_frames": "300",
        "feed.synthetic_max_messages": "20",
    }
    base.update({k: str(v) for k, v in overrides.items()})
    return load_config(env={}, overrides=base)


@pytest.fixture(scope="session")
def embedded() -> EmbeddedBackend:
    """The shipped stable model on LiteRT (loaded once)."""
    return load_embedded(make_config())


@pytest.fixture(scope="session")
def frames() -> list[bytes]:
    """300 seeded JSON frames over the test symbols."""
    return render_frames(SYMBOLS, n_frames=300, seed=11, max_messages=20)


def daily_context(version: int, *, symbol: str = "AAPL", symbol_id: int = 0) -> DailyContext:
    """A small published context with a global part and one symbol."""
    return DailyContext(
        as_of_date=dt.date.today().isoformat(),
        version=version,
        embedding_version=embedding.CONTEXT_EMBEDDING_VERSION,
        fed_funds_rate=5.25,
        vix=30.0,
        news_sentiment=0.8,
        fed_stance="hawkish",
        symbols=[SymbolContext(symbol=symbol, symbol_id=symbol_id, news_sentiment=-0.9)],
    )
