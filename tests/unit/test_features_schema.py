"""Feature schema v1 is one consistent place, and the session clock is DST-exact."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from relentless_fast import _features
from relentless_fast.features import clock
from relentless_fast.features import schema as sc

NS = 1_000_000_000


def test_schema_is_consistent_with_the_kernel() -> None:
    assert len(set(sc.FEATURE_NAMES)) == sc.N_FEATURES == len(sc.NEUTRAL_VALUES)
    assert [sc.FEATURE_INDEX[n] for n in sc.FEATURE_NAMES] == list(range(sc.N_FEATURES))
    assert _features.N_FEATURES == sc.N_FEATURES
    assert _features.FEATURE_SCHEMA_VERSION == sc.FEATURE_SCHEMA_VERSION == 1
    kernel = _features.FeatureKernel(None, 2)
    assert kernel.features.shape == (2, sc.N_FEATURES) and kernel.features.dtype == np.float32
    assert kernel.rate_tau_s == sc.RATE_TAU_S and kernel.tz == sc.SESSION_TZ


def test_every_feature_is_documented() -> None:
    doc = sc.__doc__ or ""
    for name in sc.FEATURE_NAMES:
        assert f" {name} " in doc, name


@pytest.mark.parametrize("tz", ["America/New_York", "Europe/London", "Asia/Tokyo"])
def test_offset_table_matches_zoneinfo(tz: str) -> None:
    trans, offs = clock.offset_table(tz)
    assert len(offs) == len(trans) + 1 and np.all(np.diff(trans) > 0)
    rng = np.random.default_rng(3)
    stamps = rng.integers(-5 * 10**8, 4 * 10**9, 400) * NS
    # Around every transition: one second before and at it.
    stamps = np.concatenate([stamps, trans - NS, trans])
    for ts in stamps.tolist():
        want = clock.zoneinfo_offset_ns(ts, tz)
        assert clock.utc_offset_ns(ts, trans, offs) == want, (tz, ts)


def test_new_york_transition_instants() -> None:
    trans, _ = clock.offset_table("America/New_York")
    spring = int(datetime(2024, 3, 10, 7, tzinfo=UTC).timestamp()) * NS  # 02:00 EST
    autumn = int(datetime(2024, 11, 3, 6, tzinfo=UTC).timestamp()) * NS  # 02:00 EDT
    assert spring in trans.tolist() and autumn in trans.tolist()


def test_kernel_uses_the_given_zone() -> None:
    # 2024-07-16 08:00 UTC is 09:00 BST in London.
    ts = int(datetime(2024, 7, 16, 8, tzinfo=UTC).timestamp()) * NS
    kernel = _features.FeatureKernel(None, 1, tz="Europe/London")
    one = np.ones(1)
    kernel.run_bars(0, np.array([ts]), one, one, one, one, one, np.ones(1, np.uint64))
    local = datetime.fromtimestamp(ts // NS, ZoneInfo("Europe/London"))
    minutes = local.hour * 60 + local.minute
    expected = (minutes - sc.SESSION_OPEN_MINUTES) / sc.SESSION_LENGTH_MINUTES
    assert kernel.row(0)[sc.FEATURE_INDEX["time_of_day"]] == pytest.approx(expected, abs=1e-6)
