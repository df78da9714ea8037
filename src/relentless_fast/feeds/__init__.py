"""Sources of raw Alpaca-shaped frames: the synthetic generator (tests, benches, the demo)."""

from __future__ import annotations

from relentless_fast.feeds.synthetic import SyntheticFeed, format_rfc3339, msgpack_dumps

__all__ = ["SyntheticFeed", "format_rfc3339", "msgpack_dumps"]
