"""Workers: Huey consumer threads calling ``service.pipeline.process``, and the sweeper.

``mediaguard worker`` runs them as the process's main loop (signals stop it); ``serve`` and
``backfill --workers`` run them in-process with ``InProcessWorker``. Worker threads share one
model, so concurrent items are batched into one inference.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType

import structlog
from huey.consumer import Consumer

from mediaguard.jobs.queue import JobQueue, attach_queue
from mediaguard.service import Service

log = structlog.get_logger("mediaguard.worker")


class Periodic:
    """Calls ``action`` every ``interval`` seconds on a thread of its own (never when the
    interval is 0), at once again while it returns True (more to do); an error is logged and the
    next round tries again (the database may be down)."""

    def __init__(self, name: str, interval: float, action: Callable[[], object]) -> None:
        self.name = name
        self._interval = interval
        self._action = action
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        if self._interval > 0:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        delay = self._interval
        while not self._stop.wait(delay):
            more = False
            try:
                more = self._action() is True
            except Exception as exc:
                first_line = str(exc).splitlines()[0] if str(exc) else repr(exc)
                log.warning(f"{self.name}_failed", error=first_line)
            delay = 0 if more else self._interval


def refresh_banks(service: Service) -> None:
    """Fetch the exchanges of the banks that are due; with workers on many machines each bank
    is claimed in the database and fetched by one of them."""
    outcomes = service.banks.refresh_due(
        service.exchange_credentials(), service.settings.bank_refresh_interval
    )
    for bank, outcome in outcomes.items():
        if isinstance(outcome, Exception):
            log.warning("bank_refresh_failed", bank=bank, error=str(outcome))
        else:
            log.info("bank_refreshed", bank=bank, added=outcome.added, removed=outcome.removed)


def load_terms(service: Service) -> None:
    """The term list, before the first item is labelled; a database that is down is logged and
    the periodic round tries again."""
    try:
        service.terms.load()
    except Exception as exc:
        log.warning("terms_failed", error=str(exc).splitlines()[0] if str(exc) else repr(exc))


class _Background:
    """What a worker process runs beside the consumer threads: the sweeper, the scheduled
    exchange fetches (checked at least every minute, each bank fetched when it is due), and the
    term list (re-read, and items re-evaluated in the background when it changed)."""

    def __init__(self, service: Service) -> None:
        settings = service.settings
        self._parts = [
            Periodic("sweep", settings.sweep_interval, service.pipeline.sweep),
            Periodic(
                "bank_refresh",
                min(settings.bank_refresh_interval, 60.0),
                lambda: refresh_banks(service),
            ),
            Periodic("terms", settings.terms_refresh_interval, service.terms.tick),
        ]

    def start(self) -> None:
        for part in self._parts:
            part.start()

    def stop(self) -> None:
        for part in self._parts:
            part.stop()


def _consumer_options(service: Service, workers: int) -> dict[str, object]:
    poll = service.settings.queue_poll_interval
    return {
        "workers": workers,
        "worker_type": "thread",
        "periodic": False,
        "initial_delay": poll,
        "backoff": 1.0,  # an idle worker keeps polling at `poll`: latency over saved queries
        "max_delay": poll,
        "check_worker_health": False,
        "shutdown_timeout": max(service.settings.lease_seconds, 1.0),
    }


class _EmbeddedConsumer(Consumer):  # type: ignore[misc]
    def _set_signal_handlers(self) -> None:
        """The host process (uvicorn, the CLI) owns the signals."""


class InProcessWorker:
    """Worker threads and the sweeper inside the calling process, e.g.
    ``with InProcessWorker(service, workers=2): ...``."""

    def __init__(
        self, service: Service, queue: JobQueue | None = None, *, workers: int = 2
    ) -> None:
        self.service = service
        self.queue = queue or attach_queue(service)
        self._consumer = _EmbeddedConsumer(self.queue.huey, **_consumer_options(service, workers))
        self._background = _Background(service)
        self.workers = workers
        self._lock = threading.Lock()
        self._started = self._stopped = False

    def start(self, *, wait: bool = True) -> None:
        """Load the PDQ index, the hasher and the model, then take work. Without ``wait`` that
        happens on a thread, so `serve` answers its probes meanwhile."""
        if wait:
            self._prepare_and_start()
        else:
            threading.Thread(
                target=self._prepare_and_start, name="worker-start", daemon=True
            ).start()

    def _prepare_and_start(self) -> None:
        self.service.start_index(wait=True)  # matching needs the PDQ index
        self.service.warm_up()
        load_terms(self.service)
        with self._lock:
            if self._stopped:
                return
            self._consumer.start()
            self._background.start()
            self._started = True
        log.info("worker_started", workers=self.workers, queue=self.queue.backend)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            started = self._started
        if started:
            self._background.stop()
            self._consumer.stop(graceful=True)
            log.info("worker_stopped")

    def __enter__(self) -> InProcessWorker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def run_worker(service: Service, *, workers: int) -> None:
    """The main loop of `mediaguard worker`: until SIGTERM (graceful) or SIGINT."""
    queue = attach_queue(service)
    service.start_index(wait=True)
    service.warm_up()  # the model and the PDQ hasher, before taking work
    load_terms(service)
    consumer = queue.huey.create_consumer(
        **_consumer_options(service, workers), graceful_signal="TERM"
    )
    background = _Background(service)
    background.start()
    log.info("worker_started", workers=workers, queue=queue.backend)
    try:
        consumer.run()
    finally:
        background.stop()
        log.info("worker_stopped")
