"""The engine: raw feed frames in, 64-byte signals out, on one event loop.

Per frame (:meth:`Engine.on_frame`, the feed's sink call): the compiled parser writes the frame into
the rings; the feature kernel updates the touched symbols only; their feature rows go to the
micro-batcher in one bulk submit. Per batch (the batcher's dispatch): the rows are fused with the
current context in one gather (``global + the symbol's part``, read once, so a batch sees one
context version) and served by the inference pipeline. Per result: model outputs become absolute
prices and scaled fields in a preallocated record array, the Rust codec packs the whole batch in one
call, and the packed buffer goes to every output (UDP, TCP, callbacks, async iterators, gRPC
``Subscribe``). One sequence numbers the session's signals, 1-based, in emission order.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import gc
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Final, Self
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from relentless_fast._emit import LULD_FLAG, LULD_IGNORE, LULD_SUPPRESS, Emitter
from relentless_fast._features import FeatureKernel
from relentless_fast._tickparse import TickParser, TickRings
from relentless_fast.config import Config, ConfigError
from relentless_fast.context.store import ContextStore
from relentless_fast.engine.context_state import FusedContext
from relentless_fast.engine.halts import HaltTracker
from relentless_fast.feeds.base import BytesLike, Feed, FeedError, FeedState, FrameEncoding
from relentless_fast.inference.batch import (
    FLAG_CONTEXT_STALE,
    Batch,
    BatchResult,
    DropReason,
    InferenceCounters,
)
from relentless_fast.inference.batcher import LOOP_TIMER_RESOLUTION_US, MicroBatcher
from relentless_fast.inference.embedded import EmbeddedBackend, LiteRTModel
from relentless_fast.inference.pipeline import InferencePipeline, PipelineOptions
from relentless_fast.model_contract import OUTPUT_NAMES, load_contract, version_dir
from relentless_fast.outputs.udp import default_session
from relentless_fast.signals import SIGNAL_RECORD_DTYPE, SIGNAL_SIZE, pack_into
from relentless_fast.symbols import SymbolTable

log = logging.getLogger(__name__)

LATENCY_SAMPLES: Final = 1 << 16
_BATCH_SLOTS: Final = 4096
_LULD_POLICY: Final = {"flag": LULD_FLAG, "suppress": LULD_SUPPRESS, "ignore": LULD_IGNORE}


EXCHANGE_TZ: Final = ZoneInfo("America/New_York")


def exchange_today() -> dt.date:
    """Today's date at the exchange (context freshness is counted in its trading days)."""
    return dt.datetime.now(EXCHANGE_TZ).date()


def symbol_table(config: Config) -> SymbolTable:
    """The engine's symbol table: the saved file when configured, else ``engine.symbols``."""
    if config.engine.symbol_table_path:
        return SymbolTable.from_file(config.engine.symbol_table_path)
    return SymbolTable(config.engine.symbols)


def load_embedded(config: Config) -> EmbeddedBackend:
    """LiteRT models of the configured stable (and canary) versions, contract-checked."""
    ic = config.inference
    kwargs: dict[str, Any] = {"batch_sizes": ic.batch_sizes, "num_threads": ic.num_threads}
    stable_dir = version_dir(ic.model_base_path, ic.stable_version)
    load_contract(stable_dir).check_current()
    stable = LiteRTModel.from_version_dir(stable_dir, **kwargs)
    canary = None
    if ic.canary_version:
        canary_dir = version_dir(ic.model_base_path, ic.canary_version)
        load_contract(canary_dir).check_current()
        canary = LiteRTModel.from_version_dir(canary_dir, **kwargs)
    return EmbeddedBackend(stable, canary)


class SignalBatch:
    """One packed batch of signals handed to callbacks.

    .. DANGER::
       ``packed`` (and ``records``) are views of the engine's reusable buffers: valid only during
       the callback. Copy (``bytes(batch.packed)``) what must outlive it.
    """

    __slots__ = ("count", "first_sequence", "packed", "records")

    def __init__(
        self, packed: memoryview, records: npt.NDArray[np.void], first_sequence: int
    ) -> None:
        self.packed = packed
        """``count * 64`` bytes, signal layout v1."""
        self.records = records
        """The same signals as ``SIGNAL_RECORD_DTYPE`` records (native order)."""
        self.count = int(records.shape[0])
        self.first_sequence = first_sequence


