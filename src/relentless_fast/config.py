"""Engine configuration: one TOML file, ``RELENTLESS_*`` environment variables, command-line flags.

Every key has a dotted name, ``<section>.<key>`` (``inference.window_us``,
``outputs.udp.port``). Values are taken in this order, later ones winning:

1. the defaults of the dataclasses below (a working local set-up, see ``relentless.example.toml``);
2. the TOML file (``relentless-fast run --config relentless.toml``);
3. environment variables ``RELENTLESS_<DOTTED_KEY>`` with dots as underscores, upper case
   (``RELENTLESS_INFERENCE_WINDOW_US=200``, ``RELENTLESS_OUTPUTS_UDP_PORT=9000``);
4. command-line flags ``--<dotted.key> VALUE`` (``--inference.window_us 200``).

An unknown key (in the file, or an environment variable whose name starts with a known section's
prefix) and a value of the wrong type or out of range raise :class:`ConfigError` naming the dotted
key. Environment and flag values are text: booleans are ``true/false/1/0/yes/no``, lists are
comma-separated (empty text: empty list). Secrets are never configuration: Alpaca credentials come
from ``APCA_API_KEY_ID`` / ``APCA_API_SECRET_KEY`` only.

All sections are frozen, keyword-only dataclasses with units in field names; the ``[context]``
section is :class:`relentless_fast.context.config.ContextConfig` itself (the loader's settings,
whose snapshot path and Redis URL the engine's reader also uses).
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import tomllib
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from relentless_fast.context.config import ContextConfig

ENV_PREFIX: Final = "RELENTLESS_"
DEFAULT_SYMBOLS: Final = (
    "AAPL",
    "MSFT",
    "NVDA",
    "AMZN",
    "GOOGL",
    "META",
    "TSLA",
    "SPY",
    "QQQ",
    "AMD",
)


class ConfigError(ValueError):
    """A configuration that cannot be used; :attr:`key` is the dotted key at fault."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


