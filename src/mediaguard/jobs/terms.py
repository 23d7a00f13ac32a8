"""The sensitive-term list in force, and the background re-evaluation of every item against it.

``load`` reads the configured file or URL and puts a changed list in force in the database, so
every process uses the same version; ``relabel`` then re-evaluates the items in batches, in the
background, never at query time. Workers call ``tick`` periodically; ``mediaguard terms relabel``
runs it to the end with a progress bar.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import structlog

from mediaguard.config import Settings
from mediaguard.errors import MediaguardError
from mediaguard.media.fetch import GuardedFetcher
from mediaguard.metrics import Metrics
from mediaguard.signals.terms import TermMatcher, parse_terms
from mediaguard.store.terms import ItemText, TermListInfo, TermListRepository, TextLabels

log = structlog.get_logger("mediaguard.terms")

BATCH = 500


@dataclass(frozen=True)
class TermStatus:
    version: str
    terms: int
    source: str | None
    loaded_at: datetime | None
    relabelled: int
    stale: int
    finished_at: datetime | None


class TermKeeper:
    def __init__(
        self,
        settings: Settings,
        repository: TermListRepository,
        fetcher: GuardedFetcher,
        metrics: Metrics,
        owner: str,
    ) -> None:
        self._settings = settings
        self._repository = repository
        self._fetcher = fetcher
        self._metrics = metrics
        self._owner = owner
        self._matcher = TermMatcher(parse_terms(""))
        self._matcher_lock = threading.Lock()

    def matcher(self) -> TermMatcher:
        """The matcher of the list in force as this process last saw it."""
        return self._matcher

    def source(self) -> str | None:
        return self._settings.sensitive_terms_file or self._settings.sensitive_terms_url

    def load(self) -> TermListInfo | None:
        """Read the configured list and put it in force if it changed; then use the list in
        force. A source that cannot be read keeps the list in force (logged)."""
        source = self.source()
        if source is not None:
            try:
                terms = parse_terms(self._read(source))
            except (OSError, UnicodeDecodeError, MediaguardError) as exc:
                log.warning("term_list_unreadable", source=source, error=str(exc))
            else:
                current = self._repository.current()
                if current is None or current.version != terms.version:
                    log.info("term_list_changed", source=source, terms=len(terms))
                    self._repository.put(terms.version, terms.terms, source)
        return self.refresh()

    def _read(self, source: str) -> str:
        if self._settings.sensitive_terms_file:
            return Path(source).read_text(encoding="utf-8")
        return self._fetcher.fetch(source).content.decode("utf-8")

    def refresh(self) -> TermListInfo | None:
        current = self._repository.current()
        if current is not None and current.version != self._matcher.version:
            matcher = TermMatcher(parse_terms("\n".join(current.terms)))
            with self._matcher_lock:
                self._matcher = matcher
            self._metrics.term_list_terms.set(len(current.terms))
        return current

    def relabel(self, *, budget: float = 5.0) -> bool:
        """Re-evaluate items against the list in force for up to ``budget`` seconds; True if
        there is more to do. Only one process at a time walks the list (a lease)."""
        current = self.refresh()
        if current is None:
            return False
        matcher = self._matcher
        if matcher.version != current.version:
            return False  # a newer list arrived between the two reads; the next round has it
        if current.relabel_finished_at is not None:
            return self._stragglers(current, matcher)
        lease = max(budget * 4, 30.0)
        if not self._repository.claim_relabel(current.id, self._owner, lease):
            return False
        deadline = time.monotonic() + budget
        cursor = current.relabel_cursor
        while True:
            batch = self._repository.stale_items(current.version, after=cursor, limit=BATCH)
            finished = len(batch) < BATCH
            cursor = batch[-1].id if batch else cursor
            labels = _labels(matcher, batch)
            if not self._repository.apply(
                current.id, current.version, self._owner, labels, cursor, finished=finished
            ):
                return False
            self._metrics.items_relabelled.inc(len(labels))
            if finished:
                log.info("term_relabel_finished", version=current.version)
                return False
            if time.monotonic() >= deadline:
                return True
            self._repository.claim_relabel(current.id, self._owner, lease)

    def _stragglers(self, current: TermListInfo, matcher: TermMatcher) -> bool:
        """Items a worker labelled with the previous list after the walk had passed them."""
        batch = self._repository.stale_items(current.version, limit=BATCH)
        if batch:
            self._repository.label(current.version, _labels(matcher, batch))
            self._metrics.items_relabelled.inc(len(batch))
        return len(batch) == BATCH

    def tick(self) -> bool:
        """One periodic round: load, then relabel for a while. True if there is more to do."""
        self.load()
        return self.relabel()

    def status(self) -> TermStatus:
        current = self._repository.current()
        if current is None:
            version = self._matcher.version
            return TermStatus(
                version, 0, None, None, 0, self._repository.count_stale(version), None
            )
        return TermStatus(
            version=current.version,
            terms=len(current.terms),
            source=current.source,
            loaded_at=current.created_at,
            relabelled=current.relabelled,
            stale=self._repository.count_stale(current.version),
            finished_at=current.relabel_finished_at,
        )


def _labels(matcher: TermMatcher, items: list[ItemText]) -> list[TextLabels]:
    return [
        TextLabels(item.id, matcher.match(item.title, item.description, item.tags))
        for item in items
    ]
