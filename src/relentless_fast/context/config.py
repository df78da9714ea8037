"""Configuration of the daily context loader: one frozen dataclass, units in the names.

Keys come from the ``[context]`` section of ``relentless.toml`` (:meth:`ContextConfig.from_mapping`
rejects unknown keys). API keys are never configuration: they are read from the environment
variables named here (``FRED_API_KEY``, ``CONGRESS_API_KEY``) when a source needs them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FRED_KEY_ENV = "FRED_API_KEY"
CONGRESS_KEY_ENV = "CONGRESS_API_KEY"

FRED_SERIES: tuple[str, ...] = (
    "DFF",
    "DGS1",
    "DGS2",
    "DGS10",
    "DGS30",
    "DFEDTARU",
    "DFEDTARL",
    "T10Y2Y",
    "T10Y3M",
    "BAMLH0A0HYM2",
    "BAMLC0A0CM",
    "T5YIE",
    "T10YIE",
    "DTWEXBGS",
    "VIXCLS",
    "UNRATE",
    "CPIAUCSL",
    "CPILFESL",
)
"""Every FRED series of the seed."""


class ConfigError(ValueError):
    """A context configuration that cannot be used."""


@dataclass(frozen=True)
class ContextConfig:
    """Everything the loader and the reader need. Paths may be relative to the working directory."""

    db_path: str = "var/context/context.duckdb"
    snapshot_path: str = "var/context/context.pb"
    redis_url: str = ""  # "redis://host:port/db"; empty: no Redis
    redis_prefix: str = "rf:context"
    universe_path: str = ""  # CSV ticker,cik,sic,name; empty: the packaged default universe
    symbol_table_path: str = ""  # symbols file (``<id> <SYMBOL>``); empty: ids in universe order
    fred_base_url: str = "https://api.stlouisfed.org/fred"
    congress_base_url: str = "https://api.congress.gov/v3"
    sec_data_base_url: str = "https://data.sec.gov"
    sec_archive_base_url: str = "https://www.sec.gov"
    sec_user_agent: str = ""  # "<Company or app> <contact email>", required by EDGAR
    news_feeds: tuple[str, ...] = ()
    options_csv: str = ""  # URL or path of the daily put/call CSV; empty: no options source
    fred_series: tuple[str, ...] = FRED_SERIES
    # token buckets: burst + rate x window stays inside each documented quota
    fred_max_rps: float = 1.5  # FRED: 120 requests/minute per key (30 + 1.5 x 60 = 120)
    fred_burst: int = 30
    congress_max_rps: float = 1.3  # Congress.gov: 5,000/hour per key (40 + 1.3 x 3600 < 5,000)
    congress_burst: int = 40
    sec_max_rps: float = 10.0  # EDGAR: at most 10 requests/second, no burst
    news_max_rps: float = 2.0  # per feed host set; feeds publish no limit
    news_burst: int = 4
    http_timeout_s: float = 20.0
    max_attempts: int = 4
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    http_concurrency: int = 8
    zscore_lookback_days: int = 365
    change_window_days: int = 5
    unemployment_trend_months: int = 3
    congress_lookback_days: int = 1
    congress_max_bills: int = 500
    congress_detail_max: int = 40
    sec_lookback_days: int = 3
    sec_refresh_days: int = 7  # re-read a quiet company's submissions JSON after this many days
    form4_max_per_symbol: int = 10
    calendar_horizon_days: int = 45
    schedule_time: str = "05:30"
    schedule_tz: str = "America/New_York"
    stale_after_trading_days: int = 1

    def __post_init__(self) -> None:
        for name in ("fred_max_rps", "congress_max_rps", "sec_max_rps", "news_max_rps"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0")
        if min(self.fred_burst, self.congress_burst, self.news_burst) < 1:
            raise ConfigError("bursts must be >= 1")
        if self.sec_max_rps > 10.0:
            raise ConfigError("sec_max_rps must be <= 10 (EDGAR fair-access limit)")
        if self.http_timeout_s <= 0 or self.max_attempts < 1 or self.http_concurrency < 1:
            raise ConfigError("http_timeout_s, max_attempts and http_concurrency must be positive")
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"redis_url must be a redis:// URL, got {self.redis_url!r}")
        hh, _, mm = self.schedule_time.partition(":")
        if not (hh.isdigit() and mm.isdigit() and int(hh) < 24 and int(mm) < 60):
            raise ConfigError(f"schedule_time must be HH:MM, got {self.schedule_time!r}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> ContextConfig:
        """Build from a ``[context]`` table; unknown keys are an error."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"unknown [context] keys: {', '.join(unknown)}")
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            kwargs[key] = tuple(value) if isinstance(value, list) else value
        return cls(**kwargs)

    @classmethod
    def from_toml(cls, path: str | Path, section: str = "context") -> ContextConfig:
        """Read the ``[context]`` table of a TOML file (missing table: defaults)."""
        import tomllib

        with open(path, "rb") as fh:
            data = tomllib.load(fh)
        table = data.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"[{section}] must be a table")
        return cls.from_mapping(table)


def env_key(name: str) -> str:
    """An API key from the environment ("" when unset). The value is never logged."""
    return os.environ.get(name, "").strip()