def _choice(key: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(key, f"must be one of {', '.join(choices)}; got {value!r}")


def _positive(key: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(key, f"must be > 0; got {value}")


def _port(key: str, value: int) -> None:
    if not 0 <= value <= 65535:
        raise ConfigError(key, f"must be a port 0..65535; got {value}")


@dataclass(frozen=True, kw_only=True)
class EngineSection:
    """``[engine]``: symbols, signal fields, halts, operations."""

    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    """The symbol table in id order (ignored when ``symbol_table_path`` is set)."""
    symbol_table_path: str = ""
    """A saved table (``<id> <SYMBOL>`` lines); ids are never taken from arrival order."""
    strategy_id: int = 1
    """Written into every signal (u16)."""
    session: str = ""
    """MoldUDP64/SoupBinTCP session name (1..10 ASCII); empty: the UTC start time, YYMMDDHHMM."""
    halt_policy: str = "suppress"
    """A halted symbol (trading status halt/pause): ``suppress`` its signals or ``flag`` them."""
    luld_policy: str = "flag"
    """A symbol at or beyond its LULD band: ``flag`` its signals, ``suppress`` or ``ignore``."""
    kill_signal: str = "SIGUSR1"
    """POSIX signal that trips the kill switch (stop emitting, keep consuming); empty: none."""
    pid_file: str = ""
    """Where ``run`` writes its process id (``relentless-fast kill`` reads it); empty: none."""
    gc_freeze: bool = True
    """``gc.freeze()`` once start-up is done, so start-up objects are never scanned again."""
    cpu_affinity: tuple[int, ...] = ()
    """Pin the engine process to these CPUs (``os.sched_setaffinity``); empty: no pinning."""
    busy_poll: bool = False
    """Keep the event loop spinning (epoll with a zero timeout) instead of sleeping between
    frames: costs a whole core, saves the wake-up and cold-cache time (docs/latency.md)."""
    event_loop: str = "uvloop"
    """Loop used when the engine owns it (``run``, ``demo``): ``uvloop`` or ``asyncio``."""
    ring_capacity: int = 4096
    """Records per symbol per message kind kept in the tick rings."""
    context_max_trading_days: int = 1
    """A context older than this many trading days is used but flagged stale."""

    def check(self) -> None:
        _choice("engine.halt_policy", self.halt_policy, ("suppress", "flag"))
        _choice("engine.luld_policy", self.luld_policy, ("suppress", "flag", "ignore"))
        _choice("engine.event_loop", self.event_loop, ("uvloop", "asyncio"))
        if self.kill_signal and not isinstance(getattr(signal, self.kill_signal, None), int):
            raise ConfigError("engine.kill_signal", f"unknown signal {self.kill_signal!r}")
        if not 0 <= self.strategy_id <= 0xFFFF:
            raise ConfigError("engine.strategy_id", f"must fit u16; got {self.strategy_id}")
        if len(self.session) > 10 or not self.session.isascii():
            raise ConfigError("engine.session", "at most 10 ASCII characters")
        if not self.symbols and not self.symbol_table_path:
            raise ConfigError("engine.symbols", "empty, and no engine.symbol_table_path")
        if self.ring_capacity < 16:
            raise ConfigError("engine.ring_capacity", f"must be >= 16; got {self.ring_capacity}")
        if any(c < 0 for c in self.cpu_affinity):
            raise ConfigError("engine.cpu_affinity", "CPU numbers are >= 0")
        if self.context_max_trading_days < 0:
            raise ConfigError("engine.context_max_trading_days", "must be >= 0")


@dataclass(frozen=True, kw_only=True)
class FeedSection:
    """``[feed]``: where frames come from."""

    source: str = "synthetic"
    """``alpaca`` (WebSocket), ``replay`` (a recording file) or ``synthetic`` (seeded generator)."""
    url: str = "wss://stream.data.alpaca.markets/v2/iex"
    encoding: str = "json"
    """``json`` or ``msgpack`` (Alpaca); a recording carries its own."""
    auth_in_headers: bool = False
    header_auth_grace_secs: float = 2.0
    """With header auth: subscribe after this long when no ``authenticated`` arrives."""
    channels: tuple[str, ...] = ("trades", "quotes", "statuses", "lulds")
    """Alpaca channels subscribed for every engine symbol."""
    stale_after_secs: float = 30.0
    recording_path: str = ""
    """The recording ``replay`` plays (empty: the bundled synthetic sample)."""
    replay_speed: float = 0.0
    """Recorded pace times this; 0 plays as fast as possible."""
    synthetic_frames: int = 20_000
    synthetic_seed: int = 7
    synthetic_max_messages: int = 50
    """Messages per synthetic frame, at most."""
    synthetic_rate_fps: float = 0.0
    """Synthetic frames per second; 0 sends them as fast as the engine takes them."""

    def check(self) -> None:
        _choice("feed.source", self.source, ("alpaca", "replay", "synthetic"))
        _choice("feed.encoding", self.encoding, ("json", "msgpack"))
        if not self.url.startswith(("ws://", "wss://")):
            raise ConfigError("feed.url", f"must start with ws:// or wss://; got {self.url!r}")
        known = ("trades", "quotes", "bars", "updated_bars", "daily_bars", "statuses", "lulds")
        for ch in self.channels:
            _choice("feed.channels", ch, known)
        for key in ("replay_speed", "synthetic_rate_fps", "stale_after_secs",
                    "header_auth_grace_secs"):  # fmt: skip
            if getattr(self, key) < 0:
                raise ConfigError(f"feed.{key}", "must be >= 0")
        if self.synthetic_frames < 1 or self.synthetic_max_messages < 1:
            raise ConfigError("feed.synthetic_frames", "frames and messages per frame must be >= 1")


@dataclass(frozen=True, kw_only=True)
class FeaturesSection:
    """``[features]``: the feature kernel."""

    bars: bool = False
    """Features from minute bars instead of trades and quotes."""
    rate_tau_s: float = 60.0
    tz: str = "America/New_York"

    def check(self) -> None:
        _positive("features.rate_tau_s", self.rate_tau_s)


@dataclass(frozen=True, kw_only=True)
class InferenceSection:
    """``[inference]``: micro-batcher and backends."""

    backend: str = "embedded"
    """``embedded`` (LiteRT in process) or ``grpc`` (TF Serving, embedded as the fallback)."""
    model_base_path: str = "models/relentless_financial"
    stable_version: int = 1
    canary_version: int = 0
    """0: no canary."""
    canary_fraction: float = 0.0
    batch_sizes: tuple[int, ...] = (1, 8, 32, 128)
    num_threads: int = 1
    window_us: float = 50.0
    max_batch: int = 128
    queue_rows: int = 1024
    coalesce: bool = True
    flush_each_frame: bool = False
    """Dispatch each frame's rows before the next frame (no batching across frames): batch
    boundaries then depend only on the frames, so a replay is byte-identical (docs/engine.md)."""
    grpc_target: str = "127.0.0.1:8500"
    deadline_ms: float = 20.0
    late_grace_ms: float = 200.0

    def check(self) -> None:
        _choice("inference.backend", self.backend, ("embedded", "grpc"))
        if not 1 <= self.window_us <= 100_000:
            raise ConfigError("inference.window_us", f"must be 1..100000; got {self.window_us}")
        if not 0 < self.stable_version <= 0xFFFF:
            raise ConfigError("inference.stable_version", "must be 1..65535")
        if not 0 <= self.canary_version <= 0xFFFF:
            raise ConfigError("inference.canary_version", "must be 0..65535")
        if not 0.0 <= self.canary_fraction <= 1.0:
            raise ConfigError("inference.canary_fraction", "must be within [0, 1]")
        sizes = self.batch_sizes
        if not sizes or any(b < 1 for b in sizes) or list(sizes) != sorted(set(sizes)):
            raise ConfigError("inference.batch_sizes", f"positive and increasing; got {sizes}")
        if self.max_batch < 1 or self.queue_rows < self.max_batch:
            raise ConfigError("inference.queue_rows", "need 1 <= max_batch <= queue_rows")
        if self.num_threads < 1:
            raise ConfigError("inference.num_threads", "must be >= 1")
        _positive("inference.deadline_ms", self.deadline_ms)


@dataclass(frozen=True, kw_only=True)
class UdpOutputSection:
    """``[outputs.udp]``: MoldUDP64 publisher."""

    enabled: bool = True
    host: str = "239.255.86.10"
    port: int = 8610
    max_datagram_bytes: int = 1472
    heartbeat_interval_s: float = 1.0
    window_signals: int = 65536
    rerequest_port: int = 8611
    """MoldUDP64 re-request server; 0 picks a free port, -1 disables it."""
    multicast_interface: str = ""
    emission: str = "all"
    """``all``, ``actions`` (buy/sell only) or ``changes`` (action changes only)."""

    def check(self) -> None:
        _port("outputs.udp.port", self.port)
        if self.rerequest_port != -1:
            _port("outputs.udp.rerequest_port", self.rerequest_port)
        _choice("outputs.udp.emission", self.emission, ("all", "actions", "changes"))
        if not 86 <= self.max_datagram_bytes <= 65507:
            raise ConfigError("outputs.udp.max_datagram_bytes", "must be 86..65507")
        _positive("outputs.udp.heartbeat_interval_s", self.heartbeat_interval_s)
        if self.window_signals < 1:
            raise ConfigError("outputs.udp.window_signals", "must be >= 1")


@dataclass(frozen=True, kw_only=True)
class TcpOutputSection:
    """``[outputs.tcp]``: SoupBinTCP server."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 8620
    window_signals: int = 65536
    heartbeat_interval_s: float = 1.0
    emission: str = "all"
    username: str = ""
    """SoupBinTCP login username (<= 6 characters); empty: any login is accepted."""
    password_env: str = "RELENTLESS_SOUPBIN_PASSWORD"
    """Environment variable holding the login password (never in this file)."""
    client_timeout_s: float = 15.0
    """Drop a client that sends nothing (not even a heartbeat) for this long."""
    max_client_buffer_bytes: int = 4 << 20
    """Unsent bytes queued for one client above which it is dropped as slow."""

    def check(self) -> None:
        _port("outputs.tcp.port", self.port)
        _choice("outputs.tcp.emission", self.emission, ("all", "actions", "changes"))
        _positive("outputs.tcp.heartbeat_interval_s", self.heartbeat_interval_s)
        _positive("outputs.tcp.client_timeout_s", self.client_timeout_s)
        if self.window_signals < 1:
            raise ConfigError("outputs.tcp.window_signals", "must be >= 1")
        if self.max_client_buffer_bytes < 1:
            raise ConfigError("outputs.tcp.max_client_buffer_bytes", "must be >= 1")
        if len(self.username) > 6 or not self.username.isascii():
            raise ConfigError("outputs.tcp.username", "must be at most 6 ASCII characters")

    def credentials(self) -> tuple[str | None, str | None]:
        """(username, password) for the publisher; (None, None) accepts any login."""
        if not self.username:
            return None, None
        password = os.environ.get(self.password_env)
        if password is None:
            raise ConfigError(
                "outputs.tcp.password_env", f"username is set but ${self.password_env} is not"
            )
        return self.username, password


@dataclass(frozen=True, kw_only=True)
class GrpcOutputSection:
    """``[outputs.grpc]``: the FinancialPredictor service, health and kill switch."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8600
    subscriber_queue_signals: int = 65536
    """Signals buffered per ``Subscribe`` stream; a slower subscriber loses the oldest (counted)."""

    def check(self) -> None:
        _port("outputs.grpc.port", self.port)
        if self.subscriber_queue_signals < 1:
            raise ConfigError("outputs.grpc.subscriber_queue_signals", "must be >= 1")


@dataclass(frozen=True, kw_only=True)
class OutputsSection:
    """``[outputs]``: one sub-table per output."""

    udp: UdpOutputSection = field(default_factory=UdpOutputSection)
    tcp: TcpOutputSection = field(default_factory=TcpOutputSection)
    grpc: GrpcOutputSection = field(default_factory=GrpcOutputSection)

    def check(self) -> None:
        self.udp.check()
        self.tcp.check()
        self.grpc.check()


@dataclass(frozen=True, kw_only=True)
class MonitorSection:
    """``[monitor]``: Prometheus metrics endpoint and the audit log of every signal."""

    metrics_enabled: bool = True
    """Serve ``/metrics`` (Prometheus text format), ``/healthz`` and ``/snapshot`` over HTTP."""
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 8630
    """0 picks a free port."""
    metrics_required: bool = False
    """Refuse to start when the metrics port cannot be bound; false: log the error and run
    without metrics (a second engine or the demo next to a running one still starts)."""
    audit_enabled: bool = True
    """Log every emitted signal (whatever each output's emission policy) to ``audit_dir``."""
    audit_dir: str = "var/audit"
    """Journal and Parquet files, ``<YYYY-MM-DD>_<session>_<part>``; relative to the working
    directory."""
    audit_buffer_signals: int = 262_144
    """Signals buffered in memory while the disk catches up (64 bytes each); more are dropped
    and counted, never waited for."""
    audit_flush_interval_ms: float = 10.0
    """The writer thread hands buffered signals to the kernel at least this often: the most a
    killed engine (SIGKILL) can lose."""
    audit_fsync_interval_s: float = 1.0
    """``fsync`` the journal at most this often (0: only at rotation and close): what a power
    loss can lose in addition."""
    audit_rotate_signals: int = 1_000_000
    """Signals per journal part; a full part is converted to Parquet while the next fills."""

    def check(self) -> None:
        _port("monitor.metrics_port", self.metrics_port)
        if self.audit_enabled and not self.audit_dir:
            raise ConfigError("monitor.audit_dir", "empty while monitor.audit_enabled is true")
        if self.audit_buffer_signals < 1024:
            raise ConfigError("monitor.audit_buffer_signals", "must be >= 1024")
        if not 0 < self.audit_flush_interval_ms <= 10_000:
            raise ConfigError("monitor.audit_flush_interval_ms", "must be > 0 and <= 10000")
        if self.audit_fsync_interval_s < 0:
            raise ConfigError("monitor.audit_fsync_interval_s", "must be >= 0")
        if self.audit_rotate_signals < 1:
            raise ConfigError("monitor.audit_rotate_signals", "must be >= 1")


@dataclass(frozen=True, kw_only=True)
class Config:
    """The whole ``relentless.toml``."""

    engine: EngineSection = field(default_factory=EngineSection)
    feed: FeedSection = field(default_factory=FeedSection)
    features: FeaturesSection = field(default_factory=FeaturesSection)
    inference: InferenceSection = field(default_factory=InferenceSection)
    context: ContextConfig = field(default_factory=ContextConfig)
    outputs: OutputsSection = field(default_factory=OutputsSection)
    monitor: MonitorSection = field(default_factory=MonitorSection)

    def check(self) -> None:
        """Raise :class:`ConfigError` on the first bad value (sections check their own)."""
        self.engine.check()
        self.feed.check()
        self.features.check()
        self.inference.check()
        self.outputs.check()
        self.monitor.check()


# -- loading --------------------------------------------------------------------------------------


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def iter_keys(cls: type = Config, prefix: str = "") -> Iterator[tuple[str, Any, Any]]:
    """Every leaf key as ``(dotted key, type, default)``, in declaration order."""
    hints = _hints(cls)
    default = cls()
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        key = f"{prefix}{f.name}"
        if _is_section(tp):
            yield from iter_keys(tp, key + ".")
        else:
            yield key, tp, _get(default, f.name)


def _get(obj: Any, name: str) -> Any:
    return getattr(obj, name)


def env_name(key: str) -> str:
    """``outputs.udp.port`` -> ``RELENTLESS_OUTPUTS_UDP_PORT``."""
    return ENV_PREFIX + key.replace(".", "_").upper()


def _coerce(key: str, tp: Any, value: Any) -> Any:
    """A TOML value checked (and, for tuples, converted) against the field type."""
    origin = typing.get_origin(tp)
    if origin in (tuple, Sequence):
        (item, *_rest) = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise ConfigError(key, f"expected a list, got {type(value).__name__} {value!r}")
        return tuple(_coerce(key, item, v) for v in value)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(key, args[0], value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(key, f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"expected a string, got {value!r}")
        return value
    raise ConfigError(key, f"unsupported field type {tp!r}")  # pragma: no cover - schema bug


_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def parse_text(key: str, tp: Any, text: str) -> Any:
    """An environment-variable or flag value (text) for a field of type ``tp``."""
    origin = typing.get_origin(tp)
    if origin in (tuple, Sequence):
        (item, *_rest) = typing.get_args(tp)
        parts = [p.strip() for p in text.split(",")] if text.strip() else []
        return tuple(parse_text(key, item, p) for p in parts)
    t = text.strip()
    try:
        if tp is bool:
            if t.lower() in _TRUE:
                return True
            if t.lower() in _FALSE:
                return False
            raise ValueError(t)
        if tp is int:
            return int(t, 0)
        if tp is float:
            return float(t)
    except ValueError:
        raise ConfigError(key, f"expected {tp.__name__}, got {text!r}") from None
    return text


def _build(cls: type, table: Mapping[str, Any], prefix: str) -> Any:
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for k in table:
        if k not in names:
            section = prefix.rstrip(".") or "top level"
            raise ConfigError(f"{prefix}{k}", f"unknown key (in [{section}])")
    kwargs: dict[str, Any] = {}
    for k, v in table.items():
        tp = hints[k]
        if _is_section(tp):
            if not isinstance(v, Mapping):
                raise ConfigError(f"{prefix}{k}", "must be a table")
            kwargs[k] = _build(tp, v, f"{prefix}{k}.")
        else:
            kwargs[k] = _coerce(f"{prefix}{k}", tp, v)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:  # a composed section's own validation
        message = str(exc)
        named = [n for n in names if re.search(rf"\b{n}\b", message)]
        key = f"{prefix}{named[0]}" if named else prefix.rstrip(".") or "config"
        raise ConfigError(key, message) from exc


def _set_path(tree: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = tree
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value


def load_config(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
) -> Config:
    """The configuration from defaults, ``path`` (TOML), ``env`` and ``overrides`` (flags).

    ``env`` defaults to ``os.environ``; ``overrides`` maps dotted keys to flag text.
    Raises :class:`ConfigError` naming the key on any unknown key or bad value.
    """
    tree: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                tree = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(str(path), f"not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(str(path), f"cannot read: {exc.strerror}") from None
    keys = {k: tp for k, tp, _ in iter_keys()}
    env = os.environ if env is None else env
    by_env = {env_name(k): k for k in keys}
    sections = {env_name(k.split(".")[0]) + "_" for k in keys}
    for name, text in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        key = by_env.get(name)
        if key is None:
            if any(name.startswith(s) for s in sections):
                raise ConfigError(name, "unknown configuration variable")
            continue
        _set_path(tree, key, parse_text(key, keys[key], text))
    for key, text in (overrides or {}).items():
        if key not in keys:
            raise ConfigError(key, "unknown key")
        _set_path(tree, key, parse_text(key, keys[key], text))
    config: Config = _build(Config, tree, "")
    config.check()
    return config


# -- the example file -----------------------------------------------------------------------------

_EXAMPLE_HEADER = """\
# relentless-fast engine configuration: every key with its default (generated from
# relentless_fast/config.py by `python -m relentless_fast.config > relentless.example.toml`).
# Copy to relentless.toml and edit; run with `relentless-fast run --config relentless.toml`.
# Every key can be overridden by RELENTLESS_<SECTION>_<KEY> (dots as underscores, upper case)
# and by the flag --<section>.<key> VALUE. Unknown keys and bad values are errors naming the key.
# Secrets are never here: Alpaca credentials come from APCA_API_KEY_ID / APCA_API_SECRET_KEY.
"""


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML form for {v!r}")


def _field_docs() -> dict[tuple[str, str], str]:
    import ast
    import inspect
    import sys

    docs: dict[tuple[str, str], str] = {}
    for module in (sys.modules[__name__], sys.modules[ContextConfig.__module__]):
        for node in ast.parse(inspect.getsource(module)).body:
            if not isinstance(node, ast.ClassDef):
                continue
            for st, nxt in zip(node.body, node.body[1:], strict=False):
                if (
                    isinstance(st, ast.AnnAssign)
                    and isinstance(st.target, ast.Name)
                    and isinstance(nxt, ast.Expr)
                    and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)
                ):
                    docs[(node.name, st.target.id)] = " ".join(nxt.value.value.split())
    return docs


def example_toml() -> str:
    """``relentless.example.toml``: every section and key with its default and documentation."""
    import textwrap

    docs = _field_docs()
    lines = [_EXAMPLE_HEADER]

    def emit(cls: type, prefix: str) -> None:
        hints = _hints(cls)
        default = cls()
        fields = dataclasses.fields(cls)
        leaves = [f for f in fields if not _is_section(hints[f.name])]
        if leaves:
            lines.append(f"[{prefix}]")
            for f in leaves:
                doc = docs.get((cls.__name__, f.name))
                if doc:
                    lines.extend("# " + line for line in textwrap.wrap(doc, 96))
                lines.append(f"{f.name} = {_toml_value(getattr(default, f.name))}")
            lines.append("")
        for f in fields:
            if _is_section(hints[f.name]):
                emit(hints[f.name], f"{prefix}.{f.name}" if prefix else f.name)

    emit(Config, "")
    return "\n".join(lines)


if __name__ == "__main__":
    print(example_toml(), end="")