@dataclass(slots=True)
class EngineCounters:
    """What the engine did (monotonic counts). Row-level counts (rows to the model, suppressed
    signals, latency samples) live in the engine's :class:`~relentless_fast._emit.Emitter`; the
    feed, parser, inference and outputs keep their own; :meth:`Engine.snapshot` has them all."""

    frames: int = 0
    frames_while_killed: int = 0
    frames_ignored: int = 0
    """Frames offered before :meth:`Engine.start` or after :meth:`Engine.stop` (not parsed)."""
    signals_emitted: int = 0
    discarded_killed: int = 0
    context_swaps: int = 0
    callback_errors: int = 0
    iterator_drops: int = 0
    """Batches an async-iterator consumer did not take in time (its queue was full)."""
    feed_errors: int = 0
    output_errors: int = 0
    """Batches a UDP/TCP output failed to take (logged; the other outputs still got them)."""


def latency_percentiles_us(ring: npt.NDArray[np.int64], count: int) -> dict[str, float]:
    """P50/P99/P99.9/max (µs) of the newest ``min(count, len(ring))`` samples (ns) of a ring."""
    n = min(count, ring.shape[0])
    if n == 0:
        return {}
    lat = ring[:n] / 1000.0
    p50, p99, p999 = np.percentile(lat, [50, 99, 99.9])
    return {"p50": float(p50), "p99": float(p99), "p99.9": float(p999), "max": float(lat.max())}


Listener = Callable[[SignalBatch], None]


