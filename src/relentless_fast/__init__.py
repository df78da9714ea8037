"""relentless-fast: live market ticks plus a daily pre-market context in, 64-byte signals out."""

from __future__ import annotations

from relentless_fast.symbols import SymbolTable

__all__ = ["SymbolTable", "__version__"]
__version__ = "0.1.0"
