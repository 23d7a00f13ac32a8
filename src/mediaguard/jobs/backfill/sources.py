"""Sources: a list of URLs, a directory, or a JSON-lines export, read as numbered entries."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mediaguard.errors import InvalidInputError
from mediaguard.jobs.backfill.errors import BackfillError
from mediaguard.pipeline import MediaSubmission, parse_tags

SourceFormat = Literal["auto", "urls", "jsonl"]
SourceKind = Literal["urls", "dir", "jsonl"]
JSONL_SUFFIXES = (".jsonl", ".ndjson")


@dataclass(frozen=True)
class Entry:
    """One entry of a source: a submission, or why it could not be read."""

    position: int  # 1-based, in source order
    where: str  # "line 7", or a directory entry's relative path
    submission: MediaSubmission | None
    error: str | None = None


@dataclass(frozen=True)
class Source:
    """A readable source; ``files`` is a directory's sorted relative paths."""

    path: Path
    kind: SourceKind
    max_bytes: int
    files: tuple[str, ...] = ()

    def count(self) -> int:
        """How many entries the source has (a cheap pass: nothing is parsed)."""
        if self.kind == "dir":
            return len(self.files)
        return sum(1 for _ in content_lines(self.path, comments=self.kind == "urls"))

    def entries(self, start: int = 0) -> Iterator[Entry]:
        """The entries after the first ``start``."""
        if self.kind == "dir":
            return read_directory(self.path, self.files, start, max_bytes=self.max_bytes)
        if self.kind == "urls":
            return read_url_list(self.path, start)
        return read_jsonl(self.path, start)


def open_source(
    path: Path, fmt: SourceFormat = "auto", *, max_bytes: int, exclude: Iterable[Path] = ()
) -> Source:
    """Check that ``path`` can be read and tell its kind; a directory is listed here."""
    path = path.resolve()
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise BackfillError(f"cannot read {path}: {exc.strerror}", exit_code=1) from None
    if stat.S_ISDIR(mode):
        if fmt != "auto":
            raise BackfillError(f"--format {fmt} is for a file, and {path} is a directory")
        return Source(path, "dir", max_bytes, list_files(path, exclude=exclude))
    if not stat.S_ISREG(mode):
        raise BackfillError(f"cannot read {path}: not a file or a directory", exit_code=1)
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise BackfillError(f"cannot read {path}: {exc.strerror}", exit_code=1) from None
    if fmt == "auto":
        fmt = "jsonl" if path.suffix.lower() in JSONL_SUFFIXES else "urls"
    return Source(path, fmt, max_bytes)


def list_files(root: Path, *, exclude: Iterable[Path] = ()) -> tuple[str, ...]:
    """Every regular file under ``root`` (symbolic links are not followed), as sorted relative
    POSIX paths."""
    skip = {str(path.resolve()) for path in exclude}
    found: list[str] = []

    def fail(error: OSError) -> None:
        raise BackfillError(f"cannot read {error.filename}: {error.strerror}", exit_code=1)

    for directory, _dirs, names in os.walk(root, onerror=fail):
        for name in names:
            full = os.path.join(directory, name)
            try:
                regular = stat.S_ISREG(os.lstat(full).st_mode)
            except OSError:
                continue  # gone since the listing
            if regular and full not in skip:
                found.append(Path(full).relative_to(root).as_posix())
    return tuple(sorted(found))


def content_lines(path: Path, *, comments: bool) -> Iterator[tuple[int, bytes]]:
    """(line number, stripped bytes) of each non-blank line, skipping `#` lines if ``comments``."""
    with path.open("rb") as stream:
        for number, raw in enumerate(stream, start=1):
            line = raw.strip()
            if number == 1 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:].strip()
            if not line or (comments and line.startswith(b"#")):
                continue
            yield number, line


def read_url_list(path: Path, start: int = 0) -> Iterator[Entry]:
    """A text file of URLs, one per line; the platform id is the URL."""
    for position, (number, line) in enumerate(content_lines(path, comments=True), start=1):
        if position <= start:
            continue
        where = f"line {number}"
        try:
            url = line.decode("utf-8")
        except UnicodeDecodeError:
            yield Entry(position, where, None, "not UTF-8")
            continue
        submission = MediaSubmission(platform_id=url_identifier(url), url=url, origin="backfill")
        yield Entry(position, where, submission)


def read_jsonl(path: Path, start: int = 0) -> Iterator[Entry]:
    """A JSON-lines export, one object per line; a bad line is an entry with its error."""
    for position, (number, line) in enumerate(content_lines(path, comments=False), start=1):
        if position <= start:
            continue
        where = f"line {number}"
        try:
            yield Entry(position, where, parse_record(line))
        except ValueError as exc:
            yield Entry(position, where, None, str(exc))


def parse_record(line: bytes | str) -> MediaSubmission:
    """One JSON-lines record as a submission; ValueError says what is wrong with it."""
    try:
        record = json.loads(line)
    except ValueError as exc:  # also bytes that are not UTF-8
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    url = record.get("url")
    if not isinstance(url, str) or not url.strip():
        raise ValueError("'url' is missing or not a string")
    platform_id = _identifier(record)
    return MediaSubmission(
        platform_id=url_identifier(url.strip()) if platform_id is None else platform_id,
        url=url.strip(),
        title=_text(record, "title"),
        description=_text(record, "description"),
        tags=_tags(record),
        uploader=_text(record, "uploader"),
        sha1=_text(record, "sha1"),
        origin="backfill",
    )


def _identifier(record: dict[str, Any]) -> str | None:
    for key in ("platform_id", "id"):
        value = record.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValueError(f"'{key}' must be a string or an integer")
        if str(value).strip():
            return str(value).strip()
    return None


def _text(record: dict[str, Any], key: str) -> str | None:
    value = record.get(key)
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"'{key}' must be a string")


def _tags(record: dict[str, Any]) -> tuple[str, ...]:
    try:
        return parse_tags(record.get("tags"))
    except InvalidInputError:  # a ValueError, reported with its line like the other fields
        raise ValueError("'tags' must be a list of strings or a comma-separated string") from None


def read_directory(
    root: Path, files: Sequence[str], start: int = 0, *, max_bytes: int
) -> Iterator[Entry]:
    """Each file's bytes, read when its turn comes; the platform id is the relative path."""
    for position, name in enumerate(files[start:], start=start + 1):
        path = root / name
        try:
            with path.open("rb") as stream:
                content = stream.read(max_bytes + 1)
        except OSError as exc:
            yield Entry(position, name, None, f"cannot read: {exc.strerror}")
            continue
        if len(content) > max_bytes:
            yield Entry(position, name, None, f"file is over the limit of {max_bytes} bytes")
            continue
        submission = MediaSubmission(platform_id=name, content=content, origin="backfill")
        yield Entry(position, name, submission)


def url_identifier(url: str) -> str:
    """A URL as a platform id: itself, or (past the column's 255 characters) its digest."""
    if len(url) <= 255:
        return url
    return f"url-sha256:{hashlib.sha256(url.encode()).hexdigest()}"
