"""gRPC backend: TF Serving's ``PredictionService/Predict`` over a pool of pre-connected channels.

No TensorFlow: requests are encoded by :mod:`.wire` and sent as raw bytes through a generic unary
call (``request_serializer=None``), responses decoded by :mod:`.wire`. Each channel is created
and connected at :meth:`GrpcBackend.start` (warm), keeps its connection alive with HTTP/2 pings,
and balances ``round_robin`` over every address its target resolves to (a DNS name with several
A records, or a static ``ipv4:host:port,host:port`` list). Each channel owns its subchannels
(``grpc.use_local_subchannel_pool``), so the pool really holds several connections.

At most ``max_in_flight_per_channel`` batches are in flight on one channel; :meth:`has_capacity`
lets the micro-batcher hold rows (and coalesce them) instead of queueing calls without bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import grpc
import grpc.aio
import numpy as np
import numpy.typing as npt

from relentless_fast.inference.batch import LABEL_CANARY, LABEL_STABLE, Outputs
from relentless_fast.inference.wire import PredictRequestEncoder, PredictResponseDecoder
from relentless_fast.model_contract import INPUT_CONTEXT, INPUT_TICKS, MODEL_NAME, SIGNATURE_NAME

PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"


@dataclass(frozen=True, kw_only=True)
class GrpcOptions:
    """Connection settings (units in the names)."""

    channels: int = 2
    max_in_flight_per_channel: int = 4
    connect_timeout_s: float = 5.0
    keepalive_time_ms: int = 10_000
    keepalive_timeout_ms: int = 5_000
    reconnect_backoff_initial_ms: int = 100
    reconnect_backoff_max_ms: int = 1_000
    lb_policy: str = "round_robin"
    max_message_bytes: int = 64 * 1024 * 1024

    def channel_args(self) -> list[tuple[str, int | str]]:
        return [
            ("grpc.lb_policy_name", self.lb_policy),
            ("grpc.use_local_subchannel_pool", 1),
            ("grpc.keepalive_time_ms", self.keepalive_time_ms),
            ("grpc.keepalive_timeout_ms", self.keepalive_timeout_ms),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.initial_reconnect_backoff_ms", self.reconnect_backoff_initial_ms),
            ("grpc.min_reconnect_backoff_ms", self.reconnect_backoff_initial_ms),
            ("grpc.max_reconnect_backoff_ms", self.reconnect_backoff_max_ms),
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.max_send_message_length", self.max_message_bytes),
        ]


class _Channel:
    __slots__ = ("channel", "in_flight", "predict")

    def __init__(self, target: str, options: GrpcOptions) -> None:
        self.channel = grpc.aio.insecure_channel(target, options=options.channel_args())
        self.predict = self.channel.unary_unary(
            PREDICT_METHOD, request_serializer=None, response_deserializer=None
        )
        self.in_flight = 0


class GrpcBackend:
    """Predict calls to TF Serving (or ``relentless-fast serve-model``) by label or version.

    Parameters
    ----------
    target:
        gRPC target: ``host:port``, ``dns:///name:port`` or ``ipv4:a:p,b:p`` (round robin over
        every resolved address).
    n_features, context_dim:
        Row widths of ``ticks`` and ``context``.
    labels:
        Labels requests can be sent for (TF Serving's ``version_labels``).
    versions:
        Optional ``{label: version}``: these labels select a version number instead (requests
        carry ``model_spec.version``; the others carry ``version_label``).
    """

    name = "grpc"

    def __init__(
        self,
        target: str,
        *,
        n_features: int,
        context_dim: int,
        model_name: str = MODEL_NAME,
        signature_name: str = SIGNATURE_NAME,
        labels: Sequence[str] = (LABEL_STABLE, LABEL_CANARY),
        versions: Mapping[str, int] | None = None,
        options: GrpcOptions | None = None,
    ) -> None:
        self.target = target
        self.options = options or GrpcOptions()
        if self.options.channels < 1 or self.options.max_in_flight_per_channel < 1:
            raise ValueError("need at least one channel and one in-flight batch per channel")
        self.n_features = n_features
        self.context_dim = context_dim
        inputs = {INPUT_TICKS: (n_features,), INPUT_CONTEXT: (context_dim,)}
        self.versions = dict(versions or {})
        self._encoders = {
            label: PredictRequestEncoder(
                model_name,
                inputs,
                version=self.versions.get(label),
                version_label=None if label in self.versions else label,
                signature_name=signature_name,
            )
            for label in dict.fromkeys([*labels, *self.versions])
        }
        self._decoder = PredictResponseDecoder()
        self._channels: list[_Channel] = []
        self._next = 0

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self._encoders)

    @property
    def in_flight(self) -> int:
        return sum(ch.in_flight for ch in self._channels)

    async def start(self) -> None:
        """Open every channel and wait until each is connected (raises ``ConnectionError``)."""
        self._channels = [_Channel(self.target, self.options) for _ in range(self.options.channels)]
        try:
            await asyncio.wait_for(
                asyncio.gather(*(ch.channel.channel_ready() for ch in self._channels)),
                self.options.connect_timeout_s,
            )
        except TimeoutError:
            await self.close()
            raise ConnectionError(
                f"gRPC target {self.target!r} not ready within {self.options.connect_timeout_s}s"
            ) from None

    async def close(self) -> None:
        channels, self._channels = self._channels, []
        await asyncio.gather(*(ch.channel.close(None) for ch in channels))

    def has_capacity(self) -> bool:
        """Whether some channel has room for another batch."""
        limit = self.options.max_in_flight_per_channel
        return any(ch.in_flight < limit for ch in self._channels)

    def _pick(self) -> _Channel:
        """The least loaded channel, round robin among equals."""
        n = len(self._channels)
        if n == 0:
            raise ConnectionError("GrpcBackend used before start() or after close()")
        best = self._channels[self._next % n]
        for i in range(1, n):
            ch = self._channels[(self._next + i) % n]
            if ch.in_flight < best.in_flight:
                best = ch
        self._next += 1
        return best

    async def predict(
        self,
        label: str,
        ticks: npt.NDArray[np.float32],
        context: npt.NDArray[np.float32],
        timeout_s: float,
    ) -> tuple[Outputs, int]:
        """Outputs and the version that served them (from the response's ``model_spec``).

        Raises ``grpc.aio.AioRpcError`` on any non-OK status.
        """
        request = self._encoders[label].encode(ticks, context)
        ch = self._pick()
        ch.in_flight += 1
        try:
            raw: bytes = await ch.predict(request, timeout=timeout_s)
        finally:
            ch.in_flight -= 1
        response = self._decoder.decode(raw)
        version = response.model_spec.version
        if version is None:
            version = self.versions.get(label, 0)
        return response.outputs, version

    async def warmup(self, batch_sizes: Sequence[int], timeout_s: float = 10.0) -> None:
        """One call per label and allowed batch size (zeros), before the engine reports ready."""
        for label in self._encoders:
            for size in batch_sizes:
                await self.predict(
                    label,
                    np.zeros((size, self.n_features), np.float32),
                    np.zeros((size, self.context_dim), np.float32),
                    timeout_s,
                )


def status_name(exc: BaseException) -> str:
    """gRPC status name of an error (``DEADLINE_EXCEEDED``, ``UNAVAILABLE``...) or its type."""
    if isinstance(exc, grpc.aio.AioRpcError):
        return str(exc.code().name)
    if isinstance(exc, TimeoutError):
        return "DEADLINE_EXCEEDED"
    return type(exc).__name__
