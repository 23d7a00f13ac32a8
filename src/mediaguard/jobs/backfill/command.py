"""`mediaguard backfill` itself: its options, the progress bar, SIGTERM, the checkpoint's path
and the summary, around the sweep."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from mediaguard.jobs.backfill.checkpoint import (
    COUNTS,
    Checkpoint,
    default_checkpoint_path,
    load_checkpoint,
    save_checkpoint,
    temporary_path,
)
from mediaguard.jobs.backfill.errors import BackfillError
from mediaguard.jobs.backfill.pacing import RateLimiter
from mediaguard.jobs.backfill.sources import Entry, Source, SourceFormat, open_source
from mediaguard.jobs.backfill.sweeping import Failure, sweep, wait_until_processed
from mediaguard.jobs.queue import attach_queue
from mediaguard.jobs.worker import InProcessWorker
from mediaguard.pipeline import MediaSubmission, Submitted

if TYPE_CHECKING:
    from mediaguard.config import Settings
    from mediaguard.service import Service


@dataclass(frozen=True)
class BackfillOptions:
    source: Path
    format: SourceFormat = "auto"
    batch_size: int = 100
    checkpoint: Path | None = None
    restart: bool = False
    rate: float | None = None
    dry_run: bool = False
    rescan_older_than: datetime | None = None
    workers: int = 0
    progress: bool = True
    json: bool = False

    def check(self) -> None:
        """Refuse options no run could use (exit code 2)."""
        if self.batch_size < 1:
            raise BackfillError("--batch-size must be at least 1")
        if self.rate is not None and not self.rate > 0:
            raise BackfillError("--rate must be a positive number of entries a second")
        if self.workers < 0:
            raise BackfillError("--workers must be 0 or more")


_FORMATS: dict[str, SourceFormat] = {"auto": "auto", "urls": "urls", "jsonl": "jsonl"}


def parse_format(text: str) -> SourceFormat:
    """``--format``: auto, urls or jsonl. ValueError if it is none of them."""
    try:
        return _FORMATS[text.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown format {text!r}") from None


def parse_when(text: str) -> datetime:
    """An ISO date or date-time; UTC unless it names its zone. ValueError if it is neither."""
    when = datetime.fromisoformat(text.strip())
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


class _RateColumn(ProgressColumn):
    """Entries a second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        shown = "-" if speed is None else f"{speed:.1f}"
        return Text(f"{shown}/s", style="progress.data.speed")


def _progress(console: Console, enabled: bool) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled or not console.is_terminal,
        transient=False,
    )


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so the run stops the same orderly way."""


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """While inside, SIGTERM raises Terminated in the main thread (elsewhere: unchanged)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_command(
    options: BackfillOptions,
    settings: Settings,
    open_service: Callable[[], AbstractContextManager[Service]],
    *,
    out: TextIO | None = None,
    console: Console | None = None,
) -> int:
    """The whole `mediaguard backfill` command; returns its exit code."""
    out = out or sys.stdout
    console = console or Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        return _run(options, settings, open_service, out, console)
    except BackfillError as exc:
        console.print(f"error: {exc.message}", markup=False)
        return exc.exit_code


