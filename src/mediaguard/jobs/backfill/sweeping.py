"""The sweep: submit each entry (paced), count the outcomes into the checkpoint and save it after
every batch; then, if the items are processed here, wait for them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mediaguard.errors import MediaguardError
from mediaguard.jobs.backfill.checkpoint import Checkpoint
from mediaguard.jobs.backfill.pacing import RateLimiter
from mediaguard.jobs.backfill.sources import Entry
from mediaguard.pipeline import MediaSubmission, Submitted

POLL_INTERVAL = 0.2  # seconds between looks at the items the in-process workers handle
STATES_CHUNK = 500  # item ids per `states` query
PENDING_STATES = frozenset({"queued", "processing"})


@dataclass(frozen=True)
class Failure:
    """An entry that was not submitted, and why."""

    position: int
    where: str
    platform_id: str | None
    error: str  # an error code: invalid_entry, url_refused, ...
    detail: str

    def __str__(self) -> str:
        place = f"entry {self.position} ({self.where})"
        return f"{place}: {self.error}: {self.detail}"


Submit = Callable[[MediaSubmission], Submitted]
OnEntry = Callable[[Entry, Submitted | Failure], None]


def submit_entry(submit: Submit, entry: Entry, limiter: RateLimiter) -> Submitted | Failure:
    """Submit one entry, paced; a bad entry (or one the pipeline refuses) is a Failure."""
    if entry.submission is None:
        return Failure(entry.position, entry.where, None, "invalid_entry", entry.error or "")
    limiter.wait()
    try:
        return submit(entry.submission)
    except MediaguardError as exc:
        return Failure(
            entry.position, entry.where, entry.submission.platform_id, exc.code, exc.message
        )


def sweep(
    submit: Submit,
    entries: Iterable[Entry],
    state: Checkpoint,
    *,
    batch_size: int,
    limiter: RateLimiter,
    save: Callable[[Checkpoint], None] | None = None,
    on_entry: OnEntry | None = None,
) -> Checkpoint:
    """Submit ``entries`` (those after ``state.position``), counting outcomes into ``state`` and
    saving it after every ``batch_size`` entries and at the end, marked finished."""
    counts = dict(state.counts)
    done = 0
    for entry in entries:
        result = submit_entry(submit, entry, limiter)
        counts["errors" if isinstance(result, Failure) else result.outcome] += 1
        done = entry.position
        if on_entry is not None:
            on_entry(entry, result)
        if done - state.position >= batch_size:
            state.position, state.counts = done, dict(counts)
            if save is not None:
                save(state)
    state.position, state.counts = max(done, state.position), counts
    state.finished = True
    if save is not None:
        save(state)
    return state


def wait_until_processed(
    states: Callable[[list[int]], dict[int, str]],
    item_ids: Iterable[int],
    *,
    poll: float = POLL_INTERVAL,
    on_finished: Callable[[int], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, int]:
    """Poll until none of ``item_ids`` is queued or processing; counts of their final states.

    Workers take items oldest first, so a round stops at the first chunk that still has work in
    it: one query per round while the workers are busy, not one per chunk of the whole run."""
    pending = sorted(set(item_ids))
    final: dict[str, int] = {}
    while True:
        still: list[int] = []
        for start in range(0, len(pending), STATES_CHUNK):
            chunk = pending[start : start + STATES_CHUNK]
            found = states(chunk)
            for item_id in chunk:
                state = found.get(item_id, "gone")
                if state in PENDING_STATES:
                    still.append(item_id)
                else:
                    final[state] = final.get(state, 0) + 1
            if still:
                still.extend(pending[start + STATES_CHUNK :])
                break
        if on_finished is not None and len(still) < len(pending):
            on_finished(len(pending) - len(still))
        pending = still
        if not pending:
            return final
        sleep(poll)
