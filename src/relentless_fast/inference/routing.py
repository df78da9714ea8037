"""Canary routing: a fixed fraction of symbols, chosen by a stable hash, go to label ``canary``.

The choice depends only on the symbol (its name, or its id when names are not given) and a salt,
never on arrival order or process, so a symbol stays on one model across batches, restarts and
engines. The per-symbol decision is computed once into a boolean table indexed by symbol id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

DEFAULT_CANARY_FRACTION = 0.05
DEFAULT_SALT = b"relentless-fast/canary/v1"


def _unit_hash(key: bytes, salt: bytes) -> float:
    digest = hashlib.blake2b(key, digest_size=8, key=salt).digest()
    return int.from_bytes(digest, "big") / 2.0**64


class CanaryRouter:
    """Which symbols are canary rows.

    Parameters
    ----------
    symbols:
        Symbol names in id order (preferred: the decision then survives table changes), or an
        int: the number of symbols, hashed by id.
    fraction:
        Share of symbols routed to ``canary`` (0 disables canary routing).
    """

    def __init__(
        self,
        symbols: Sequence[str] | int,
        fraction: float = DEFAULT_CANARY_FRACTION,
        *,
        salt: bytes = DEFAULT_SALT,
    ) -> None:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"canary fraction must be within [0, 1], got {fraction}")
        self.fraction = fraction
        if isinstance(symbols, int):
            keys = [i.to_bytes(4, "big") for i in range(symbols)]
        else:
            keys = [s.encode() for s in symbols]
        self.is_canary: npt.NDArray[np.bool_] = np.array(
            [_unit_hash(k, salt) < fraction for k in keys], dtype=np.bool_
        )

    @property
    def n_canary(self) -> int:
        return int(self.is_canary.sum())

    def mask(self, symbol_ids: npt.NDArray[np.int32]) -> npt.NDArray[np.bool_]:
        """Canary mask of a batch's rows."""
        return self.is_canary[symbol_ids]
