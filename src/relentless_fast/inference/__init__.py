"""Engine-side inference: no TensorFlow import here or in any submodule (a test enforces it).

- :mod:`.wire`: TF Serving ``PredictRequest`` encoder / ``PredictResponse`` decoder by hand.
- :mod:`.embedded`: LiteRT backend, one fixed-size interpreter per allowed batch size.
- :mod:`.grpc_backend`: pool of warm ``grpc.aio`` channels calling ``PredictionService/Predict``.
- :mod:`.routing`: sticky canary routing by a stable hash of the symbol.
- :mod:`.breaker`: circuit breaker for the remote backend.
- :mod:`.batcher`: bounded, coalescing micro-batcher over preallocated arrays.
- :mod:`.pipeline`: canary split, deadline, fallback, late-reply discard, row accounting.
- :mod:`.batch`: batches, results, flags, drop reasons and counters shared by all of them.

Wiring (see ``docs/inference.md``)::

    pipe = InferencePipeline(on_result=emit, embedded=embedded, remote=remote, router=router)
    batcher = MicroBatcher(..., dispatch=pipe.dispatch, has_capacity=pipe.has_capacity,
                           counters=pipe.counters, loop=loop)
    pipe.on_capacity = batcher.on_capacity
    await pipe.warmup()  # every backend at every allowed batch size, before "ready"
"""
