"""Hashes -> the live bank contents they match.

PDQ goes through this process's in-memory index (the widest threshold of any enabled bank), then
each candidate is checked against its own bank's threshold. MD5, SHA-1 and SHA-256 are looked up
in the database's (signal_type, value) index, which is exact and never stale. Either way, the
final read joins the bank and the content, so a disabled or deleted one never matches, even in
the instant before the index hears of it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from mediaguard.banks.follower import IndexFollower
from mediaguard.errors import NotReadyError
from mediaguard.signals.pdq import MIN_MATCH_QUALITY
from mediaguard.store.banks import BankRepository, SignalHit

EXACT_TYPES = ("md5", "sha1", "sha256")


@dataclass(frozen=True)
class BankMatch:
    bank: str
    bank_id: int
    category: str
    signal_type: str
    distance: int
    threshold: int
    content_id: int
    signal_id: int
    value: str
    metadata: dict[str, Any]
    note: str | None

    @classmethod
    def of(cls, hit: SignalHit, distance: int) -> BankMatch:
        return cls(
            bank=hit.bank,
            bank_id=hit.bank_id,
            category=hit.category,
            signal_type=hit.signal_type,
            distance=distance,
            threshold=hit.pdq_threshold if hit.signal_type == "pdq" else 0,
            content_id=hit.content_id,
            signal_id=hit.signal_id,
            value=hit.value,
            metadata=hit.metadata,
            note=hit.note,
        )


class Matcher:
    def __init__(self, banks: BankRepository, follower: IndexFollower) -> None:
        self._banks = banks
        self._follower = follower

    def match(
        self,
        signals: Mapping[str, str],
        *,
        pdq_quality: int | None = None,
        banks: Collection[str] | None = None,
    ) -> list[BankMatch]:
        """Every live match of ``signals`` (signal_type -> normalised value), closest first.

        A PDQ hash whose quality is known and below 50 is not matched. ``banks`` restricts the
        answer to those bank names.
        """
        exact = {kind: value for kind, value in signals.items() if kind in EXACT_TYPES}
        found = [BankMatch.of(hit, 0) for hit in self._banks.live_exact(exact)]
        pdq = signals.get("pdq")
        if pdq is not None and (pdq_quality is None or pdq_quality >= MIN_MATCH_QUALITY):
            found.extend(self._match_pdq(pdq))
        if banks is not None:
            found = [match for match in found if match.bank in banks]
        return sorted(found, key=lambda m: (m.distance, m.bank, m.content_id, m.signal_type))

    def _match_pdq(self, pdq: str) -> list[BankMatch]:
        if not self._follower.status().ready:
            raise NotReadyError("the PDQ index is still loading")
        radius = self._follower.max_threshold
        candidates = dict(self._follower.index.search(pdq, radius))
        hits = self._banks.live_signals(list(candidates))
        return [
            BankMatch.of(hit, candidates[hit.signal_id])
            for hit in hits
            if candidates[hit.signal_id] <= hit.pdq_threshold
        ]
