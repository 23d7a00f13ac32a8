"""The checkpoint: how many entries of a source are done, and the counts so far, in a JSON file
written atomically after every batch."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from mediaguard.jobs.backfill.errors import BackfillError

OUTCOMES = ("created", "existing", "requeued", "skipped")
COUNTS = (*OUTCOMES, "errors")


def new_counts() -> dict[str, int]:
    return dict.fromkeys(COUNTS, 0)


@dataclass
class Checkpoint:
    """How far a backfill of ``source`` got: ``position`` entries are done."""

    source: str
    position: int = 0
    counts: dict[str, int] = field(default_factory=new_counts)
    finished: bool = False
    updated_at: str = ""


def default_checkpoint_path(source: Path) -> Path:
    """``<source>.checkpoint`` beside the source file or directory."""
    source = source.resolve()
    return source.with_name(source.name + ".checkpoint")


def load_checkpoint(path: Path) -> Checkpoint | None:
    """The checkpoint at ``path``, or None if there is none."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise BackfillError(f"cannot read the checkpoint {path} ({exc}); use --restart") from None
    try:
        counts = {key: int(data.get("counts", {}).get(key, 0)) for key in COUNTS}
        return Checkpoint(
            source=str(data["source"]),
            position=int(data["position"]),
            counts=counts,
            finished=bool(data.get("finished", False)),
            updated_at=str(data.get("updated_at", "")),
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        raise BackfillError(f"{path} is not a backfill checkpoint; use --restart") from None


def temporary_path(path: Path) -> Path:
    """The temporary file a checkpoint at ``path`` is written to before the rename."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Write the checkpoint atomically: a temporary file beside it, then a rename."""
    checkpoint.updated_at = datetime.now(UTC).isoformat(timespec="seconds")
    temporary = temporary_path(path)
    try:
        with temporary.open("w", encoding="utf-8") as stream:
            json.dump(asdict(checkpoint), stream, indent=1)
            stream.write("\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
