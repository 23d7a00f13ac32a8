"""Curating banks: create, change, fill, empty, export and fetch them. Every change is audited
and reaches this process's PDQ index before the call returns (other processes within one sync
interval)."""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from itertools import islice
from typing import Any, BinaryIO

from mediaguard.banks.exchanges import ExchangeCredentials, FetchBatch, HashUpdate, fetch
from mediaguard.banks.follower import IndexFollower
from mediaguard.banks.formats import Format, HashRecord, ImportStats, OnError, read_hash_list
from mediaguard.banks.hashes import normalize_hash
from mediaguard.errors import InvalidInputError, MediaguardError
from mediaguard.policy import ACTION_NAMES, CATEGORIES
from mediaguard.signals.hashes import MediaHashes
from mediaguard.signals.pdq import DEFAULT_THRESHOLD
from mediaguard.store import Store
from mediaguard.store.audit import AuditEvent
from mediaguard.store.banks import AddResult, BankInfo, ContentInfo, NewContent, NewSignal
from mediaguard.store.db import utcnow

BANK_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
MAX_BANK_NAME = 100
MAX_THRESHOLD = 63
IMPORT_BATCH = 5000
_EDITABLE = frozenset(
    {"name", "category", "pdq_threshold", "enabled", "actions", "description", "exchange_config"}
)


@dataclass
class FetchTotals:
    added: int = 0
    duplicates: int = 0
    removed: int = 0
    batches: int = 0


@dataclass(frozen=True)
class ImportResult:
    added: int
    duplicates: int
    removed: int = 0
    batches: int = 0


def _read_list(
    source: BinaryIO,
    fmt: Format,
    signal_type: str | None,
    on_error: OnError,
    stats: ImportStats,
) -> Iterator[HashRecord]:
    text = io.TextIOWrapper(source, encoding="utf-8-sig", newline="")
    try:
        yield from read_hash_list(
            text, fmt, signal_type=signal_type, on_error=on_error, stats=stats
        )
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"the list is not UTF-8 text: {exc}") from None
    finally:
        text.detach()  # the caller owns the byte stream


def check_bank_name(name: str) -> str:
    if not BANK_NAME.fullmatch(name) or len(name) > MAX_BANK_NAME:
        raise InvalidInputError(
            f"bank name {name[:120]!r} must match ^[A-Z_][A-Z0-9_]*$ (at most 100 characters)"
        )
    return name


def _check_fields(values: Mapping[str, Any]) -> None:
    if "name" in values:
        check_bank_name(values["name"])
    if "category" in values and values["category"] not in CATEGORIES:
        raise InvalidInputError(
            f"unknown category {values['category']!r}: expected one of {', '.join(CATEGORIES)}"
        )
    threshold = values.get("pdq_threshold")
    if threshold is not None and not 0 <= threshold <= MAX_THRESHOLD:
        raise InvalidInputError(f"pdq_threshold must be 0..{MAX_THRESHOLD}, got {threshold}")
    actions = values.get("actions")
    if actions is not None:
        unknown = [action for action in actions if action not in ACTION_NAMES]
        if unknown:
            raise InvalidInputError(
                f"unknown action {unknown[0]!r}: expected any of {', '.join(ACTION_NAMES)}"
            )


