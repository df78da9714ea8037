"""Prometheus metrics: the engine's ``snapshot()`` rendered as text exposition format 0.0.4.

:func:`render` turns the snapshot dict into ``relentless_fast_*`` families (HELP and TYPE lines,
``_total`` counters, labels for reasons, outputs and quantiles; docs/operations.md lists them).
Keys it does not know are still exported, as ``untyped`` families named after the key, so a new
engine counter is never silently missing. :class:`MetricsServer` serves it over a minimal HTTP/1.1
server on the event loop (``asyncio.start_server``): ``GET /metrics``, ``GET /healthz`` (200 while
the engine serves, else 503) and ``GET /snapshot`` (the raw snapshot as JSON). Everything here runs
on a scrape only; nothing touches the hot path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import numbers
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

import numpy as np

log = logging.getLogger(__name__)

PREFIX: Final = "relentless_fast_"
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
MAX_REQUEST_HEAD: Final = 8192
REQUEST_TIMEOUT_S: Final = 5.0

# snapshot key -> (metric name without prefix, type, help)
_SCALARS: Final[dict[str, tuple[str, str, str]]] = {
    "frames": ("frames_total", "counter", "Feed frames handed to the engine."),
    "ticks": ("ticks_total", "counter", "Market messages parsed into the tick rings."),
    "rows_submitted": (
        "rows_submitted_total",
        "counter",
        "Feature rows submitted to the micro-batcher.",
    ),
    "rows_coalesced": (
        "rows_coalesced_total",
        "counter",
        "Rows replaced by a newer row of the same symbol before inference.",
    ),
    "batches": ("inference_batches_total", "counter", "Batches dispatched to inference."),
    "rows_fallback": (
        "rows_fallback_total",
        "counter",
        "Rows served by the embedded fallback backend.",
    ),
    "signals": ("signals_total", "counter", "Signals emitted (sequence numbers used)."),
    "context_swaps": ("context_swaps_total", "counter", "Daily contexts swapped in."),
    "last_sequence": ("last_sequence", "gauge", "Sequence number of the last signal emitted."),
    "context_version": ("context_version", "gauge", "Version of the daily context in use."),
    "context_stale": ("context_stale", "gauge", "1 while the daily context is stale or neutral."),
    "serving": ("serving", "gauge", "1 while the engine serves (started, not stopped or killed)."),
    "killed": ("killed", "gauge", "1 once the kill switch has tripped."),
}
# snapshot key -> (metric name without prefix, label name, help)
_BY_REASON: Final[dict[str, tuple[str, str, str]]] = {
    "parser_drops": ("parser_drops_total", "reason", "Messages the tick parser dropped."),
    "inference_drops": ("inference_drops_total", "reason", "Rows inference dropped."),
    "suppressed": ("signals_suppressed_total", "reason", "Signals not emitted, by reason."),
    "errors": (
        "engine_errors_total",
        "kind",
        "Errors the engine counted and went on: feed errors, failed signal callbacks and "
        "outputs, batches an async iterator did not take.",
    ),
}
_SECTIONS: Final[dict[str, str]] = {
    "udp": "MoldUDP64 publisher",
    "tcp": "SoupBinTCP server",
    "feed": "market-data feed",
}
_SECTION_GAUGES: Final = frozenset({"clients"})
_LATENCY_NAME: Final = "frame_to_signal_latency_seconds"
_INVALID_NAME: Final = re.compile(r"[^a-zA-Z0-9_]")


def _name(text: str) -> str:
    """A metric or label name made of ``[a-zA-Z0-9_]`` (others become ``_``)."""
    out = _INVALID_NAME.sub("_", text)
    return "_" + out if out[:1].isdigit() else out


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float | int | bool) -> str:
    """A sample value as the text format writes it (``NaN``, ``+Inf``, ``-Inf``)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def quantile_label(key: str) -> str:
    """``p50`` -> ``0.5``, ``p99.9`` -> ``0.999``, ``max`` -> ``1`` (the snapshot's percentiles)."""
    if key == "max":
        return "1"
    if key.startswith("p"):
        with contextlib.suppress(ArithmeticError):
            return format((Decimal(key[1:]) / 100).normalize(), "f")
    return key


def _is_number(value: Any) -> bool:
    """Python and numpy numbers and bools (numpy's register as ``numbers.Real``)."""
    return isinstance(value, numbers.Real | np.bool_)


