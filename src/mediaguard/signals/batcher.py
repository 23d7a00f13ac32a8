"""Micro-batching: calls arriving together from many threads share one model run."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np

BatchFn = Callable[[np.ndarray], np.ndarray]
BatchObserver = Callable[[int, float], None]


class MicroBatcher:
    """Runs `fn` on stacked inputs in one background thread.

    A batch starts as soon as one input is waiting and closes when `max_batch` inputs are in or
    `max_wait` seconds have passed, so a lone request pays at most `max_wait` of latency while a
    burst fills whole batches. The caller's thread keeps decoding the next image meanwhile, which
    is what overlaps decode with inference.
    """

    def __init__(
        self,
        fn: BatchFn,
        *,
        max_batch: int,
        max_wait: float,
        observer: BatchObserver | None = None,
        name: str = "batcher",
    ) -> None:
        self._fn = fn
        self._max_batch = max_batch
        self._max_wait = max_wait
        self._observer = observer
        self._inbox: queue.SimpleQueue[tuple[np.ndarray, Future[np.ndarray]] | None] = (
            queue.SimpleQueue()
        )
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: np.ndarray) -> Future[np.ndarray]:
        if self._closed:
            raise RuntimeError("batcher is closed")
        future: Future[np.ndarray] = Future()
        self._inbox.put((item, future))
        return future

    def __call__(self, item: np.ndarray) -> np.ndarray:
        return self.submit(item).result()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._inbox.put(None)
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while True:
            first = self._inbox.get()
            if first is None:
                return
            batch = [first]
            stop = self._collect(batch)
            self._run(batch)
            if stop:
                return

    def _collect(self, batch: list[tuple[np.ndarray, Future[np.ndarray]]]) -> bool:
        deadline = time.monotonic() + self._max_wait
        while len(batch) < self._max_batch:
            try:
                remaining = deadline - time.monotonic()
                entry = (
                    self._inbox.get(timeout=remaining)
                    if remaining > 0
                    else self._inbox.get_nowait()
                )
            except queue.Empty:
                return False
            if entry is None:
                return True
            batch.append(entry)
        return False

    def _run(self, batch: list[tuple[np.ndarray, Future[np.ndarray]]]) -> None:
        started = time.perf_counter()
        try:
            outputs = self._fn(np.stack([item for item, _ in batch]))
        except Exception as exc:  # every waiting caller gets the model's error
            for _, future in batch:
                future.set_exception(exc)
            return
        for (_, future), output in zip(batch, outputs, strict=True):
            future.set_result(output)
        if self._observer is not None:
            self._observer(len(batch), time.perf_counter() - started)