class BankAdmin:
    def __init__(self, store: Store, follower: IndexFollower) -> None:
        self._store = store
        self._banks = store.banks
        self._follower = follower

    # banks

    def create(
        self,
        name: str,
        *,
        category: str = "other",
        pdq_threshold: int = DEFAULT_THRESHOLD,
        enabled: bool = True,
        actions: Sequence[str] | None = None,
        description: str | None = None,
        exchange: str | None = None,
        exchange_config: Mapping[str, Any] | None = None,
        actor: str = "system",
    ) -> BankInfo:
        values = {
            "name": name,
            "category": category,
            "pdq_threshold": pdq_threshold,
            "actions": actions,
        }
        _check_fields(values)
        bank = self._banks.create(
            name=name,
            category=category,
            pdq_threshold=pdq_threshold,
            enabled=enabled,
            actions=actions,
            description=description,
            exchange=exchange,
            exchange_config=exchange_config,
        )
        self._audit(actor, "bank.create", name, details={"category": category})
        self._follower.sync()
        return bank

    def get(self, name: str) -> BankInfo:
        return self._banks.get(name)

    def all(self) -> list[BankInfo]:
        return self._banks.all()

    def update(self, name: str, changes: Mapping[str, Any], *, actor: str = "system") -> BankInfo:
        unknown = set(changes) - _EDITABLE
        if unknown:
            raise InvalidInputError(f"cannot change {', '.join(sorted(unknown))} of a bank")
        _check_fields(changes)
        bank = self._banks.update(name, changes)
        self._audit(actor, "bank.update", name, details={"changed": sorted(changes)})
        self._follower.sync()
        return bank

    def delete(self, name: str, *, actor: str = "system") -> BankInfo:
        bank = self._banks.delete(name)
        self._audit(actor, "bank.delete", name)
        self._follower.sync()
        return bank

    def counts(self, name: str) -> dict[str, int]:
        return self._banks.counts(self._banks.get(name).id)

    # content

    def add_content(
        self,
        name: str,
        signals: Mapping[str, str],
        *,
        quality: int | None = None,
        note: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        media_url: str | None = None,
        source: str = "api",
        actor: str = "system",
    ) -> tuple[ContentInfo | None, AddResult]:
        """One content with these hashes (signal_type -> value). None when every hash was in the
        bank already. ``quality`` is the PDQ quality, when the hash was computed here."""
        if not signals:
            raise InvalidInputError("no hash given")
        new = [
            NewSignal(kind, normalize_hash(kind, value), quality if kind == "pdq" else None)
            for kind, value in signals.items()
        ]
        content = NewContent(new, note=note, metadata=dict(metadata or {}), media_url=media_url)
        created, result = self._banks.add_content(name, [content], source=source)
        if created:
            self._audit(actor, "bank.content.add", name, details={"content_id": created[0].id})
        self._follower.sync()
        return (created[0] if created else None), result

    def add_image(
        self,
        name: str,
        hashes: MediaHashes,
        *,
        note: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        media_url: str | None = None,
        actor: str = "system",
    ) -> tuple[ContentInfo | None, AddResult]:
        """One content with every hash of an image, its PDQ quality kept."""
        return self.add_content(
            name,
            hashes.signals(),
            quality=hashes.pdq.quality if hashes.pdq else None,
            note=note,
            metadata=metadata,
            media_url=media_url,
            actor=actor,
        )

    def import_list(
        self,
        name: str,
        source: BinaryIO,
        fmt: Format,
        *,
        signal_type: str | None = None,
        on_error: OnError = "raise",
        actor: str = "system",
    ) -> tuple[ImportResult, ImportStats]:
        """Import a text or CSV list from a seekable byte stream, all or nothing.

        The list is read once to check it and again to import it: a bad line (unless
        ``on_error="skip"``) or bytes that are not UTF-8 leave the bank as it was."""
        self._banks.get(name)
        stats = ImportStats()
        for _ in _read_list(source, fmt, signal_type, on_error, stats):
            pass
        source.seek(0)
        records = _read_list(source, fmt, signal_type, on_error, ImportStats())
        return self.import_records(name, records, actor=actor), stats

    def import_records(
        self,
        name: str,
        records: Iterable[HashRecord],
        *,
        source: str = "import",
        actor: str = "system",
    ) -> ImportResult:
        """Add every record as its own content, in batches of one transaction each."""
        self._banks.get(name)
        added = duplicates = batches = 0
        iterator = iter(records)
        while batch := list(islice(iterator, IMPORT_BATCH)):
            contents = [
                NewContent(
                    [NewSignal(record.signal_type, record.value)],
                    note=record.note,
                    metadata=record.metadata,
                )
                for record in batch
            ]
            _, result = self._banks.add_content(name, contents, source=source)
            added += result.added
            duplicates += result.duplicates
            batches += 1
            self._analyze_as_it_grows(batches)
        self._audit(
            actor,
            "bank.import",
            name,
            details={"added": added, "duplicates": duplicates, "source": source},
        )
        self._follower.sync()
        return ImportResult(added=added, duplicates=duplicates, batches=batches)

    def _analyze_as_it_grows(self, batches: int) -> None:
        """After batch 1, 2, 4, 8...: the bank has doubled, so the planner's statistics (on
        PostgreSQL, empty-table estimates during a bulk load) are refreshed."""
        if batches & (batches - 1) == 0:
            self._banks.analyze()

    def remove_content(self, name: str, content_id: int, *, actor: str = "system") -> int:
        removed = self._banks.remove_content(name, content_id)
        self._audit(actor, "bank.content.remove", name, details={"content_id": content_id})
        self._follower.sync()
        return removed

    def set_content_enabled(
        self, name: str, content_id: int, enabled: bool, *, actor: str = "system"
    ) -> ContentInfo:
        content = self._banks.set_content_enabled(name, content_id, enabled)
        event = "bank.content.enable" if enabled else "bank.content.disable"
        self._audit(actor, event, name, details={"content_id": content_id})
        return content

    def get_content(self, name: str, content_id: int) -> ContentInfo:
        return self._banks.get_content(name, content_id)

    def list_content(self, name: str, *, after_id: int = 0, limit: int = 100) -> list[ContentInfo]:
        return self._banks.list_content(name, after_id=after_id, limit=limit)

    def export(self, name: str) -> Iterator[HashRecord]:
        for signal_type, value, note, metadata in self._banks.iter_signals(name):
            yield HashRecord(
                signal_type,
                value,
                {str(key): str(val) for key, val in (metadata or {}).items()},
                note,
            )

    # exchanges

    def refresh_due(
        self, credentials: ExchangeCredentials, interval: float, *, actor: str = "scheduler"
    ) -> dict[str, ImportResult | Exception]:
        """Fetch every enabled bank with an exchange not fetched for ``interval`` seconds; each
        bank's outcome (or error) by name. Several processes may call this: one fetches."""
        cutoff = utcnow() - timedelta(seconds=interval)
        outcomes: dict[str, ImportResult | Exception] = {}
        for bank in self._banks.all():
            if not bank.enabled or bank.exchange is None:
                continue
            if bank.fetched_at is not None and bank.fetched_at >= cutoff:
                continue
            if not self._banks.claim_refresh(bank.name, cutoff):
                continue
            try:
                outcomes[bank.name] = self.fetch(bank.name, credentials, actor=actor)
            except (MediaguardError, ValueError, OSError) as exc:  # the exchange's own errors
                outcomes[bank.name] = exc
        return outcomes

    def fetch(
        self, name: str, credentials: ExchangeCredentials, *, actor: str = "system"
    ) -> ImportResult:
        """Bring a bank up to date with its exchange, resuming from the saved checkpoint.

        The checkpoint is saved after each batch is applied, so an interrupted fetch loses
        nothing. A fetch that starts over (no checkpoint, or an exchange that always sends its
        whole list) ends by removing the exchange's hashes it did not send again.
        """
        bank = self._banks.get(name)
        if bank.exchange is None:
            raise InvalidInputError(f"bank {name!r} has no exchange configured")
        totals = FetchTotals()
        sent: set[tuple[str, str]] | None = None
        for batch in fetch(
            bank.exchange,
            bank.exchange_config or {},
            credentials=credentials,
            checkpoint=bank.exchange_checkpoint,
        ):
            if batch.restart:
                sent = set()
            self.apply_batch(name, bank.exchange, batch, totals)
            if sent is not None:
                sent.update(
                    (u.signal_type, u.value) for u in batch.updates if u.metadata is not None
                )
            self._banks.save_checkpoint(name, batch.checkpoint)
            totals.batches += 1
            self._analyze_as_it_grows(totals.batches)
        if sent is not None:
            stale = [key for key in self._banks.iter_source(name, bank.exchange) if key not in sent]
            totals.removed += self._banks.remove_signals(name, stale)
            self._follower.sync()
        self._audit(
            actor,
            "bank.fetch",
            name,
            details={"exchange": bank.exchange, "added": totals.added, "removed": totals.removed},
        )
        return ImportResult(
            added=totals.added,
            duplicates=totals.duplicates,
            removed=totals.removed,
            batches=totals.batches,
        )

    def apply_batch(self, name: str, source: str, batch: FetchBatch, totals: FetchTotals) -> None:
        """Apply one batch of an exchange to a bank: additions, removals, replaced records."""
        if batch.removed_source_ids:
            totals.removed += self._banks.remove_external(name, batch.removed_source_ids)
        keyed: dict[str, list[HashUpdate]] = {}
        contents: list[NewContent] = []
        removals: list[tuple[str, str]] = []
        for update in batch.updates:
            if update.metadata is None:
                removals.append((update.signal_type, update.value))
            elif update.source_id is not None:
                keyed.setdefault(update.source_id, []).append(update)
            else:
                signal = NewSignal(update.signal_type, update.value)
                contents.append(NewContent([signal], metadata=update.metadata))
        if keyed:
            # An exchange that keys records by id sends each record whole: replace it.
            totals.removed += self._banks.remove_external(name, keyed)
            for source_id, updates in keyed.items():
                signals = [NewSignal(u.signal_type, u.value) for u in updates]
                contents.append(
                    NewContent(signals, metadata=updates[0].metadata or {}, external_id=source_id)
                )
        if contents:
            _, result = self._banks.add_content(name, contents, source=source)
            totals.added += result.added
            totals.duplicates += result.duplicates
        if removals:
            totals.removed += self._banks.remove_signals(name, removals)
        self._follower.sync()

    def _audit(
        self, actor: str, event: str, bank: str, *, details: Mapping[str, Any] | None = None
    ) -> None:
        self._store.audit.record(
            AuditEvent(
                actor=actor,
                event=event,
                subject_type="bank",
                subject_id=bank,
                result="ok",
                details=dict(details or {}),
            )
        )
