"""The sensitive-term list in force, and the background re-evaluation of every item against it.

``load`` reads the configured file or URL and puts a changed list in force in the database, so
every process uses the same version; ``relabel`` then re-evaluates the items in batches, in the
background, never at query time. Workers call ``tick`` periodically; ``mediaguard terms relabel``
runs it to the end with a progress bar.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import sqlalchemy as sa
import structlog

from mediaguard.config import Settings
from mediaguard.errors import MediaguardError
from mediaguard.media.fetch import GuardedFetcher
from mediaguard.metrics import Metrics
from mediaguard.signals.terms import TermMatcher, parse_terms
from mediaguard.store.terms import ItemText, TermListInfo, TermListRepository, TextLabels

log = structlog.get_logger("mediaguard.terms")

BATCH = 500
CHECK_EVERY = 1.0


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
        self._loaded_at: float | None = None
        self._checked_at = float("-inf")

    def matcher(self) -> TermMatcher:
        """The matcher of the list in force, checked against the database at most every
        ``CHECK_EVERY`` seconds, so a worker never labels long with a list replaced elsewhere
        (or with none, when the first load failed)."""
        now = time.monotonic()
        if now - self._checked_at >= CHECK_EVERY:
            self._checked_at = now
            try:
                self.refresh()
            except sa.exc.SQLAlchemyError as exc:
                log.warning("term_list_check_failed", error=str(exc).splitlines()[0])
        return self._matcher

    def source(self) -> str | None:
        return self._settings.sensitive_terms_file or self._settings.sensitive_terms_url

    def load(self) -> TermListInfo | None:
        """Read the configured list and put it in force if it changed; then use the list in
        force. A source that cannot be read keeps the list in force (logged)."""
        source = self.source()
        if source is not None:
            shown = redacted(source)
            try:
                terms = parse_terms(self._read(source))
            except (OSError, UnicodeDecodeError, MediaguardError) as exc:
                log.warning("term_list_unreadable", source=shown, error=str(exc))
            else:
                current = self._repository.current()
                if current is None or current.version != terms.version:
                    log.info("term_list_changed", source=shown, terms=len(terms))
                    self._repository.put(terms.version, terms.terms, shown)
        return self.refresh()

    def _read(self, source: str) -> str:
        if self._settings.sensitive_terms_file:
            return Path(source).read_text(encoding="utf-8")
        return self._fetcher.fetch(source).content.decode("utf-8")

    def refresh(self) -> TermListInfo | None:
        current = self._repository.current()
        if current is not None and current.version != self._matcher.version:
            self._matcher = TermMatcher(parse_terms("\n".join(current.terms)))
            self._metrics.term_list_terms.set(len(current.terms))
        return current

    def relabel(self, *, budget: float = 5.0) -> bool:
        """Re-evaluate items against the list in force for up to ``budget`` seconds; True if
        there is more to do. Only one process at a time walks the list (a lease)."""
        current = self.refresh()
        matcher = self._matcher
        if current is None:  # no list yet: items whose metadata changed still need labels
            return self._stragglers(matcher)
        if matcher.version != current.version:
            return False  # a newer list arrived between the two reads; the next round has it
        if current.relabel_finished_at is not None:
            return self._stragglers(matcher)
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

    def _stragglers(self, matcher: TermMatcher) -> bool:
        """Items labelled with an earlier list after the walk had passed them (a worker that
        had not seen the new list yet), and items whose metadata changed."""
        batch = self._repository.stale_items(matcher.version, limit=BATCH)
        if batch:
            self._repository.label(matcher.version, _labels(matcher, batch))
            self._metrics.items_relabelled.inc(len(batch))
        return len(batch) == BATCH

    def tick(self) -> bool:
        """One periodic round: load (at most every refresh interval, however often the rounds
        come while a relabelling goes on), then relabel for a while. True if there is more."""
        interval = self._settings.terms_refresh_interval
        if self._loaded_at is None or time.monotonic() - self._loaded_at >= interval:
            self.load()
            self._loaded_at = time.monotonic()
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


def redacted(source: str) -> str:
    """A URL without its credentials, query or fragment (a signed URL's secret), for the
    database and the logs; a file path as it is."""
    parts = urlsplit(source)
    if not parts.scheme or not parts.netloc:
        return source
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _labels(matcher: TermMatcher, items: list[ItemText]) -> list[TextLabels]:
    return [
        TextLabels(
            item.id, matcher.match(item.title, item.description, item.tags), item.search_text
        )
        for item in items
    ]
