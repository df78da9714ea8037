"""relentless-fast: live market ticks plus a daily pre-market context in, 64-byte signals out.

``relentless_fast.Engine`` is the embedding API (``docs/engine.md``); it is imported on first use so
that ``import relentless_fast`` stays light for tools that only need the symbol table or codec.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from relentless_fast.symbols import SymbolTable

if TYPE_CHECKING:
    from relentless_fast.engine import Engine

__all__ = ["Engine", "SymbolTable", "__version__"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "Engine":
        from relentless_fast.engine import Engine

        return Engine
    raise AttributeError(f"module 'relentless_fast' has no attribute {name!r}")