def _plain(value: Any) -> float | int | bool:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    return float(value)


@dataclass(slots=True)
class _Family:
    type: str
    help: str
    samples: list[tuple[tuple[tuple[str, str], ...], float | int | bool]]


class _Exposition:
    """Families in first-seen order; each sample once per label set."""

    def __init__(self) -> None:
        self.families: dict[str, _Family] = {}

    def add(
        self,
        name: str,
        type_: str,
        help_: str,
        value: Any,
        labels: Iterable[tuple[str, str]] = (),
    ) -> None:
        if not _is_number(value):
            return
        value = _plain(value)
        full = PREFIX + name
        fam = self.families.get(full)
        if fam is None:
            fam = self.families[full] = _Family(type_, help_, [])
        fam.samples.append((tuple(labels), value))

    def text(self) -> str:
        lines: list[str] = []
        for name, fam in self.families.items():
            lines.append(f"# HELP {name} {_escape_help(fam.help)}")
            lines.append(f"# TYPE {name} {fam.type}")
            for labels, value in fam.samples:
                if labels:
                    inner = ",".join(f'{k}="{_escape_label(str(v))}"' for k, v in labels)
                    lines.append(f"{name}{{{inner}}} {format_value(value)}")
                else:
                    lines.append(f"{name} {format_value(value)}")
        return "\n".join(lines) + "\n" if lines else ""


def _latency(
    out: _Exposition, name: str, help_: str, pct: Mapping[str, Any], labels: tuple[()] | Any = ()
) -> None:
    for key, micros in pct.items():
        if _is_number(micros):
            out.add(
                name,
                "gauge",
                help_,
                float(micros) / 1e6,
                (*labels, ("quantile", quantile_label(str(key)))),
            )


def _remote(out: _Exposition, remote: Mapping[str, Any]) -> None:
    for label, st in remote.items():
        if not isinstance(st, Mapping):
            continue
        lab = (("label", str(label)),)
        out.add(
            "remote_calls_total",
            "counter",
            "Calls to the TF Serving backend.",
            st.get("calls"),
            lab,
        )
        for code, n in (st.get("errors") or {}).items():
            out.add(
                "remote_errors_total",
                "counter",
                "Failed TF Serving calls, by gRPC status.",
                n,
                (*lab, ("code", str(code))),
            )
        _latency(
            out,
            "remote_latency_seconds",
            "TF Serving call latency (quantile 1 is the maximum).",
            st.get("latency_us") or {},
            lab,
        )


def _section(out: _Exposition, section: str, values: Mapping[str, Any]) -> None:
    what = _SECTIONS.get(section, section)
    for field, value in values.items():
        base = f"{_name(section)}_{_name(field)}"
        if isinstance(value, Mapping):
            for code, n in value.items():
                out.add(
                    base + "_total",
                    "counter",
                    f"{what}: {field} by code.",
                    n,
                    (("code", str(code)),),
                )
        elif field in _SECTION_GAUGES:
            out.add(base, "gauge", f"{what}: {field} now.", value)
        else:
            out.add(base + "_total", "counter", f"{what}: {field}.", value)


def _untyped(out: _Exposition, name: str, value: Any, labels: tuple[tuple[str, str], ...]) -> None:
    if isinstance(value, Mapping):
        if all(_is_number(v) for v in value.values()):
            for k, v in value.items():
                out.add(
                    name, "untyped", f"Engine snapshot key {name}.", v, (*labels, ("key", str(k)))
                )
        else:
            for k, v in value.items():
                _untyped(out, f"{name}_{_name(str(k))}", v, labels)
    else:
        out.add(name, "untyped", f"Engine snapshot key {name}.", value, labels)


