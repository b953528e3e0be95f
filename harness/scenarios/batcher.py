"""Model instances behind a dynamic batcher (Triton's ``max_batch_size`` and
``max_queue_delay_microseconds``, in ms here).

Each instance is a thread that owns one ``infer`` function (its own backend: an ONNX Runtime
session, an OpenVINO compiled model, an HTTP client). A worker takes the oldest queued request,
then keeps taking requests until it holds ``max_batch_size`` of them or the oldest one has
waited ``max_queue_delay_ms`` in the queue; it stacks their inputs along axis 0, runs them as
one batch and reports every request done. With ``max_batch_size = 1`` there is no batching:
each instance serves one request at a time. Runtimes release the GIL while they compute, so
instances run in parallel.

A failed batch (``HarnessError`` from ``infer``: a backend error, an HTTP error or timeout)
reports its requests done with the error text: they are counted as failed requests, and the
batcher goes on. After ``MAX_CONSECUTIVE_FAILURES`` failed batches in a row the circuit opens:
every later request fails at once with the last error, not sent, so a stalled target costs a few
timeouts, not one per queued request.
"""

from __future__ import annotations

import threading
import time
from array import array
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.errors import HarnessError
from harness.scenarios.config import ServingKnobs

Infer = Callable[[Mapping[str, np.ndarray]], Any]
_POLL_S = 0.05  # how often an idle worker checks for stop
MAX_CONSECUTIVE_FAILURES = 3


@dataclass(frozen=True)
class Request:
    """One query sample: LoadGen's id, its inputs (each with a leading batch axis of 1) and
    when it was queued (``time.monotonic_ns``)."""

    tag: int
    inputs: Mapping[str, np.ndarray]
    queued_ns: int = 0


Done = Callable[[Sequence[Request], str | None], None]


def stack(requests: Sequence[Request]) -> dict[str, np.ndarray]:
    """The requests' inputs as one batch (concatenated along axis 0)."""
    names = requests[0].inputs.keys()
    return {n: np.concatenate([r.inputs[n] for r in requests], axis=0) for n in names}


class DynamicBatcher:
    """``len(instances)`` worker threads over one queue. ``done(requests, error)`` is called
    from a worker thread after each batch (``error`` None on success). ``service_ns`` holds the
    wall time (ns) of each successful batch's ``infer`` (the service time under load, which is
    not the calibration's back-to-back figure: idle gaps, the load generator's own threads),
    ``failed_ns`` that of each failed one (a timeout's wait keeps an instance busy too)."""

    def __init__(self, instances: Sequence[Infer], knobs: ServingKnobs, done: Done) -> None:
        self.knobs = knobs
        self.done = done
        self._queue: deque[Request] = deque()
        self._cond = threading.Condition()
        self._stop = False
        self._failures = 0  # consecutive failed batches, over all instances
        self._open: str | None = None  # the error that opened the circuit
        self.service_ns = array("q")  # compact: one per batch, millions in a long run
        self.failed_ns = array("q")
        self._threads = [
            threading.Thread(target=self._serve, args=(infer,), daemon=True, name=f"instance-{i}")
            for i, infer in enumerate(instances)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, requests: Sequence[Request]) -> None:
        """Queue requests (all at once: a worker sees them together)."""
        now = time.monotonic_ns()
        with self._cond:
            self._queue.extend(Request(r.tag, r.inputs, r.queued_ns or now) for r in requests)
            self._cond.notify_all()

    def _take(self) -> list[Request] | None:
        """The next batch, or None once stopped. Waits at most ``max_queue_delay_ms`` past the
        oldest request's queueing time for the batch to fill."""
        limit = self.knobs.max_batch_size
        with self._cond:
            while not self._queue:
                if self._stop:
                    return None
                self._cond.wait(_POLL_S)
            deadline = self._queue[0].queued_ns + int(self.knobs.max_queue_delay_ms * 1e6)
            while len(self._queue) < limit and not self._stop:
                left = deadline - time.monotonic_ns()
                if left <= 0:
                    break
                self._cond.wait(left / 1e9)
            return [self._queue.popleft() for _ in range(min(limit, len(self._queue)))]

    def _serve(self, infer: Infer) -> None:
        while (batch := self._take()) is not None:
            if not batch:
                continue
            if self._open is not None:
                self.done(batch, f"not sent (circuit open after {MAX_CONSECUTIVE_FAILURES} "
                                 f"failed batches): {self._open}")  # fmt: skip
                continue
            inputs = stack(batch)
            start = time.monotonic_ns()
            try:
                infer(inputs)
            except HarnessError as exc:
                self.failed_ns.append(time.monotonic_ns() - start)
                error = str(exc) or type(exc).__name__
                self._failures += 1
                if self._failures >= MAX_CONSECUTIVE_FAILURES:
                    self._open = error
                self.done(batch, error)
                continue
            self.service_ns.append(time.monotonic_ns() - start)
            self._failures = 0
            self.done(batch, None)

    def stop(self, timeout_s: float = 5.0) -> bool:
        """Stop the workers once the queue is drained; False if one is still busy after
        ``timeout_s`` (it is a daemon thread and dies with the worker process)."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        end = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, end - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)
