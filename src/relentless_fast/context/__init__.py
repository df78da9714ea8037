"""The daily pre-market context: sources, builder, storage, delivery and the embedding (v1).

Import the stable embedding names from :mod:`relentless_fast.context.embedding`; engines read the
published context with :mod:`relentless_fast.context.store`.
"""

from relentless_fast.context.embedding import (
    CONTEXT_DIM,
    CONTEXT_EMBEDDING_VERSION,
    GLOBAL_DIM,
    GLOBAL_FIELDS,
    SYMBOL_DIM,
    SYMBOL_FIELDS,
    build_global,
    build_symbols,
    neutral_global,
    neutral_symbols,
)

__all__ = [
    "CONTEXT_DIM",
    "CONTEXT_EMBEDDING_VERSION",
    "GLOBAL_DIM",
    "GLOBAL_FIELDS",
    "SYMBOL_DIM",
    "SYMBOL_FIELDS",
    "build_global",
    "build_symbols",
    "neutral_global",
    "neutral_symbols",
]
