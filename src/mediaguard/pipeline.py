"""The upload pipeline: intake, processing and the sweeper, the same core under the API, the CLI
and the workers.

``submit`` stores a notification (and an upload's bytes) durably and hands its id to the queue;
``process`` is what a worker runs for that id: lease the item, fetch, decode once, every signal,
the banks, the policy and its actions, then the verdict. ``sweep`` is what keeps the database the
source of truth: expired leases go back to the queue, due retries and lost messages are
enqueued again. Each step is idempotent, so an item processed twice gives one result.

The queue itself is behind ``Dispatcher``; this module knows nothing of Huey.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import random
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Literal, Protocol

import sqlalchemy as sa
import structlog

from mediaguard.errors import (
    ConflictError,
    InvalidInputError,
    MediaguardError,
    MissingInputError,
    ServiceUnavailableError,
)
from mediaguard.media.decode import identify
from mediaguard.media.fetch import check_url
from mediaguard.signals.digests import compute_digests, parse_digest
from mediaguard.store.audit import AuditEvent
from mediaguard.store.db import utcnow
from mediaguard.store.items import ItemInfo
from mediaguard.store.media import NewMedia, SignalValues

if TYPE_CHECKING:
    from mediaguard.service import Service

log = structlog.get_logger("mediaguard.pipeline")

Outcome = Literal["created", "existing", "requeued", "skipped"]
MAX_TAGS = 200
MAX_TEXT = 10_000


class Dispatcher(Protocol):
    """The queue as the pipeline sees it."""

    def enqueue(self, item_ids: Sequence[int]) -> None: ...

    def pending(self) -> int: ...


@dataclass(frozen=True)
class MediaSubmission:
    """One upload notification: a URL or the bytes, and what the platform knows of the file."""

    platform_id: str = ""
    url: str | None = None
    content: bytes | None = None
    title: str | None = None
    description: str | None = None
    tags: tuple[str, ...] = ()
    uploader: str | None = None
    sha1: str | None = None  # hex or MediaWiki base 36
    origin: str = "api"


@dataclass(frozen=True)
class Submitted:
    outcome: Outcome
    item: ItemInfo | None  # None only for a dry run of a new item


@dataclass(frozen=True)
class SweepReport:
    requeued_leases: list[int] = field(default_factory=list)
    failed_leases: list[int] = field(default_factory=list)
    enqueued: list[int] = field(default_factory=list)
    interrupted_actions: list[int] = field(default_factory=list)


ProcessResult = Literal["done", "failed", "retry", "skipped"]


class Pipeline:
    def __init__(self, service: Service) -> None:
        self._service = service
        self._settings = service.settings
        self._media = service.store.media
        self._metrics = service.metrics
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self.dispatcher: Dispatcher | None = None

    # -- intake ----------------------------------------------------------------------------

    def submit(
        self,
        submission: MediaSubmission,
        *,
        rescan_older_than: datetime | None = None,
        dry_run: bool = False,
    ) -> Submitted:
        """Store a notification durably, then queue it. A notification already stored is not
        stored twice: it is sent round again only if it failed, or was processed with another
        model version or before ``rescan_older_than``. A backfill entry whose SHA-1 some item
        was already processed for (with this model, since ``rescan_older_than``) is skipped."""
        new = self._validate(submission)
        try:
            return self._submit(new, rescan_older_than, dry_run)
        except sa.exc.DBAPIError as exc:
            log.warning("intake_database_error", error=str(exc).splitlines()[0])
            raise ServiceUnavailableError(
                "the database is unavailable; the notification was not stored, send it again"
            ) from exc

    def _submit(self, new: NewMedia, rescan: datetime | None, dry_run: bool) -> Submitted:
        existing = self._media.find_key(new.platform_id, new.intake_key)
        known: Outcome = "existing"
        if existing is not None:
            if existing.state == "done" and not self._outdated(existing, rescan):
                known = "skipped"
            elif existing.state in ("done", "failed"):
                known = "requeued"
            if dry_run:
                return Submitted(known, existing)
        elif (
            new.origin == "backfill"
            and new.sha1
            and self._media.done_with(
                sha1=new.sha1, model_version=self._model_version(), since=rescan
            )
        ):
            return Submitted("skipped", None)
        elif dry_run:
            return Submitted("created", None)
        item, created, requeued = self._media.submit(new, requeue=known == "requeued")
        if created or requeued:
            self._metrics.items_submitted.labels(new.origin).inc()
            self.enqueue([item.id])
            return Submitted("created" if created else "requeued", item)
        return Submitted("skipped" if known == "skipped" else "existing", item)

    def _outdated(self, item: ItemInfo, rescan: datetime | None) -> bool:
        if item.nsfw_model_version != self._model_version():
            return True
        checked = item.finished_at or item.last_checked_at
        return rescan is not None and (checked is None or checked < rescan)

    def _model_version(self) -> str:
        return self._service.nsfw().version

    def _validate(self, sub: MediaSubmission) -> NewMedia:
        if (sub.url is None) == (sub.content is None):
            raise MissingInputError("send exactly one of `url` or the file's bytes")
        platform_id = _text("platform_id", sub.platform_id, 255) or ""
        sha1 = _sha1(sub.sha1) if sub.sha1 else None
        base = NewMedia(
            platform_id=platform_id,
            intake_key="",
            origin=sub.origin,
            sha1=sha1,
            title=_text("title", sub.title, MAX_TEXT),
            description=_text("description", sub.description, MAX_TEXT),
            tags=_tags(sub.tags),
            uploader=_text("uploader", sub.uploader, 255),
        )
        if sub.url is not None:
            if len(sub.url) > MAX_URL:
                raise InvalidInputError(f"the URL is longer than {MAX_URL} characters")
            check_url(sub.url, self._service.fetcher.policy)
            key = f"sha1:{sha1}" if sha1 else f"url:{hashlib.sha256(sub.url.encode()).hexdigest()}"
            return dataclasses.replace(base, intake_key=key, media_url=sub.url)
        content = sub.content or b""
        if not content:
            raise MissingInputError("the file is empty")
        self._service.check_size(content)
        identify(content, max_pixels=self._settings.max_image_pixels)  # the header only
        digests = compute_digests(content)
        if sha1 and sha1 != digests.sha1:
            raise InvalidInputError(
                f"the file's SHA-1 is {digests.sha1}, not {sha1}", code="digest_mismatch"
            )
        return dataclasses.replace(
            base,
            intake_key=f"sha256:{digests.sha256}",
            sha256=digests.sha256,
            sha1=digests.sha1,
            content=content,
        )

    def enqueue(self, item_ids: Sequence[int]) -> None:
        """Hand ids to the queue. A refused enqueue loses nothing: the item is stored, and the
        sweeper enqueues it once the queue is back."""
        if not item_ids or self.dispatcher is None:
            return
        try:
            self.dispatcher.enqueue(item_ids)
        except Exception as exc:
            self._metrics.enqueue_failures.inc(len(item_ids))
            log.warning("enqueue_failed", items=len(item_ids), error=str(exc))
            # If this fails too, they count as lost messages after `requeue_after`.
            with contextlib.suppress(sa.exc.DBAPIError):
                self._media.mark_not_enqueued(item_ids)

    # -- processing ------------------------------------------------------------------------

    def process(self, item_id: int) -> ProcessResult:
        """What a worker runs for one queue message. Never raises: the outcome is recorded on
        the item (or, when the database is down, left to the sweeper)."""
        owner = f"{self.owner}:{secrets.token_hex(4)}"
        try:
            item = self._media.claim(item_id, owner, self._settings.lease_seconds)
        except sa.exc.DBAPIError as exc:
            log.warning("claim_failed", item_id=item_id, error=str(exc).splitlines()[0])
            return self.count_check("retry")
        if item is None:
            return self.count_check("skipped")
        started = time.perf_counter()
        try:
            result = self._run(item, owner)
        except MediaguardError as exc:
            result = self._failed(item, owner, exc.code, exc.message, transient=exc.transient)
        except sa.exc.DBAPIError as exc:
            detail = str(exc).splitlines()[0]
            result = self._failed(item, owner, "database", detail, transient=True)
        except Exception as exc:
            log.exception("processing_crashed", item_id=item.id)
            result = self._failed(item, owner, "internal", repr(exc), transient=True)
        if result == "done":
            self._metrics.processing_seconds.observe(time.perf_counter() - started)
            if item.queued_at is not None:
                waited = (utcnow() - item.queued_at).total_seconds()
                self._metrics.upload_to_verdict_seconds.observe(waited)
        return self.count_check(result)

    def _run(self, item: ItemInfo, owner: str) -> ProcessResult:
        service = self._service
        content = self._media.content(item.id)
        if content is None:
            if item.sha1 and item.match_status is None:
                service.count_check(service.checker.act_on_known(item, sha1=item.sha1))
            if not item.media_url:
                raise MediaguardError("the upload's bytes are gone", code="content_missing")
            content = service.fetch_bytes(item.media_url)
        signal = service.nsfw()
        digests, stored = service.stored_score(content, signal)
        if item.sha1 and item.sha1 != digests.sha1:
            raise InvalidInputError(
                f"the URL served content with SHA-1 {digests.sha1}, not the {item.sha1} notified",
                code="digest_mismatch",
            )
        media, hashes, tensor = service.decode_for_signals(
            content, digests, None if stored else signal
        )
        new_score = None
        if stored is None:
            assert tensor is not None
            stored = new_score = service.score_row(
                media, digests, signal, signal.submit_tensor(tensor)
            )
        terms = service.terms.matcher()
        matched = terms.match(item.title, item.description, item.tags)
        values = SignalValues(
            nsfw_score=stored.score,
            nsfw_model_version=stored.model_version,
            width=media.width,
            height=media.height,
            media_format=media.media_format,
            image_sensitive=stored.score >= self._settings.nsfw_threshold,
            matched_terms=matched or None,
            text_sensitive=bool(matched),
            terms_version=terms.version,
            labelled_text=item.search_text,
        )
        # Matches and actions are unique per item and bank, so a worker that lost its lease
        # meanwhile acts on nothing the new holder has not; only the verdict is the holder's.
        service.count_check(service.checker.check_item(item, hashes, actor="pipeline"))
        scores = service.store.scores
        also = None if new_score is None else partial(scores.put_in, score=new_score)
        return "done" if self._media.complete(item.id, owner, values, also=also) else "skipped"

    def _failed(
        self, item: ItemInfo, owner: str, code: str, detail: str, *, transient: bool
    ) -> ProcessResult:
        self._metrics.item_failures.labels(code).inc()
        log.info(
            "item_failed",
            item_id=item.id,
            reason=code,
            detail=detail,
            attempt=item.attempts,
            transient=transient,
        )
        try:
            if transient and item.attempts < self._settings.max_attempts:
                delay = retry_delay(
                    item.attempts, self._settings.retry_backoff, self._settings.retry_backoff_max
                )
                self._media.retry_later(item.id, owner, code, detail, delay)
                return "retry"
            if transient:
                detail = f"{detail} (gave up after {item.attempts} attempts)"
            self._media.fail(item.id, owner, code, detail, keep_content=transient)
            return "failed"
        except sa.exc.DBAPIError as exc:
            log.warning("failure_not_recorded", item_id=item.id, error=str(exc).splitlines()[0])
            return "retry"  # the lease expires and the sweeper re-queues the item

    def count_check(self, result: ProcessResult) -> ProcessResult:
        self._metrics.items_processed.labels(result).inc()
        return result

    # -- sweeping --------------------------------------------------------------------------

    def sweep(self) -> SweepReport:
        """Re-queue items whose lease expired, fail those that used up their attempts, surface
        actions a dead process left running, and enqueue due retries and lost messages."""
        settings = self._settings
        report = SweepReport()
        now = utcnow()
        lease_cutoff = now - timedelta(seconds=settings.lease_seconds)
        report.interrupted_actions.extend(
            a.id for a in self._service.store.items.interrupt_stale(lease_cutoff)
        )
        for item in self._media.expired_leases():
            if item.attempts >= settings.max_attempts:
                detail = f"its worker stopped or stalled on each of {item.attempts} attempts"
                if self._media.fail(
                    item.id, item.lease_owner, "lease_expired", detail, keep_content=True
                ):
                    report.failed_leases.append(item.id)
                    self._metrics.item_failures.labels("lease_expired").inc()
            elif self._media.requeue_expired(item):
                report.requeued_leases.append(item.id)
        pending = self.queued_messages()
        grace = timedelta(seconds=max(2 * settings.sweep_interval, SWEEP_GRACE))
        lost_after = grace if pending == 0 else timedelta(seconds=settings.requeue_after)
        while True:
            ids = self._media.take_due(
                limit=SWEEP_BATCH, stale_before=now - grace, lost_before=now - lost_after
            )
            self.enqueue(ids)
            report.enqueued.extend(ids)
            if len(ids) < SWEEP_BATCH:
                break
        for name, ids in (
            ("lease_expired", report.requeued_leases),
            ("lease_expired_failed", report.failed_leases),
            ("enqueued", report.enqueued),
            ("action_interrupted", report.interrupted_actions),
        ):
            if ids:
                self._metrics.sweeper_items.labels(name).inc(len(ids))
                log.info("sweep", what=name, count=len(ids), first_ids=ids[:10])
        return report

    def queued_messages(self) -> int | None:
        """Messages in the queue broker, when there is one and it answers."""
        if self.dispatcher is None:
            return None
        try:
            return self.dispatcher.pending()
        except Exception as exc:
            log.warning("queue_unavailable", error=str(exc))
            return None

    def retry(self, item_id: int, *, actor: str) -> ItemInfo:
        """Send a failed item round again, attempts reset."""
        item = self.get(item_id)
        audit = AuditEvent(
            actor=actor,
            event="item.retry",
            subject_type="item",
            subject_id=str(item_id),
            result="queued",
            reason=item.error_code,
        )
        if not self._media.requeue_failed(item_id, audit):
            raise ConflictError(f"item {item_id} is {item.state}; only a failed item is retried")
        self.enqueue([item_id])
        return self.get(item_id)

    # -- reading ---------------------------------------------------------------------------

    def get(self, item_id: int) -> ItemInfo:
        return self._service.store.items.get(item_id)

    def find(
        self, *, sha1: str | None = None, platform_id: str | None = None, limit: int = 100
    ) -> list[ItemInfo]:
        if sha1 is not None:
            sha1 = _sha1(sha1)
        return self._media.find(sha1=sha1, platform_id=platform_id, limit=limit)

    def states(self, item_ids: Sequence[int]) -> dict[int, str]:
        return self._media.states(item_ids)


SWEEP_GRACE = 5.0
SWEEP_BATCH = 1000
MAX_URL = 4096


def retry_delay(
    attempt: int, base: float, cap: float, rng: Callable[[], float] = random.random
) -> float:
    """Exponential backoff with jitter: between half and all of ``base * 2**(attempt-1)``, at
    most ``cap``, so retries of items that failed together spread out."""
    ceiling = min(cap, base * 2 ** max(attempt - 1, 0))
    return float(ceiling / 2 + rng() * ceiling / 2)


def _text(name: str, value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInputError(f"`{name}` must be a string")
    value = value.strip()
    if len(value) > limit:
        raise InvalidInputError(f"`{name}` is longer than {limit} characters")
    return value


def _tags(tags: Sequence[str]) -> list[str] | None:
    if len(tags) > MAX_TAGS:
        raise InvalidInputError(f"at most {MAX_TAGS} tags")
    cleaned = [_text("tags", tag, 255) or "" for tag in tags]
    cleaned = [tag for tag in cleaned if tag]
    return cleaned or None


def parse_tags(value: object) -> tuple[str, ...]:
    """Tags as a client sends them: a list of strings, or one comma-separated string (None: no
    tags). Each tag is stripped and the blank ones dropped."""
    if value is None:
        return ()
    if isinstance(value, str):
        parts: list[str] = value.split(",")
    elif isinstance(value, list) and all(isinstance(tag, str) for tag in value):
        parts = value
    else:
        raise InvalidInputError("`tags` must be a list of strings or a comma-separated string")
    return tuple(tag.strip() for tag in parts if tag.strip())


def _sha1(value: str) -> str:
    try:
        kind, digest = parse_digest(value.strip())
    except MediaguardError as exc:
        raise InvalidInputError(f"`sha1`: {exc.message}") from exc
    if kind != "sha1":
        raise InvalidInputError("`sha1` must be a SHA-1: 40 hex digits or 31 in base 36")
    return digest