def render(
    snapshot: Mapping[str, Any], extra: Mapping[str, Mapping[str, Any]] | None = None
) -> str:
    """The exposition text (format 0.0.4) of an engine snapshot and ``extra`` sections.

    ``extra`` maps a section name (``audit``) to its counters, rendered as
    ``relentless_fast_<section>_<field>_total``.
    """
    out = _Exposition()
    for key, value in snapshot.items():
        if key == "session":
            out.add(
                "session_info",
                "gauge",
                "The engine session (MoldUDP64/SoupBinTCP session name).",
                1,
                (("session", str(value)),),
            )
        elif key in _SCALARS:
            name, type_, help_ = _SCALARS[key]
            out.add(name, type_, help_, value)
        elif key in _BY_REASON and isinstance(value, Mapping):
            name, label, help_ = _BY_REASON[key]
            for reason, n in value.items():
                out.add(name, "counter", help_, n, ((label, str(reason)),))
        elif key == "latency_us" and isinstance(value, Mapping):
            _latency(
                out,
                _LATENCY_NAME,
                "Frame-in to signal-packed latency over the last 65536 signals "
                "(CLOCK_MONOTONIC; quantile 1 is the maximum).",
                value,
            )
        elif key == "remote" and isinstance(value, Mapping):
            _remote(out, value)
        elif key in _SECTIONS and isinstance(value, Mapping):
            _section(out, key, value)
        else:
            _untyped(out, _name(key), value, ())
    for section, values in (extra or {}).items():
        _section(out, section, values)
    return out.text()


# -- the HTTP endpoint ----------------------------------------------------------------------


@dataclass(slots=True)
class MetricsCounters:
    """What the endpoint did."""

    requests: int = 0
    scrapes: int = 0
    bad_requests: int = 0
    render_errors: int = 0


_REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class MetricsServer:
    """``GET /metrics``, ``/healthz`` and ``/snapshot`` on a tiny asyncio HTTP/1.1 server.

    Each connection answers one request and closes (``Connection: close``). A request head
    larger than 8 KiB, not ending within 5 s, or not ``METHOD /path HTTP/1.x`` gets a 4xx and
    is counted; nothing a client sends can stop the server.
    """

    def __init__(
        self,
        render_text: Callable[[], str],
        healthy: Callable[[], bool],
        *,
        snapshot_json: Callable[[], bytes] | None = None,
        host: str = "127.0.0.1",
        port: int = 8630,
    ) -> None:
        self._render = render_text
        self._healthy = healthy
        self._snapshot_json = snapshot_json
        self.host = host
        self.port = port
        self.counters = MetricsCounters()
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Bind and listen (``OSError`` when the port is taken); port 0 picks a free one."""
        self._server = await asyncio.start_server(
            self._handle, self.host, self.port, limit=MAX_REQUEST_HEAD
        )

    @property
    def listening(self) -> bool:
        """Whether the server is bound (between :meth:`start` and :meth:`aclose`)."""
        return self._server is not None

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) actually bound."""
        assert self._server is not None, "metrics server not started"
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def aclose(self) -> None:
        """Stop listening and end open connections."""
        if self._server is None:
            return
        self._server.close()
        for task in list(self._conns):
            task.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._server.wait_closed()
        self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conns.add(task)
        try:
            status, ctype, body, head_only = await self._respond(reader)
            reason = _REASONS.get(status, "")
            head = (
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode("ascii")
            writer.write(head if head_only else head + body)
            await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if task is not None:
                self._conns.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _respond(self, reader: asyncio.StreamReader) -> tuple[int, str, bytes, bool]:
        self.counters.requests += 1
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            self.counters.bad_requests += 1
            return 431, "text/plain", b"request head too large\n", False
        except (asyncio.IncompleteReadError, TimeoutError):
            self.counters.bad_requests += 1
            return 400, "text/plain", b"incomplete request\n", False
        parts = raw.split(b"\r\n", 1)[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            self.counters.bad_requests += 1
            return 400, "text/plain", b"malformed request line\n", False
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            self.counters.bad_requests += 1
            return 405, "text/plain", b"GET or HEAD only\n", False
        head_only = method == b"HEAD"
        if target == b"/metrics":
            try:
                text = self._render()
            except Exception:
                self.counters.render_errors += 1
                log.exception("metrics rendering failed")
                return 500, "text/plain", b"rendering failed\n", head_only
            self.counters.scrapes += 1
            return 200, CONTENT_TYPE, text.encode("utf-8"), head_only
        if target == b"/healthz":
            try:
                ok = bool(self._healthy())
            except Exception:
                log.exception("health check failed")
                ok = False
            body = b"serving\n" if ok else b"not serving\n"
            return (200 if ok else 503), "text/plain", body, head_only
        if target == b"/snapshot" and self._snapshot_json is not None:
            try:
                return 200, "application/json", self._snapshot_json(), head_only
            except Exception:
                self.counters.render_errors += 1
                log.exception("snapshot failed")
                return 500, "text/plain", b"snapshot failed\n", head_only
        return 404, "text/plain", b"not found: /metrics, /healthz, /snapshot\n", head_only
