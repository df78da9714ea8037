"""64-byte signals (layout v1, docs/signal-format.md) and their transport framing.

Re-exports the Rust codec (distribution ``relentless-fast-signal``) under the package's name.
"""

from relentless_fast_signal import *  # noqa: F403
from relentless_fast_signal import __all__ as __all__