class Engine:
    """The hot path as an embeddable object.

    Parameters
    ----------
    config:
        The configuration (defaults: :class:`~relentless_fast.config.Config`).
    feed:
        ``None`` builds the feed of ``[feed]``; ``False`` runs without one (the caller feeds
        frames through :meth:`on_frame`); or a factory ``sink -> Feed``.
    on_signals:
        Called with every :class:`SignalBatch` (zero-copy; see its lifetime note).
    embedded:
        A ready embedded backend (default: LiteRT on ``inference.model_base_path``).
    context_store:
        Where published contexts come from (default: ``[context]`` snapshot/Redis);
        ``False`` disables the watcher (use :meth:`set_context`).
    outputs:
        Start the UDP/TCP/gRPC outputs enabled in ``[outputs]`` (``False``: callbacks only).

    Use ``async with Engine(config) as engine: await engine.wait()`` on the caller's running
    loop; :func:`run_engine` owns a uvloop loop instead.
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        feed: Callable[[Engine], Feed] | bool | None = None,
        on_signals: Listener | None = None,
        embedded: EmbeddedBackend | None = None,
        context_store: ContextStore | bool | None = None,
        outputs: bool = True,
    ) -> None:
        self.config = config or Config()
        cfg = self.config
        self.table = symbol_table(cfg)
        n = len(self.table)
        self.session = cfg.engine.session or default_session()
        self.rings = TickRings(n, cfg.engine.ring_capacity)
        self.parser = TickParser(self.table, self.rings)
        self.kernel = FeatureKernel(
            self.rings,
            n,
            bars=cfg.features.bars,
            rate_tau_s=cfg.features.rate_tau_s,
            tz=cfg.features.tz,
        )
        self.halts = HaltTracker(self.parser, self.rings, n)
        self.embedded = embedded if embedded is not None else load_embedded(cfg)
        self.counters = EngineCounters()
        self.inference_counters = InferenceCounters()
        self._feed_arg = feed
        self._store_arg = context_store
        self._outputs_enabled = outputs
        self.feed: Feed | None = None
        self.udp: Any = None
        self.tcp: Any = None
        self.grpc: Any = None
        self.monitor: Any = None
        """The metrics endpoint and audit log (``[monitor]``), started with the outputs."""
        self._audit: Callable[[memoryview, int], None] = _no_audit
        self._listeners: list[Listener] = [on_signals] if on_signals is not None else []
        self._queues: list[asyncio.Queue[bytes | None]] = []
        self._context = FusedContext.neutral(n)
        self._killed = False
        self.kill_reason = ""
        self._started = False
        self._stopped = False
        self._done: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._feed_task: asyncio.Task[None] | None = None
        self._gc_was_frozen = False
        self._accepting = False
        self._loaded: Any = None
        """The published context in use (None: neutral)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._signal_installed: int | None = None
        self._health_listeners: list[Callable[[bool], None]] = []
        self.pipeline: InferencePipeline | None = None
        self.remote: Any = None
        self.batcher: MicroBatcher | None = None
        # preallocated per-row state
        qmax = max(
            cfg.inference.max_batch, cfg.inference.queue_rows, max(cfg.inference.batch_sizes)
        )
        self._records = np.zeros(qmax, SIGNAL_RECORD_DTYPE)
        self._packed = bytearray(qmax * SIGNAL_SIZE)
        self._packed_view = memoryview(self._packed)
        self.emitter = Emitter(
            self.kernel.features,
            self.kernel.last_price,
            self.kernel.event_ts_ns,
            self.halts.halted,
            self.halts.limit_up,
            self.halts.limit_down,
            self._records,
            strategy_id=cfg.engine.strategy_id,
            suppress_halted=cfg.engine.halt_policy == "suppress",
            luld_policy=_LULD_POLICY[cfg.engine.luld_policy],
            latency_samples=LATENCY_SAMPLES,
        )
        self.emitter.set_context(self._context.rows, self._context.version, self._context.stale)
        self._invokes: tuple[Callable[[], None], ...] = ()
        """Bucket ``Invoke`` calls of the embedded fast path (empty: the batcher path serves)."""
        self._model_version = self.embedded.version("stable")
        self._flush_each_frame = cfg.inference.flush_each_frame
        self._burst_pending = False
        self._flushing = False
        """True while a burst's signals are produced and published (re-entry is deferred)."""
        self._batch_ctx_version = np.zeros(_BATCH_SLOTS, np.uint32)
        self._sequence = 0
        parse = self.parser.parse_json
        self._parse_json, self._parse_msgpack = parse, self.parser.parse_msgpack
        self._parse = parse

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Warm up, open outputs, load the context, start the feed; then freeze the GC."""
        if self._started:
            raise RuntimeError("engine already started")
        self._started = True
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._done = asyncio.Event()
        ic = self.config.inference
        self.remote = await self._start_remote()
        router = None
        if ic.canary_fraction > 0:
            from relentless_fast.inference.routing import CanaryRouter

            router = CanaryRouter(self.table.symbols, ic.canary_fraction)
        self.pipeline = InferencePipeline(
            on_result=self._on_result,
            embedded=self.embedded,
            remote=self.remote,
            router=router,
            options=PipelineOptions(deadline_ms=ic.deadline_ms, late_grace_ms=ic.late_grace_ms),
            counters=self.inference_counters,
        )
        self.batcher = MicroBatcher(
            n_symbols=len(self.table),
            n_features=self.embedded.n_features,
            context_dim=self.embedded.context_dim,
            window_us=ic.window_us,
            max_batch=ic.max_batch,
            queue_rows=ic.queue_rows,
            coalesce=ic.coalesce,
            dispatch=self._dispatch,
            has_capacity=self.pipeline.has_capacity,
            counters=self.inference_counters,
            loop=loop,
        )
        self.pipeline.on_capacity = self.batcher.on_capacity
        if self.remote is None and router is None and ic.window_us < LOOP_TIMER_RESOLUTION_US:
            self._bind_fast_path()
        try:
            await self.pipeline.warmup()
        except Exception as exc:  # the remote is down: start on the embedded fallback
            if self.remote is None:
                raise
            log.error("remote backend warm-up failed (%s); embedded fallback serves", exc)
            self.embedded.warmup()
        self._load_initial_context()
        if self._outputs_enabled:
            await self._start_outputs()
            await self._start_monitor()
        self._install_kill_signal(loop)
        if self.config.engine.busy_poll:
            loop.call_soon(self._spin)
        self._accepting = True
        self._start_feed()
        if self.config.engine.gc_freeze:
            self._gc_was_frozen = gc.get_freeze_count() > 0
            gc.collect()
            gc.freeze()
        self._notify_health()

    def _bind_fast_path(self) -> None:
        """Embedded stable model, no canary, sub-millisecond window: a burst's rows go straight
        into a LiteRT bucket's input tensors and its outputs straight into signal records (the
        batcher would dispatch them at once anyway; see docs/engine.md)."""
        buckets = self.embedded.models["stable"].buckets
        for b in buckets:
            self.emitter.add_bucket(b.ticks, b.context, tuple(b.outputs[n] for n in OUTPUT_NAMES))
        self._invokes = tuple(b.invoke for b in buckets)

    async def _start_remote(self) -> Any:
        """The TF Serving gRPC backend when ``inference.backend = "grpc"`` (embedded: fallback)."""
        ic = self.config.inference
        if ic.backend != "grpc":
            return None
        from relentless_fast.inference.grpc_backend import GrpcBackend

        versions = {"stable": ic.stable_version}
        if ic.canary_version:
            versions["canary"] = ic.canary_version
        remote = GrpcBackend(
            ic.grpc_target,
            n_features=self.embedded.n_features,
            context_dim=self.embedded.context_dim,
            labels=(),
            versions=versions,
        )
        await remote.start()
        return remote

    async def _start_outputs(self) -> None:
        out = self.config.outputs
        if out.udp.enabled:
            from relentless_fast.outputs.udp import UdpPublisher, UdpPublisherConfig

            u = out.udp
            self.udp = UdpPublisher(
                UdpPublisherConfig(
                    host=u.host,
                    port=u.port,
                    session=self.session,
                    max_datagram_bytes=u.max_datagram_bytes,
                    heartbeat_interval_s=u.heartbeat_interval_s,
                    window_signals=u.window_signals,
                    rerequest_host="127.0.0.1" if u.host.startswith("127.") else "0.0.0.0",
                    rerequest_port=None if u.rerequest_port < 0 else u.rerequest_port,
                    multicast_interface=u.multicast_interface or None,
                    emission=u.emission,  # type: ignore[arg-type]
                )
            )
            await self.udp.start()
        if out.tcp.enabled:
            from relentless_fast.outputs.tcp import TcpPublisher, TcpPublisherConfig

            t = out.tcp
            username, password = t.credentials()
            self.tcp = TcpPublisher(
                TcpPublisherConfig(
                    host=t.host,
                    port=t.port,
                    session=self.session,
                    username=username,
                    password=password,
                    window_signals=t.window_signals,
                    heartbeat_interval_s=t.heartbeat_interval_s,
                    client_timeout_s=t.client_timeout_s,
                    max_client_buffer_bytes=t.max_client_buffer_bytes,
                    emission=t.emission,  # type: ignore[arg-type]
                )
            )
            await self.tcp.start()
        if out.grpc.enabled:
            from relentless_fast.engine.grpc_service import EngineGrpcServer

            self.grpc = EngineGrpcServer(self, host=out.grpc.host, port=out.grpc.port)
            await self.grpc.start()

    async def _start_monitor(self) -> None:
        from relentless_fast.monitor import Monitor

        self.monitor = Monitor(
            self.config.monitor,
            session=self.session,
            snapshot=self.snapshot,
            serving=lambda: self.serving,
        )
        await self.monitor.start()
        self._audit = self.monitor.append

    def _start_feed(self) -> None:
        arg = self._feed_arg
        if arg is False:
            return
        if arg is None or arg is True:
            from relentless_fast.engine.sources import build_feed

            self.feed = build_feed(self.config, self)
        else:
            self.feed = arg(self)
        if self.feed.replays_recording:  # a recorded day is a reproducible test case
            self._flush_each_frame = True
        self.use_encoding(self.feed.encoding)
        self._feed_task = self._spawn(self._run_feed(self.feed))

    def use_encoding(self, encoding: FrameEncoding) -> None:
        """Which parser entry point :meth:`on_frame` uses (the feed's encoding)."""
        if encoding is FrameEncoding.MSGPACK:
            self._parse = self._parse_msgpack
        elif encoding is FrameEncoding.JSON:
            self._parse = self._parse_json
        else:
            raise ValueError(f"the engine parses Alpaca JSON or msgpack, not {encoding.name}")

    async def _run_feed(self, feed: Feed) -> None:
        try:
            await feed.run()
        except Exception as exc:
            log.error("feed stopped: %s", exc)
            self.counters.feed_errors += 1
        finally:
            assert self.batcher is not None
            if not self._stopped:
                self.batcher.flush()
            if self._done is not None:
                self._done.set()

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def wait(self) -> None:
        """Until the feed ends (a finite source) or :meth:`stop` is called."""
        assert self._done is not None, "engine not started"
        await self._done.wait()

    async def stop(self) -> None:
        """Stop the feed, flush and serve what is pending, send end of session, close outputs."""
        if self._stopped or not self._started:
            return
        self._stopped = True
        if self.feed is not None:
            self.feed.stop()
        self._flush_burst()  # frames already handled still get their signals
        self._accepting = False
        if self._feed_task is not None and not self._feed_task.done():
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._feed_task), 5.0)
        assert self.batcher is not None and self.pipeline is not None
        if not self._killed:
            self.batcher.flush()
            await self.pipeline.drain()
        self.batcher.close()
        await self.pipeline.close()
        if self.remote is not None:
            await self.remote.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._remove_kill_signal()
        self._notify_health()
        for q in self._queues:
            _put_nowait_dropping(q, None)
        await self._close_outputs()
        if self.config.engine.gc_freeze and not self._gc_was_frozen:
            gc.unfreeze()  # only what we froze: an embedding process's own freeze stays
        if self._done is not None:
            self._done.set()

    async def _close_outputs(self) -> None:
        """gRPC, then UDP/TCP (end of session), then the monitor (the audit log written)."""
        if self.grpc is not None:
            await self.grpc.stop()
        if self.udp is not None:
            await self.udp.aclose()
        if self.tcp is not None:
            await self.tcp.aclose()
        if self.monitor is not None:
            await self.monitor.aclose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- state ----------------------------------------------------------------------------

    @property
    def serving(self) -> bool:
        """Started, not stopped, kill switch not tripped (the gRPC health status)."""
        return self._started and not self._stopped and not self._killed

    @property
    def killed(self) -> bool:
        return self._killed

    @property
    def context(self) -> FusedContext:
        """The context the next batch will use."""
        return self._context

    @property
    def sequence(self) -> int:
        """Sequence of the last signal emitted (0 before the first)."""
        return self._sequence

    def kill(self, reason: str = "") -> None:
        """Stop emitting at once; keep consuming the feed (state stays current). Latches."""
        if self._killed:
            return
        self._killed = True
        self.kill_reason = reason or "kill switch"
        log.warning("KILL SWITCH: %s; no further signals this session", self.kill_reason)
        self.counters.discarded_killed += self.emitter.discard()
        if self.batcher is not None:
            self.batcher.close()  # pending rows are dropped (counted as shutdown)
        self._notify_health()

    def add_health_listener(self, listener: Callable[[bool], None]) -> None:
        self._health_listeners.append(listener)

    def _notify_health(self) -> None:
        serving = self.serving
        for listener in self._health_listeners:
            try:
                listener(serving)
            except Exception:
                log.exception("health listener failed")

    def set_context(self, context: FusedContext) -> None:
        """Swap the context; batches dispatched from now on use it (one assignment)."""
        if context.rows.shape != self._context.rows.shape:
            raise ValueError(
                f"context rows {context.rows.shape}, engine needs {self._context.rows.shape}"
            )
        self._context = context
        self.emitter.set_context(context.rows, context.version, context.stale)
        self.counters.context_swaps += 1
        log.info("context v%d in use (stale=%s)", context.version, context.stale)

    def _load_initial_context(self) -> None:
        store = self._make_store()
        if store is None:
            return
        try:
            loaded = store.latest()
        except Exception as exc:
            log.warning("context: no readable context at start (%s); neutral context", exc)
            loaded = None
        after = 0
        if loaded is not None:
            self.set_context(self._fuse(loaded))
            self._loaded = loaded
            after = loaded.version
        self._spawn(self._watch_context(store, after))
        self._spawn(self._watch_staleness())

    def _make_store(self) -> ContextStore | None:
        arg = self._store_arg
        if arg is False:
            return None
        if isinstance(arg, ContextStore):
            return arg
        cc = self.config.context
        if not cc.snapshot_path and not cc.redis_url:
            return None
        return ContextStore(
            snapshot_path=cc.snapshot_path or None, redis_url=cc.redis_url, prefix=cc.redis_prefix
        )

    def _fuse(self, loaded: Any) -> FusedContext:
        return FusedContext.from_loaded(
            loaded,
            self.table,
            today=exchange_today(),
            max_trading_days=self.config.engine.context_max_trading_days,
        )

    async def _watch_context(self, store: ContextStore, after: int) -> None:
        while True:
            try:
                async for loaded in store.updates(after):
                    after = loaded.version
                    # fusing walks the context's symbols: off the loop, then one assignment on it
                    fused = await asyncio.to_thread(self._fuse, loaded)
                    self._loaded = loaded
                    self.set_context(fused)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("context watcher: %s; retrying", exc)
                await asyncio.sleep(1.0)

    def refresh_staleness(self, today: dt.date | None = None) -> bool:
        """Flag the current context stale once it is too many trading days old (the engine
        checks every minute); True when the flag changed."""
        loaded, ctx = self._loaded, self._context
        if loaded is None or ctx.version != loaded.version:
            return False
        max_days = self.config.engine.context_max_trading_days
        stale = not loaded.is_fresh(today or exchange_today(), max_days)
        if stale == ctx.stale:
            return False
        self.set_context(dataclasses.replace(ctx, stale=stale))
        return True

    async def _watch_staleness(self, every_s: float = 60.0) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                loaded = self._loaded
                if loaded is not None:  # the calendar lookup runs off the loop
                    await asyncio.to_thread(loaded.is_fresh, exchange_today())
                self.refresh_staleness()
            except Exception as exc:
                log.warning("context staleness check failed: %s", exc)

    # -- outputs --------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener`` with every packed batch (zero-copy view)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    def signals(self, max_batches: int = 4096) -> AsyncIterator[bytes]:
        """Packed batches (``n * 64`` bytes, copies) from now until the session ends.

        The subscription starts when this is called (before :meth:`start` to see every
        signal). A consumer that falls ``max_batches`` behind loses the oldest (counted in
        ``counters.iterator_drops``).
        """
        q: asyncio.Queue[bytes | None] = asyncio.Queue(max_batches)
        self._queues.append(q)
        return self._drain(q)

    async def _drain(self, q: asyncio.Queue[bytes | None]) -> AsyncIterator[bytes]:
        try:
            while True:
                item = await q.get()
                if item is None:
                    return
                yield item
        finally:
            self._queues.remove(q)

    # -- hot path ---------------------------------------------------------------------------

    def on_frame(self, payload: BytesLike, recv_ts_ns: int) -> None:
        """One raw data frame (the feed's sink call); ``payload`` is only read during the call."""
        t0 = time.perf_counter_ns()
        counters = self.counters
        if not self._accepting:  # before start() or after stop(): not parsed
            counters.frames_ignored += 1
            return
        counters.frames += 1
        n = self._parse(payload)
        if n == 0:
            return
        touched = self.parser.touched
        self.kernel.update(touched, n)
        self.halts.update(touched[:n])
        if self._killed:
            counters.frames_while_killed += 1
            return
        # Mark the symbols; their rows go out once, in bulk, when the loop iteration's callbacks
        # are done (a read burst), each with its symbol's newest state; or now, per frame.
        self.emitter.mark(touched, n, t0)
        if self._flush_each_frame:
            self._flush_burst()
        elif not self._burst_pending and self._loop is not None:
            self._burst_pending = True
            self._loop.call_soon(self._on_burst_end)

    def _flush_burst(self) -> None:
        """One row per symbol marked since the last burst: through the embedded fast path, or
        submitted to the micro-batcher in one call, which then ends its burst."""
        emitter = self.emitter
        if self._killed:
            self.counters.discarded_killed += emitter.discard()
            return
        if self._flushing:  # a listener fed a frame while its batch is published: next turn
            if not self._burst_pending and self._loop is not None:
                self._burst_pending = True
                self._loop.call_soon(self._on_burst_end)
            return
        self._flushing = True
        try:
            self._flush_marked(emitter)
        finally:
            self._flushing = False

    def _flush_marked(self, emitter: Emitter) -> None:
        batcher = self.batcher
        if self._invokes and (batcher is None or not batcher.pending):
            self._run_fast_path()
            return
        if batcher is None:
            return
        n = emitter.collect()
        if n == 0:
            batcher.end_of_burst()
            return
        sym = emitter.ids[:n].copy()
        kernel = self.kernel
        batcher.submit_burst(sym, kernel.features[sym], kernel.event_ts_ns[sym])
        if self._flush_each_frame:
            batcher.flush()  # whatever the window: the frame's rows leave before the next frame

    def _run_fast_path(self) -> None:
        """Stage the marked rows into a bucket, invoke it, fill and publish the signals; chunks
        of the largest bucket's size when more rows are marked."""
        emitter = self.emitter
        k = emitter.stage()
        while k >= 0:
            try:
                self._invokes[k]()
            except Exception:
                self.inference_counters.drop(DropReason.BACKEND_ERROR, emitter.staged)
                log.exception("embedded backend failed on %d rows", emitter.staged)
            else:
                seq0 = self._sequence
                m = emitter.finish(
                    seq0, time.time_ns(), time.perf_counter_ns(), self._model_version
                )
                if m:
                    self._sequence = seq0 + m
                    self._emit(m, seq0 + 1)
            k = emitter.stage_next()

    def _spin(self) -> None:
        """One ready callback per loop iteration: the loop polls I/O without sleeping."""
        if not self._stopped and self._loop is not None:
            self._loop.call_soon(self._spin)

    def _on_burst_end(self) -> None:
        self._burst_pending = False
        self._flush_burst()

    def end_of_burst(self) -> None:
        """Submit the rows of the frames handled since the last burst and let the batcher
        flush (the engine does this itself at the end of each loop iteration with frames;
        callers feeding :meth:`on_frame` directly may call it sooner)."""
        self._flush_burst()

    def on_state(self, state: FeedState, detail: str) -> None:
        """Feed state changes are logged; STALE and FAILED also at warning level."""
        level = logging.WARNING if state in (FeedState.STALE, FeedState.FAILED) else logging.INFO
        log.log(level, "feed %s: %s", state.name, detail)

    def on_error(self, error: FeedError) -> None:
        self.counters.feed_errors += 1

    def _dispatch(self, batch: Batch) -> None:
        """Fuse the batch with the context current now (one gather), then serve it."""
        ctx = self._context
        np.take(ctx.rows, batch.symbol_ids, axis=0, out=batch.context)
        if ctx.stale:
            batch.flags |= np.uint16(FLAG_CONTEXT_STALE)
        self._batch_ctx_version[batch.seq % _BATCH_SLOTS] = ctx.version
        assert self.pipeline is not None
        self.pipeline.dispatch(batch)

    def _on_result(self, result: BatchResult) -> None:
        """Signals from a batch served through the batcher and pipeline."""
        n = len(result)
        if self._killed:
            self.counters.discarded_killed += n
            return
        out = result.outputs
        seq0 = self._sequence
        probs, conf, target, stop, size, risk, urgency = (
            np.ascontiguousarray(out[name], np.float32) for name in OUTPUT_NAMES
        )
        m = self.emitter.fill(
            np.ascontiguousarray(result.symbol_ids, np.int32),
            np.ascontiguousarray(result.flags, np.uint16),
            probs,
            conf,
            target,
            stop,
            size,
            risk,
            urgency,
            context_version=int(self._batch_ctx_version[result.batch_seq % _BATCH_SLOTS]),
            model_version=result.model_version,
            seq0=seq0,
            emit_ts_ns=time.time_ns(),
            now_ns=time.perf_counter_ns(),
        )
        if m:
            self._sequence = seq0 + m
            self._emit(m, seq0 + 1)

    def _emit(self, m: int, first_seq: int) -> None:
        """Pack ``records[:m]`` (one Rust call) and hand the batch to every output."""
        rec = self._records[:m]
        nbytes = pack_into(rec, self._packed)
        self.counters.signals_emitted += m
        # the buffers are in use until every output has the batch: a frame a listener feeds
        # back is answered afterwards (also for a remote result, which arrives outside a flush)
        publishing, self._flushing = self._flushing, True
        try:
            self._publish(rec, nbytes, m, first_seq)
        finally:
            self._flushing = publishing

    def _publish(self, rec: npt.NDArray[np.void], nbytes: int, m: int, first_seq: int) -> None:
        self._audit(self._packed_view, m)  # every signal, before any output's emission policy
        for output in (self.udp, self.tcp):
            if output is not None:
                try:
                    output.publish(self._packed, m)
                except Exception:  # one failing output never stops the others nor the loop
                    self.counters.output_errors += 1
                    log.exception("%s publish failed", type(output).__name__)
        view = self._packed_view[:nbytes]
        if self._listeners:
            batch = SignalBatch(view, rec, first_seq)
            for listener in self._listeners:
                try:
                    listener(batch)
                except Exception:
                    self.counters.callback_errors += 1
                    log.exception("signal listener failed")
        if self._queues:
            data = bytes(view)
            for q in self._queues:
                if not _put_nowait_dropping(q, data):
                    self.counters.iterator_drops += 1

    # -- kill switch by signal ----------------------------------------------------------------

    def _install_kill_signal(self, loop: asyncio.AbstractEventLoop) -> None:
        name = self.config.engine.kill_signal
        if not name:
            return
        signum = int(getattr(signal, name))
        try:
            loop.add_signal_handler(signum, self.kill, f"signal {name}")
        except (RuntimeError, ValueError, NotImplementedError) as exc:
            log.warning("kill switch signal %s not installed: %s", name, exc)
            return
        self._signal_installed = signum

    def _remove_kill_signal(self) -> None:
        if self._signal_installed is not None and self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_signal_handler(self._signal_installed)
            self._signal_installed = None

    # -- reporting ----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Every counter as plain values (engine, parser, inference, outputs)."""
        c = self.counters
        em = self.emitter
        ic = self.inference_counters
        parser = self.parser
        snap: dict[str, Any] = {
            "session": self.session,
            "serving": self.serving,
            "killed": self._killed,
            "frames": c.frames,
            "ticks": int(parser.record_counts.sum()),
            "parser_drops": {k: v for k, v in parser.drops().items() if v},
            "rows_submitted": em.rows,
            "rows_coalesced": ic.rows_coalesced + em.merged,
            "inference_drops": {r.name.lower(): v for r, v in ic.dropped.items() if v},
            "batches": ic.batches_dispatched + em.batches,
            "signals": c.signals_emitted,
            "last_sequence": self._sequence,
            "suppressed": {
                "halted": em.suppressed_halted,
                "luld": em.suppressed_luld,
                "no_price": em.suppressed_no_price,
                "killed": c.discarded_killed,
            },
            "context_version": self._context.version,
            "context_stale": self._context.stale,
            "context_swaps": c.context_swaps,
            "latency_us": latency_percentiles_us(em.latency_ns, em.latency_count),
            "errors": {
                "feed": c.feed_errors,
                "callback": c.callback_errors,
                "output": c.output_errors,
                "iterator_drop": c.iterator_drops,
            },
            "rows_fallback": ic.rows_fallback,
        }
        if self.remote is not None and self.pipeline is not None:
            stats = self.pipeline.label_stats
            snap["remote"] = {
                label: {
                    "calls": st.calls,
                    "errors": dict(st.errors),
                    "latency_us": {
                        k.removesuffix("_ns"): v / 1000 for k, v in st.percentiles_ns().items()
                    },
                }
                for label, st in stats.items()
                if st.calls
            }
        if self.udp is not None:
            snap["udp"] = dict(_fields(self.udp.counters))
        if self.tcp is not None:
            snap["tcp"] = dict(_fields(self.tcp.counters))
        if self.feed is not None:
            snap["feed"] = dict(_fields(self.feed.counters))
            alpaca = getattr(self.feed, "alpaca_counters", None)  # subscription changes, auth
            if alpaca is not None:
                snap["feed"].update(_fields(alpaca))
        return snap


