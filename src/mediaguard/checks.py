"""Check one item against the banks and act: the step an upload goes through.

``check`` records the item, its matches and the actions policy plans for them, then runs the
actions that are new. A repeated check finds its matches and actions already recorded and does
nothing more: that is what keeps a re-scan from e-mailing twice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mediaguard.actions.runner import ActionRunner
from mediaguard.banks.matcher import BankMatch, Matcher
from mediaguard.config import Settings
from mediaguard.errors import ConflictError
from mediaguard.policy import plan
from mediaguard.signals.hashes import MediaHashes
from mediaguard.store import Store
from mediaguard.store.items import ActionInfo, ItemInfo, MatchRecord, PlannedAction


@dataclass(frozen=True)
class CheckResult:
    item: ItemInfo
    matches: list[BankMatch]  # what matched now, closest first
    new_matches: list[MatchRecord]  # banks this item matched for the first time
    actions: list[ActionInfo]  # actions run (or queued) by this check


def _record(match: BankMatch) -> MatchRecord:
    return MatchRecord(
        bank_id=match.bank_id,
        bank_name=match.bank,
        category=match.category,
        signal_type=match.signal_type,
        distance=match.distance,
        bank_content_id=match.content_id,
    )


class Checker:
    def __init__(
        self, settings: Settings, store: Store, matcher: Matcher, runner: ActionRunner
    ) -> None:
        self._settings = settings
        self._store = store
        self._matcher = matcher
        self._runner = runner

    def check(
        self,
        hashes: MediaHashes,
        *,
        platform_id: str = "",
        media_url: str | None = None,
        actor: str = "system",
    ) -> CheckResult:
        item = self._store.items.upsert(
            platform_id=platform_id, media_url=media_url, **hashes.item_fields()
        )
        return self._check(item, hashes, actor, item_fields=None)

    def check_item(
        self, item: ItemInfo, hashes: MediaHashes, *, actor: str = "system"
    ) -> CheckResult:
        """Match an item on ``hashes``, record them on it, and act on what is new."""
        fields = hashes.item_fields()
        item = dataclasses.replace(item, **fields)  # what the actions report
        return self._check(item, hashes, actor, item_fields=fields)

    def _check(
        self,
        item: ItemInfo,
        hashes: MediaHashes,
        actor: str,
        *,
        item_fields: Mapping[str, Any] | None,
    ) -> CheckResult:
        pdq = hashes.pdq
        matches = self._matcher.match(hashes.signals(), pdq_quality=pdq.quality if pdq else None)
        records = [_record(m) for m in _closest_per_bank(matches)]
        return self._act(item, matches, records, actor, item_fields=item_fields)

    def check_known(
        self,
        *,
        sha256: str,
        sha1: str | None = None,
        platform_id: str = "",
        media_url: str | None = None,
        actor: str = "system",
    ) -> CheckResult:
        """Act at once on an upload whose digest is already a known match, before any fetch:
        an earlier item with the same digest matched, or a bank holds the digest itself."""
        item = self._store.items.upsert(
            platform_id=platform_id, sha256=sha256, sha1=sha1, media_url=media_url
        )
        matches, records = self._known(sha256=sha256, sha1=sha1)
        return self._act(item, matches, records, actor)

    def act_on_known(self, item: ItemInfo, *, sha1: str, actor: str = "system") -> CheckResult:
        """Before an upload is fetched: act on its SHA-1 if that is already a known match. An
        item with no known match is left as it is for the full check."""
        matches, records = self._known(sha1=sha1)
        if not records:
            return CheckResult(item, [], [], [])
        return self._act(item, matches, records, actor)

    def _known(
        self, *, sha256: str | None = None, sha1: str | None = None
    ) -> tuple[list[BankMatch], list[MatchRecord]]:
        signals = {k: v for k, v in (("sha256", sha256), ("sha1", sha1)) if v}
        matches = self._matcher.match(signals)
        records = {m.bank_id: m for m in map(_record, _closest_per_bank(matches))}
        for known in self._store.items.known_matches(sha1=sha1, sha256=sha256):
            records.setdefault(known.bank_id, known)
        return matches, list(records.values())

    def retry(self, action_id: int, *, actor: str = "system") -> ActionInfo:
        """Run a failed action once more."""
        action = self._store.items.retry(action_id)
        if action.status != "pending":
            raise ConflictError(f"action {action_id} is {action.status}; only a failed one reruns")
        item = self._store.items.get(action.item_id)
        match = next(m for m in self._store.items.matches(item.id) if m.bank_id == action.bank_id)
        return self._runner.run(item, [action], {match.bank_id: match}, {}, actor=actor)[0]

    def _act(
        self,
        item: ItemInfo,
        matches: Sequence[BankMatch],
        records: Sequence[MatchRecord],
        actor: str,
        *,
        item_fields: Mapping[str, Any] | None = None,
    ) -> CheckResult:
        banks = {bank.id: bank for bank in self._store.banks.all()}
        planned = [
            PlannedAction(record.bank_id, action, mode)
            for record in records
            if record.bank_id in banks
            for action, mode in plan(
                record.category,
                banks[record.bank_id].actions,
                auto_takedown=self._settings.auto_takedown,
            )
        ]
        new_matches, new_actions = self._store.items.record_check(
            item.id, records, planned, item_fields=item_fields
        )
        by_bank = {record.bank_id: record for record in records}
        if any(action.bank_id not in by_bank for action in new_actions):  # left by a dead run
            for known in self._store.items.matches(item.id):
                by_bank.setdefault(known.bank_id, known)
        metadata = {m.bank_id: m.metadata for m in reversed(matches)}
        done = self._runner.run(item, new_actions, by_bank, metadata, actor=actor)
        return CheckResult(self._store.items.get(item.id), list(matches), new_matches, done)


def _closest_per_bank(matches: Sequence[BankMatch]) -> list[BankMatch]:
    closest: dict[int, BankMatch] = {}
    for match in matches:  # sorted closest first
        closest.setdefault(match.bank_id, match)
    return list(closest.values())
