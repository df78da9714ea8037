"""Operations: the Prometheus metrics endpoint and the audit log of every signal.

The engine uses :class:`Monitor` only::

    monitor = Monitor(config.monitor, session=engine.session,
                      snapshot=engine.snapshot, serving=lambda: engine.serving)
    await monitor.start()            # after the outputs
    monitor.append(packed_view, m)   # every published batch (before the emission policies)
    await monitor.aclose()           # at stop: writes and converts everything appended

``append`` is the audit log's hot-path copy (or a no-op when the audit log is off); scrapes run
the snapshot on the event loop, never from the hot path.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from relentless_fast.config import MonitorSection
from relentless_fast.monitor.audit import AuditCounters, AuditLog, convert_journal, recover
from relentless_fast.monitor.metrics import MetricsServer, render

__all__ = [
    "AuditCounters",
    "AuditLog",
    "MetricsServer",
    "Monitor",
    "convert_journal",
    "recover",
    "render",
]

log = logging.getLogger(__name__)


def _no_audit(packed: memoryview, m: int) -> None:
    """``append`` when the audit log is off."""


class Monitor:
    """Metrics endpoint plus audit log, built from the ``[monitor]`` config section.

    Parameters
    ----------
    config:
        The ``[monitor]`` section.
    session:
        The engine session name (audit file names and the ``session`` column).
    snapshot:
        Returns the engine's counters (``Engine.snapshot``); called on each scrape.
    serving:
        True while the engine serves; ``/healthz`` answers 200 then, else 503.
    """

    def __init__(
        self,
        config: MonitorSection,
        *,
        session: str,
        snapshot: Callable[[], Mapping[str, Any]],
        serving: Callable[[], bool],
    ) -> None:
        self.config = config
        self._snapshot = snapshot
        self.audit: AuditLog | None = None
        self.append: Callable[[memoryview, int], None] = _no_audit
        """Log the first ``m`` signals of a packed batch (one copy; never blocks). Stable for the
        monitor's life (cache it); before :meth:`start` and after :meth:`aclose` it counts the
        signals as dropped."""
        if config.audit_enabled:
            self.audit = AuditLog(
                config.audit_dir,
                session,
                buffer_signals=config.audit_buffer_signals,
                flush_interval_ms=config.audit_flush_interval_ms,
                fsync_interval_s=config.audit_fsync_interval_s,
                rotate_signals=config.audit_rotate_signals,
            )
            self.append = self.audit.append
        self.metrics: MetricsServer | None = None
        if config.metrics_enabled:
            self.metrics = MetricsServer(
                self.render,
                serving,
                snapshot_json=self._snapshot_json,
                host=config.metrics_host,
                port=config.metrics_port,
            )
        self.metrics_error: str = ""
        """Why the metrics endpoint is not up (bind failure), empty when it is or is off."""

    async def start(self) -> None:
        """Open the audit log (off the loop), then bind the metrics endpoint.

        A port that cannot be bound raises ``OSError`` only with ``metrics_required``;
        otherwise it is logged and the engine runs without metrics.
        """
        if self.audit is not None:
            await asyncio.to_thread(self.audit.open)
        if self.metrics is not None:
            try:
                await self.metrics.start()
            except OSError as exc:
                if self.config.metrics_required:
                    await self.aclose()
                    raise
                self.metrics_error = str(exc)
                log.error(
                    "metrics endpoint %s:%d not started (%s); running without metrics",
                    self.config.metrics_host,
                    self.config.metrics_port,
                    exc,
                )
                self.metrics = None
            else:
                host, port = self.metrics.address
                log.info("metrics on http://%s:%d/metrics", host, port)

    async def aclose(self) -> None:
        """Stop the endpoint; write, fsync and convert everything appended (off the loop)."""
        if self.metrics is not None:
            await self.metrics.aclose()
        if self.audit is not None:
            await asyncio.to_thread(self.audit.close)

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        """(host, port) of the metrics endpoint, None when it is not up."""
        if self.metrics is None or not self.metrics.listening:
            return None
        return self.metrics.address

    def counters(self) -> dict[str, dict[str, int]]:
        """The monitor's own counters (``audit``, ``metrics``) as plain values."""
        out: dict[str, dict[str, int]] = {}
        if self.audit is not None:
            out["audit"] = dataclasses.asdict(self.audit.counters)
        if self.metrics is not None:
            out["metrics"] = dataclasses.asdict(self.metrics.counters)
        return out

    def render(self) -> str:
        """The ``/metrics`` text: the engine snapshot plus the monitor's own counters."""
        return render(self._snapshot(), self.counters())

    def _snapshot_json(self) -> bytes:
        snap = dict(self._snapshot())
        snap["monitor"] = self.counters()
        return (
            orjson.dumps(snap, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY) + b"\n"
        )