def _no_audit(packed: memoryview, m: int) -> None:
    """The audit hook while no monitor runs."""


def _fields(obj: Any) -> list[tuple[str, Any]]:
    names = getattr(obj, "__slots__", None) or list(vars(obj))
    return [(n, getattr(obj, n)) for n in names if not n.startswith("_")]


def _put_nowait_dropping(q: asyncio.Queue[bytes | None], item: bytes | None) -> bool:
    """Put ``item``; when full, drop the oldest first. False when something was dropped."""
    try:
        q.put_nowait(item)
        return True
    except asyncio.QueueFull:
        with contextlib.suppress(asyncio.QueueEmpty):
            q.get_nowait()
        q.put_nowait(item)
        return False


def set_cpu_affinity(cpus: tuple[int, ...]) -> None:
    """Pin every thread of this process to ``cpus`` (no-op when empty or unsupported).

    Threads started earlier (numpy's BLAS pool, library workers) are pinned too, and threads
    started later inherit the affinity. A CPU this process may not use is a
    :class:`~relentless_fast.config.ConfigError` naming ``engine.cpu_affinity``.
    """
    if not cpus or not hasattr(os, "sched_setaffinity"):
        return
    allowed = os.sched_getaffinity(0)
    bad = sorted(set(cpus) - allowed)
    if bad:
        here = sorted(allowed)
        raise ConfigError("engine.cpu_affinity", f"CPU {bad[0]} is not available (allowed: {here})")
    try:
        threads = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        threads = [0]
    for tid in threads:
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            os.sched_setaffinity(tid, set(cpus))


