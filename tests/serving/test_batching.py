"""BatchScheduler semantics (no TensorFlow): padding, splitting, timeout, queue bound."""

from __future__ import annotations

import threading
from collections.abc import Mapping

import grpc
import numpy as np
import pytest

from relentless_fast.serving.batching import BatchScheduler
from relentless_fast.serving.config import BatchingOptions
from relentless_fast.serving.errors import QUEUE_FULL, ServingError


class Recorder:
    """A run function that records the batch sizes it saw and can be held at a gate."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Semaphore(0)

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.entered.release()
        self.gate.wait(10)
        x = inputs["x"]
        self.sizes.append(len(x))
        return {"y": x * 2.0 + 1.0, "s": x.sum(axis=1)}


def opts(**kw: object) -> BatchingOptions:
    base: dict[str, object] = {
        "max_batch_size": 8,
        "batch_timeout_micros": 20_000,
        "max_enqueued_batches": 2,
        "num_batch_threads": 1,
        "allowed_batch_sizes": (2, 4, 8),
    }
    base.update(kw)
    return BatchingOptions(**base)  # type: ignore[arg-type]


def rows(n: int, start: float) -> dict[str, np.ndarray]:
    return {"x": (start + np.arange(n * 3, dtype=np.float32)).reshape(n, 3)}


def test_tasks_merge_pad_and_split() -> None:
    """1 + 2 rows share a batch, closed when a 6-row task cannot join (padded 3 -> 4); the 6-row
    task and a 2-row one fill the next batch exactly (8). No timeout is involved."""
    rec = Recorder()
    s = BatchScheduler(rec, opts(batch_timeout_micros=3_600_000_000, max_enqueued_batches=4))
    try:
        tasks = [rows(1, 0.0), rows(2, 100.0), rows(6, 200.0), rows(2, 300.0)]
        futs = [s.submit(t, len(t["x"])) for t in tasks]
        for t, f in zip(tasks, futs, strict=True):
            r = f.result(30)
            np.testing.assert_array_equal(r["y"], t["x"] * 2 + 1)
            np.testing.assert_array_equal(r["s"], t["x"].sum(axis=1))
        assert rec.sizes == [4, 8]
        assert s.stats.padded_rows == 1 and s.stats.tasks == 4 and s.stats.batches == 2
    finally:
        s.stop()


def test_full_batch_runs_without_waiting_for_the_timeout() -> None:
    rec = Recorder()
    s = BatchScheduler(rec, opts(batch_timeout_micros=3_600_000_000))  # one hour
    try:
        futs = [s.submit(rows(2, i * 10.0), 2) for i in range(4)]  # 8 rows: full
        for f in futs:
            f.result(30)
        assert rec.sizes == [8]
    finally:
        s.stop()


def test_task_that_does_not_fit_opens_a_new_batch() -> None:
    rec = Recorder()
    s = BatchScheduler(rec, opts(max_enqueued_batches=4))
    try:
        futs = [s.submit(rows(5, 0.0), 5), s.submit(rows(5, 50.0), 5)]
        for f in futs:
            f.result(5)
        assert sorted(rec.sizes) == [8, 8]  # 5 padded to 8, twice
    finally:
        s.stop()


def test_queue_full_is_unavailable() -> None:
    rec = Recorder()
    rec.gate.clear()
    s = BatchScheduler(rec, opts(max_enqueued_batches=2, batch_timeout_micros=0))
    try:
        first = s.submit(rows(8, 0.0), 8)  # taken by the only thread, held at the gate
        assert rec.entered.acquire(timeout=5)
        queued = [s.submit(rows(8, 1.0), 8), s.submit(rows(8, 2.0), 8)]  # fills 2 slots
        with pytest.raises(ServingError) as err:
            s.submit(rows(1, 3.0), 1)
        assert err.value.code == grpc.StatusCode.UNAVAILABLE
        assert err.value.message == QUEUE_FULL
        assert err.value.http_status == 503
        assert s.stats.rejected_full == 1
        rec.gate.set()
        for f in [first, *queued]:
            f.result(5)
    finally:
        rec.gate.set()
        s.stop()


def test_oversized_task_refused() -> None:
    s = BatchScheduler(Recorder(), opts())
    try:
        with pytest.raises(ServingError) as err:
            s.submit(rows(9, 0.0), 9)
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        s.stop()


def test_failed_batch_fails_its_tasks_only() -> None:
    calls = {"n": 0}

    def flaky(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        return {"y": inputs["x"]}

    s = BatchScheduler(flaky, opts(batch_timeout_micros=0))
    try:
        with pytest.raises(ServingError) as err:
            s.submit(rows(1, 0.0), 1).result(5)
        assert err.value.code == grpc.StatusCode.INTERNAL
        np.testing.assert_array_equal(s.submit(rows(1, 5.0), 1).result(5)["y"], rows(1, 5.0)["x"])
    finally:
        s.stop()


@pytest.mark.parametrize("as_content", [False, True])
def test_response_tensor_encoding_round_trips(as_content: bool) -> None:
    tf = pytest.importorskip("tensorflow")
    from tensorflow.core.framework import tensor_pb2

    from relentless_fast.serving.grpc_api import numpy_to_tensor

    arr = np.arange(12, dtype=np.float32).reshape(4, 3) / 7
    tp = tensor_pb2.TensorProto()
    numpy_to_tensor(arr, tp, as_content=as_content)
    assert bool(tp.tensor_content) == as_content
    assert (len(tp.float_val) == 12) != as_content
    np.testing.assert_array_equal(tf.make_ndarray(tp), arr)
