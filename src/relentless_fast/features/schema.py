"""Feature schema v1: the names, order and parameters of the tick feature row.

This module is the one place that defines what column ``j`` of a feature row means. The native
kernel (``relentless_fast._features``) reads its parameters from here at import time, the slow
reference (``relentless_fast.features.reference``) implements the same definitions, and model
training and the engine check ``FEATURE_SCHEMA_VERSION`` / ``N_FEATURES`` against a model's
declared inputs. Any change to a name, the order, a parameter or a definition is a new version.

Event model. A symbol's *price events* are its trades (price ``p``, size ``v``, count 1) or, for bar
series, its bars (price = close, size = volume, count = ``trade_count`` or 1 when 0, VWAP price =
the bar's ``vwap`` or ``(high + low + close) / 3`` when absent). Quotes only update the book
features. Horizons are counted in price events, not in time. State is float64; rows are float32.
Every feature is scale free (relative to the last price) so one model serves every symbol.

Definitions (``p`` last price, ``lp[i]`` natural log of the i-th price event, ``n`` events seen):

==  ====================  ==========================================================  ========
 #  name                  definition                                                  neutral
==  ====================  ==========================================================  ========
 0  ret_1                 ``lp[n-1] - lp[n-2]`` (0 until 2 events)                     0
 1  ret_10                ``lp[n-1] - lp[n-11]`` (0 until 11 events)                   0
 2  ret_100               ``lp[n-1] - lp[n-101]`` (0 until 101 events)                 0
 3  ema_fast_dist         ``ema12 / p - 1``; ``ema += 2/(12+1) * (p - ema)``, seeded    0
                          with the first price
 4  ema_slow_dist         ``ema26 / p - 1`` (span 26, same recursion)                  0
 5  macd                  ``(ema12 - ema26) / p``                                      0
 6  macd_signal           ``signal / p``; ``signal += 2/(9+1) * (macd_raw - signal)``   0
                          with ``macd_raw = ema12 - ema26``, seeded 0 at the first
                          event (where ``macd_raw`` is 0)
 7  macd_hist             ``(macd_raw - signal) / p``                                  0
 8  rsi_14                Wilder RSI as a fraction: ``g / (g + l)`` where ``g``/``l``   0.5
                          are averages of price gains/losses, seeded with the first
                          change, then ``g += (gain - g) / 14``; 0.5 when ``g+l = 0``
 9  vwap_dist             ``p / vwap - 1``, ``vwap = sum(price*size) / sum(size)``       0
                          over the current session day (see below)
10  spread_bps            ``(ask - bid) / ((ask + bid)/2) * 1e4`` from the last quote   0
11  book_imbalance        ``(bid_size - ask_size) / (bid_size + ask_size)``            0
12  has_quote             1 when the last quote had ``bid > 0`` and ``ask > 0``,       0
                          else 0 (then spread and imbalance are neutral)
13  realized_vol_20       ``sqrt(sum of the last min(20, n-1) squared 1-event log       0
                          returns)`` (not annualised)
14  trade_rate_log        ``log1p(rate)``; ``rate`` in events/s decays with time        0
                          constant ``tau`` (60 s): ``rate = rate * exp(-dt/tau) +
                          count/tau`` at each event, ``dt`` >= 0 in seconds
15  size_z                z-score of ``x = log1p(size)`` against the exponentially     0
                          weighted mean/variance (``alpha = 2/(50+1)``) of the
                          *previous* events, clipped to +-20 (a long run of equal
                          sizes shrinks the variance towards 0); 0 until 2 events
                          or when variance is 0
16  session_volume_log    ``log1p(session volume)``                                    0
17  session_trades_log    ``log1p(session trade count)``                               0
18  time_of_day           ``(minutes since local midnight - 570) / 390`` in the        0
                          exchange time zone of the last trade/quote/bar: 0 at 09:30,
                          1 at 16:00 America/New_York, DST-exact
19  history_frac          ``min(n, 100) / 100``: how much return history exists        0
==  ====================  ==========================================================  ========

Sessions. The session day of an event is its calendar date in ``SESSION_TZ``. A price event on a
different date than the symbol's current session starts a new session: VWAP numerator and
denominator, session volume and session trade count restart at 0. EMAs, RSI, returns, volatility,
rate and size statistics carry over across days.

Corrections and cancels (ticks only) adjust the session aggregates only, and only when their own
timestamp falls on the symbol's current session day (otherwise they are counted as
``adjust_unapplied``): a correction adds ``corr_price*corr_size - orig_price*orig_size`` to the
VWAP numerator, ``corr_size - orig_size`` to the denominator and volume, and leaves the trade count;
a cancel (``C`` or ``E``) removes ``price*size`` and ``size`` and one trade. The VWAP numerator and
denominator are reset to 0 together if the denominator falls to 0 or below; volume and count are
floored at 0. Nothing else is rewound: EMAs, RSI, returns, volatility, rate, size statistics and the
last price keep the cancelled or corrected trade (they are not invertible cheaply).

Bars: spread, imbalance and has_quote are always neutral (0), there is no quote. Updated bars
(``bar_type == 'u'``) are skipped in the kernel's bar mode (they restate a bar already counted).
"""

from __future__ import annotations

from typing import Final

FEATURE_SCHEMA_VERSION: Final = 1

FEATURE_NAMES: Final[tuple[str, ...]] = (
    "ret_1",
    "ret_10",
    "ret_100",
    "ema_fast_dist",
    "ema_slow_dist",
    "macd",
    "macd_signal",
    "macd_hist",
    "rsi_14",
    "vwap_dist",
    "spread_bps",
    "book_imbalance",
    "has_quote",
    "realized_vol_20",
    "trade_rate_log",
    "size_z",
    "session_volume_log",
    "session_trades_log",
    "time_of_day",
    "history_frac",
)
N_FEATURES: Final = len(FEATURE_NAMES)
FEATURE_INDEX: Final[dict[str, int]] = {name: i for i, name in enumerate(FEATURE_NAMES)}

NEUTRAL_VALUES: Final[tuple[float, ...]] = tuple(
    0.5 if name == "rsi_14" else 0.0 for name in FEATURE_NAMES
)
"""Value of each feature before any event (and for a feature the source cannot give)."""

# Parameters of v1. The kernel reads these at import; changing one is a new schema version.
RETURN_HORIZONS: Final[tuple[int, int, int]] = (1, 10, 100)
EMA_FAST_SPAN: Final = 12
EMA_SLOW_SPAN: Final = 26
MACD_SIGNAL_SPAN: Final = 9
RSI_PERIOD: Final = 14
REALIZED_VOL_WINDOW: Final = 20
SIZE_EW_SPAN: Final = 50
SIZE_Z_CLIP: Final = 20.0
RATE_TAU_S: Final = 60.0
"""Default time constant of the trade rate; bar-series callers may pass their own (documented)."""
HISTORY_FULL: Final = 100
"""Events after which ``history_frac`` reaches 1 (the longest return horizon)."""
SESSION_TZ: Final = "America/New_York"
SESSION_OPEN_MINUTES: Final = 9 * 60 + 30
SESSION_LENGTH_MINUTES: Final = 390

HISTORY_CAPACITY: Final = 128
"""Log prices kept per symbol by the kernel: a power of two above the longest horizon."""

assert max(RETURN_HORIZONS) < HISTORY_CAPACITY
assert REALIZED_VOL_WINDOW < HISTORY_CAPACITY
assert HISTORY_CAPACITY & (HISTORY_CAPACITY - 1) == 0