def new_event_loop(kind: str = "uvloop") -> asyncio.AbstractEventLoop:
    """A uvloop loop (``kind='uvloop'``, when installed) or a plain asyncio loop."""
    if kind == "uvloop":
        try:
            import uvloop

            return uvloop.new_event_loop()
        except ImportError:  # pragma: no cover - uvloop is a dependency
            log.warning("uvloop not installed; using asyncio's loop")
    return asyncio.new_event_loop()


def run_engine(config: Config, *, seconds: float | None = None, **kwargs: Any) -> dict[str, Any]:
    """Own a loop (uvloop by default), pin CPUs if configured, run until the feed ends,
    ``seconds`` pass or SIGINT/SIGTERM; then shut down cleanly. Returns the final counters."""
    set_cpu_affinity(config.engine.cpu_affinity)
    loop = new_event_loop(config.engine.event_loop)
    try:
        return loop.run_until_complete(_run(config, seconds, **kwargs))
    finally:
        loop.close()


async def _run(config: Config, seconds: float | None, **kwargs: Any) -> dict[str, Any]:
    engine = Engine(config, **kwargs)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(RuntimeError, ValueError, NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with engine:
        waiters = {loop.create_task(engine.wait()), loop.create_task(stop.wait())}
        _done, pending = await asyncio.wait(
            waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED
        )
        for t in pending:
            t.cancel()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(Exception):
            loop.remove_signal_handler(sig)
    return engine.snapshot()
