"""The engine: feed frames in, packed 64-byte signals out (see ``docs/engine.md``).

- :mod:`.core`: :class:`Engine` (the embedding API), :func:`run_engine` (owns a uvloop loop).
- :mod:`.context_state`: the fused context swapped atomically between batches.
- :mod:`.halts`: trading halts and LULD bands from the feed.
- :mod:`.sources`: the feeds built from ``[feed]`` (synthetic, recording, Alpaca).
- :mod:`.grpc_service`: ``FinancialPredictor``, the standard health service, the kill switch.
- :mod:`.cli`: ``relentless-fast run | symbols | kill``.
"""

from relentless_fast.engine.context_state import FusedContext
from relentless_fast.engine.core import Engine, EngineCounters, SignalBatch, run_engine

__all__ = ["Engine", "EngineCounters", "FusedContext", "SignalBatch", "run_engine"]
