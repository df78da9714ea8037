"""A reader process for the store tests: prints each context version it sees, one per line.

Usage: ``python -m tests.context.reader_proc (redis URL | snapshot path) [prefix]``.
"""

from __future__ import annotations

import asyncio
import sys

from relentless_fast.context.store import ContextStore


async def _run(target: str, prefix: str) -> None:
    if target.startswith("redis://"):
        store = ContextStore(redis_url=target, prefix=prefix, reconnect_max_s=0.3)
    else:
        store = ContextStore(snapshot_path=target, poll_interval_s=0.02)
    print("ready", flush=True)
    async for loaded in store.updates():
        print(loaded.version, loaded.as_of.isoformat(), store.reconnects, flush=True)


if __name__ == "__main__":
    asyncio.run(_run(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "rf:context"))