def _run(
    options: BackfillOptions,
    settings: Settings,
    open_service: Callable[[], AbstractContextManager[Service]],
    out: TextIO,
    console: Console,
) -> int:
    options.check()
    checkpoint_path = (options.checkpoint or default_checkpoint_path(options.source)).resolve()
    source = open_source(
        options.source,
        options.format,
        max_bytes=settings.max_image_bytes,
        exclude=(checkpoint_path, temporary_path(checkpoint_path)),
    )
    state = _starting_state(source, checkpoint_path, restart=options.restart)
    if state.finished:
        console.print(
            f"the backfill of {source.path} has finished ({checkpoint_path}); "
            "--restart to run it again",
            markup=False,
        )
        _print_summary(
            _summary(state, total=state.position, resumed_from=state.position), options, [], out
        )
        return 0
    resumed_from = state.position
    total = source.count()

    def save(checkpoint: Checkpoint, exit_code: int = 1) -> None:
        try:
            save_checkpoint(checkpoint_path, checkpoint)
        except OSError as exc:
            message = f"cannot write the checkpoint {checkpoint_path}: {exc.strerror}"
            raise BackfillError(message, exit_code) from None

    if not options.dry_run:
        save(state, exit_code=2)  # before any work: can it be written at all?
    elif options.workers:
        console.print("dry run: --workers is ignored, nothing is processed", markup=False)
    if resumed_from:
        console.print(f"resuming after entry {resumed_from} of {total}", markup=False)

    started = time.monotonic()
    tally = _Tally()
    try:
        with ExitStack() as stack:
            stack.enter_context(_sigterm_interrupts())
            service = stack.enter_context(open_service())
            workers = 0 if options.dry_run else options.workers
            if workers:
                stack.enter_context(InProcessWorker(service, workers=workers))
            elif not options.dry_run:
                stack.callback(attach_queue(service).close)  # for the workers elsewhere
            progress = stack.enter_context(_progress(console, options.progress))
            tally.task = progress.add_task("submitting", total=total, completed=resumed_from)
            tally.progress = progress
            pipeline = service.pipeline

            def submit(submission: MediaSubmission) -> Submitted:
                return pipeline.submit(
                    submission, rescan_older_than=options.rescan_older_than, dry_run=options.dry_run
                )

            started = time.monotonic()
            sweep(
                submit,
                source.entries(state.position),
                state,
                batch_size=options.batch_size,
                limiter=RateLimiter(options.rate),
                save=None if options.dry_run else save,
                on_entry=tally.entry,
            )
            if workers:
                waiting = progress.add_task("processing", total=len(tally.item_ids))
                tally.processed = wait_until_processed(
                    pipeline.states,
                    tally.item_ids,
                    on_finished=lambda count: progress.advance(waiting, count),
                )
    except KeyboardInterrupt as exc:
        console.print(_interrupted(state, dry_run=options.dry_run), markup=False)
        return 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)
    except OSError as exc:
        raise BackfillError(f"cannot read {source.path}: {exc}", exit_code=1) from None

    if options.dry_run:
        console.print("dry run: nothing was written", markup=False)
    summary = _summary(state, total=total, resumed_from=resumed_from, processed=tally.processed)
    summary["dry_run"] = options.dry_run
    summary["seconds"] = round(time.monotonic() - started, 3)
    _print_summary(summary, options, tally.failures, out)
    return 0


def _starting_state(source: Source, checkpoint_path: Path, *, restart: bool) -> Checkpoint:
    """The checkpoint to go on from: the saved one (if it is this source's), or a fresh one."""
    state = None if restart else load_checkpoint(checkpoint_path)
    if state is None:
        return Checkpoint(source=str(source.path))
    if state.source != str(source.path):
        raise BackfillError(
            f"the checkpoint {checkpoint_path} is of {state.source}; "
            "use --restart or another --checkpoint"
        )
    return state


@dataclass
class _Tally:
    """What the run saw besides the counts: failures, the items to wait for, the progress bar."""

    failures: list[Failure] = field(default_factory=list)
    item_ids: list[int] = field(default_factory=list)
    processed: dict[str, int] | None = None
    progress: Progress | None = None
    task: TaskID | None = None

    def entry(self, entry: Entry, result: Submitted | Failure) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.advance(self.task)
        if isinstance(result, Failure):
            self.failures.append(result)
            if self.progress is not None:
                self.progress.console.print(f"error: {result}", markup=False)
        elif result.outcome in ("created", "requeued") and result.item is not None:
            self.item_ids.append(result.item.id)


def _interrupted(state: Checkpoint, *, dry_run: bool) -> str:
    if state.finished:
        return "interrupted; every entry had been submitted"
    if dry_run:
        return "interrupted"
    where = f"after entry {state.position}" if state.position else "from the start"
    return f"interrupted; run it again to resume {where}"


def _summary(
    state: Checkpoint,
    *,
    total: int,
    resumed_from: int,
    processed: dict[str, int] | None = None,
) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "source": state.source,
        "total": total,
        "position": state.position,
        "resumed_from": resumed_from,
        "finished": state.finished,
        **{key: state.counts.get(key, 0) for key in COUNTS},
    }
    if processed is not None:
        summary["done"] = processed.get("done", 0)
        summary["failed"] = processed.get("failed", 0)
    return summary


def _print_summary(
    summary: dict[str, Any], options: BackfillOptions, failures: list[Failure], out: TextIO
) -> None:
    if options.json:
        failed = [asdict(failure) for failure in failures]
        out.write(json.dumps({**summary, "error_entries": failed}) + "\n")
        return
    for key in (*COUNTS, "done", "failed"):
        if key in summary:
            out.write(f"{key:<10} {summary[key]}\n")
    out.flush()
