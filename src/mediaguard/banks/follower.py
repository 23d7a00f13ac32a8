"""Keep this process's PDQ index equal to the database, a fraction of a second behind it.

Each process loads every matchable PDQ hash once, then follows ``bank_changes``: a row names a
range of signal ids to re-read, and re-reading makes the index equal to the database for that
range, whatever happened to it. Replaying a row is harmless, so the follower never has to be
exact about which rows it has seen; it only has to see each one at least once.

Sequence numbers can be taken in one order and committed in another (PostgreSQL), so a gap in
the feed may be a transaction still in flight: the follower re-reads past the first gap until it
fills, and gives up on a gap (a rolled-back transaction) after ``GAP_PATIENCE`` seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import numpy.typing as npt
import structlog

from mediaguard.banks.pdq_index import PdqIndex
from mediaguard.store.banks import BankRepository, Change
from mediaguard.store.db import utcnow

GAP_PATIENCE = 10.0
LATE_COMMIT = timedelta(minutes=1)
PRUNE_AFTER = timedelta(days=1)
_PRUNE_EVERY = 600.0
# A follower this far behind is stale: /status answers 503.
STALE_AFTER = 30.0

log = structlog.get_logger("mediaguard.banks")


@dataclass(frozen=True)
class IndexStatus:
    ready: bool
    stale: bool
    size: int
    position: int
    seconds_since_sync: float | None
    max_threshold: int


class IndexFollower:
    def __init__(
        self,
        banks: BankRepository,
        *,
        interval: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._banks = banks
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.index = PdqIndex()
        self._ready = threading.Event()
        self._position = 0  # every change up to here has been applied
        self._applied: set[int] = set()  # changes after the position already applied
        self._gap_seen_at: float | None = None
        self._synced_at: float | None = None
        self._pruned_at = 0.0
        self.max_threshold = 0

    # lifecycle

    def start(self) -> None:
        """Load in the background, then follow the feed until ``stop``."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="pdq-follower", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self._ready.is_set():
                    self.load()
                self.sync()
            except Exception as exc:  # a database hiccup: keep the old index, retry next tick
                log.warning("pdq_index_sync_failed", error=str(exc))
            self._stop.wait(self._interval)

    # work

    def load(self) -> None:
        """Build the index from every matchable PDQ hash. Changes committed while loading are
        replayed afterwards, since the position is taken before the first read. It starts a
        minute back, so a transaction committing late with an older number is replayed too."""
        with self._lock:
            position = self._banks.last_change(before=utcnow() - LATE_COMMIT)
            # Batches become arrays at once: 10M hashes as hex strings would take gigabytes.
            id_parts: list[npt.NDArray[np.int64]] = [np.empty(0, dtype=np.int64)]
            hash_parts: list[npt.NDArray[np.uint8]] = [np.empty((0, 32), dtype=np.uint8)]
            for batch in self._banks.matchable_pdq():
                id_parts.append(np.fromiter((i for i, _ in batch), np.int64, len(batch)))
                raw = bytes.fromhex("".join(value for _, value in batch))
                hash_parts.append(np.frombuffer(raw, dtype=np.uint8).reshape(-1, 32))
            self.index = PdqIndex.build(np.concatenate(id_parts), np.concatenate(hash_parts))
            self._position = position
            self._applied.clear()
            self._gap_seen_at = None
            self.max_threshold = max(self._banks.thresholds().values(), default=0)
            self._synced_at = self._clock()
            self._ready.set()
        log.info("pdq_index_loaded", size=len(self.index), position=position)

    def sync(self) -> int:
        """Apply every change committed since the last call; returns how many were applied."""
        if not self._ready.is_set():
            return 0
        with self._lock:
            applied = 0
            while True:
                changes = self._banks.changes_after(self._position)
                fresh = [change for change in changes if change.seq not in self._applied]
                for change in fresh:
                    self._apply(change)
                    self._applied.add(change.seq)
                applied += len(fresh)
                self._advance()
                if len(changes) < 1000 or not fresh:
                    break
            self.max_threshold = max(self._banks.thresholds().values(), default=0)
            self._synced_at = self._clock()
        self._prune_if_due()
        return applied

    def _apply(self, change: Change) -> None:
        rows = [
            row
            for batch in self._banks.matchable_pdq(
                first=change.first_signal_id, last=change.last_signal_id
            )
            for row in batch
        ]
        present = np.asarray([signal_id for signal_id, _ in rows], dtype=np.int64)
        span = np.arange(change.first_signal_id, change.last_signal_id + 1, dtype=np.int64)
        gone = np.setdiff1d(span, present, assume_unique=True)
        if gone.size:
            self.index.remove(gone.tolist())
        if rows:
            self.index.add(present, [value for _, value in rows])

    def _advance(self) -> None:
        while self._position + 1 in self._applied:
            self._position += 1
            self._applied.discard(self._position)
        if not self._applied:
            self._gap_seen_at = None
            return
        now = self._clock()
        if self._gap_seen_at is None:
            self._gap_seen_at = now
        elif now - self._gap_seen_at > GAP_PATIENCE:
            # The missing sequence number belongs to a transaction that rolled back.
            self._position += 1
            self._gap_seen_at = None
            self._advance()

    def _prune_if_due(self) -> None:
        now = self._clock()
        if now - self._pruned_at < _PRUNE_EVERY:
            return
        self._pruned_at = now
        try:
            self._banks.prune_changes(utcnow() - PRUNE_AFTER)
        except Exception as exc:
            log.warning("bank_changes_prune_failed", error=str(exc))

    def status(self) -> IndexStatus:
        synced = self._synced_at
        since = None if synced is None else self._clock() - synced
        return IndexStatus(
            ready=self._ready.is_set(),
            stale=since is None or since > STALE_AFTER,
            size=len(self.index),
            position=self._position,
            seconds_since_sync=since,
            max_threshold=self.max_threshold,
        )
