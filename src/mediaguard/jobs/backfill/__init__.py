"""`mediaguard backfill`: sweep the files a platform already has into the upload pipeline.

A source (a list of URLs, a directory, a JSON-lines export) is read as numbered entries. Each
entry is submitted to the pipeline; after every batch a checkpoint records how many entries are
done, so an interrupted run resumes after its last completed batch. Submitting is idempotent, so
the entries of a batch cut short are simply submitted again.

``sources`` reads the entries, ``checkpoint`` keeps the place, ``pacing`` limits the rate,
``sweeping`` submits and counts, and ``command`` is the command around them.
"""

from mediaguard.jobs.backfill.checkpoint import (
    Checkpoint,
    default_checkpoint_path,
    load_checkpoint,
    save_checkpoint,
)
from mediaguard.jobs.backfill.command import (
    BackfillOptions,
    parse_format,
    parse_when,
    run_command,
)
from mediaguard.jobs.backfill.errors import BackfillError
from mediaguard.jobs.backfill.pacing import RateLimiter
from mediaguard.jobs.backfill.sources import (
    Entry,
    Source,
    list_files,
    open_source,
    parse_record,
)
from mediaguard.jobs.backfill.sweeping import Failure, sweep, wait_until_processed

__all__ = [
    "BackfillError",
    "BackfillOptions",
    "Checkpoint",
    "Entry",
    "Failure",
    "RateLimiter",
    "Source",
    "default_checkpoint_path",
    "list_files",
    "load_checkpoint",
    "open_source",
    "parse_format",
    "parse_record",
    "parse_when",
    "run_command",
    "save_checkpoint",
    "sweep",
    "wait_until_processed",
]
