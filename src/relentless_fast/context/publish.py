"""Publish a built context: atomic snapshot file and, when configured, Redis plus pub/sub.

Snapshot: the serialised ``DailyContext`` (its ``global_embedding`` filled) written to a temporary
file in the target directory, fsynced, then renamed over the target, so a reader sees the old or
the new file, never a torn one.

Redis layout (``prefix`` defaults to ``rf:context``)::

    {prefix}:current            serialised DailyContext of the newest as-of date
    {prefix}:ctx:{YYYY-MM-DD}   serialised DailyContext of that date (newest build)
    {prefix}:emb:{YYYY-MM-DD}   hash: version, embedding_version, n_symbols,
                                global (float32[GLOBAL_DIM] bytes), symbols (float32[S, SYMBOL_DIM])
    channel {prefix}:updates    message "<version> <YYYY-MM-DD>" after each publish

The keys of one publish are written in one MULTI/EXEC transaction before the message is sent.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from relentless_fast._proto.relentless_fast_pb2 import DailyContext
from relentless_fast.context import embedding


def write_snapshot(path: str | Path, ctx: DailyContext) -> None:
    """Write ``ctx`` to ``path`` atomically (temp file in the same directory, then rename)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    data = ctx.SerializeToString(deterministic=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_snapshot(path: str | Path) -> DailyContext | None:
    """The context in a snapshot file, or None when there is none."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    ctx = DailyContext()
    ctx.ParseFromString(data)
    return ctx


def channel(prefix: str) -> str:
    """The pub/sub channel of new versions."""
    return f"{prefix}:updates"


def publish_redis(url: str, prefix: str, ctx: DailyContext, *, make_current: bool = True) -> None:
    """Store ``ctx`` and its embedding in Redis and announce it on the updates channel."""
    import redis

    n = max((s.symbol_id for s in ctx.symbols), default=-1) + 1
    g = embedding.build_global(ctx)
    s = embedding.build_symbols(ctx, n)
    blob = ctx.SerializeToString(deterministic=True)
    client = redis.Redis.from_url(url, socket_timeout=10)
    try:
        pipe = client.pipeline(transaction=True)
        pipe.set(f"{prefix}:ctx:{ctx.as_of_date}", blob)
        pipe.hset(
            f"{prefix}:emb:{ctx.as_of_date}",
            mapping={
                "version": ctx.version,
                "embedding_version": ctx.embedding_version,
                "n_symbols": n,
                "global": g.tobytes(),
                "symbols": s.tobytes(),
            },
        )
        if make_current:
            pipe.set(f"{prefix}:current", blob)
        pipe.execute()
        if make_current:
            client.publish(channel(prefix), f"{ctx.version} {ctx.as_of_date}")
    finally:
        client.close()
