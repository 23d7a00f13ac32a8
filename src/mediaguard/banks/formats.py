"""Hash lists in and out: plain text (threatexchange's local-file format) and CSV.

Readers stream: they take a text stream, read one line at a time and yield one record at a time,
so a list of ten million hashes never sits in memory. Every value comes out normalised
(:func:`~mediaguard.banks.hashes.normalize_hash`).

Text, one hash a line; blank lines and ``#`` comments are skipped::

    pdq 9f1c...e0                     <type> <hash>, as threatexchange writes it
    3f786850e387550fdab836ed7e6dc881  <hash> alone, when the reader is given the list's type
    md5 3f78...c881  seen in report 12  anything after the hash is a note (a leading # is dropped)

CSV, with a header row: a ``hash`` (or ``signal`` / ``value``) column, an optional
``signal_type`` (or ``type``) column, an optional ``note`` column, an optional ``metadata``
column holding a JSON object; every other column is metadata too.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import TYPE_CHECKING, ClassVar, Literal, TextIO

from mediaguard.banks.hashes import SIGNAL_TYPES, InvalidHashError, normalize_hash
from mediaguard.errors import InvalidInputError

if TYPE_CHECKING:
    from _csv import Reader

Format = Literal["text", "csv"]
OnError = Literal["raise", "skip"]

HASH_COLUMNS = ("hash", "signal", "value")
TYPE_COLUMNS = ("signal_type", "type")
NOTE_COLUMN = "note"
METADATA_COLUMN = "metadata"
CSV_COLUMNS = ("signal_type", "hash", NOTE_COLUMN, METADATA_COLUMN)


@dataclass(frozen=True)
class HashRecord:
    """One hash of a list: its type, its normalised value and what the list says about it."""

    signal_type: str
    value: str
    metadata: dict[str, str] = field(default_factory=dict)
    note: str | None = None


class HashListError(InvalidInputError, ValueError):
    """A line of a hash list that cannot be read; the message starts with its line number."""

    def __init__(self, line_number: int, message: str) -> None:
        super().__init__(f"line {line_number}: {message}")
        self.line_number = line_number
        self.reason = message


@dataclass
class ImportStats:
    """What a reader did: records read, bad lines skipped, and the first few reasons."""

    MAX_ERRORS: ClassVar[int] = 10

    read: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)

    def add_skipped(self, error: HashListError) -> None:
        self.skipped += 1
        if len(self.errors) < self.MAX_ERRORS:
            self.errors.append(str(error))


def detect_format(filename: str) -> Format:
    return "csv" if PurePath(filename).suffix.lower() == ".csv" else "text"


def read_hash_list(
    stream: TextIO,
    fmt: Format,
    *,
    signal_type: str | None = None,
    on_error: OnError = "raise",
    stats: ImportStats | None = None,
) -> Iterator[HashRecord]:
    """Records of a list in either format. ``signal_type`` is the type of lines that name none.

    With ``on_error="skip"`` a bad line is counted in ``stats`` and skipped; a CSV header without
    a hash column is an error either way.
    """
    reader = read_csv if fmt == "csv" else read_text
    return reader(stream, signal_type=signal_type, on_error=on_error, stats=stats)


def read_text(
    stream: TextIO,
    *,
    signal_type: str | None = None,
    on_error: OnError = "raise",
    stats: ImportStats | None = None,
) -> Iterator[HashRecord]:
    _check_signal_type(signal_type)
    return _handle_errors(_text_records(stream, signal_type), on_error, stats)


def read_csv(
    stream: TextIO,
    *,
    signal_type: str | None = None,
    on_error: OnError = "raise",
    stats: ImportStats | None = None,
) -> Iterator[HashRecord]:
    _check_signal_type(signal_type)
    rows = csv.reader(stream)
    try:
        header = next((row for row in rows if _has_content(row)), None)
    except csv.Error as error:
        raise HashListError(rows.line_num, f"not valid CSV: {error}") from None
    if header is None:
        return iter(())
    layout = _CsvLayout.from_header(header, rows.line_num, signal_type)
    return _handle_errors(_csv_records(rows, layout), on_error, stats)


def write_text(stream: TextIO, records: Iterable[HashRecord]) -> int:
    """``<type> <hash>`` lines. Notes and metadata are left out, so that threatexchange's
    local-file exchange can read the file too."""
    count = 0
    for record in records:
        stream.write(f"{record.signal_type} {normalize_hash(record.signal_type, record.value)}\n")
        count += 1
    return count


def write_csv(stream: TextIO, records: Iterable[HashRecord]) -> int:
    """Columns signal_type, hash, note and metadata (a JSON object), one record a row.

    Open files with ``newline=""``, as for any CSV.
    """
    writer = csv.writer(stream)
    writer.writerow(CSV_COLUMNS)
    count = 0
    for record in records:
        value = normalize_hash(record.signal_type, record.value)
        writer.writerow(
            [record.signal_type, value, record.note or "", _metadata_json(record.metadata)]
        )
        count += 1
    return count


def _check_signal_type(signal_type: str | None) -> None:
    if signal_type is not None and signal_type not in SIGNAL_TYPES:
        raise InvalidHashError(
            f"unknown signal type {signal_type!r}: expected one of {', '.join(SIGNAL_TYPES)}"
        )


def _handle_errors(
    results: Iterator[HashRecord | HashListError], on_error: OnError, stats: ImportStats | None
) -> Iterator[HashRecord]:
    stats = stats if stats is not None else ImportStats()
    for result in results:
        if isinstance(result, HashListError):
            if on_error == "raise":
                raise result
            stats.add_skipped(result)
        else:
            stats.read += 1
            yield result


# Text


def _text_records(
    stream: Iterable[str], default_type: str | None
) -> Iterator[HashRecord | HashListError]:
    for line_number, line in enumerate(stream, 1):
        text = line.lstrip("\ufeff").strip() if line_number == 1 else line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            yield _parse_text_line(text, default_type)
        except ValueError as error:
            yield HashListError(line_number, str(error))


def _parse_text_line(text: str, default_type: str | None) -> HashRecord:
    first, rest = _split_word(text)
    if first.lower() in SIGNAL_TYPES:
        signal_type = first.lower()
        value, rest = _split_word(rest)
        if not value:
            raise ValueError(f"no hash after the signal type {signal_type!r}")
    elif default_type is not None:
        signal_type, value = default_type, first
    elif rest:
        raise ValueError(
            f"unknown signal type {first[:40]!r}: expected one of {', '.join(SIGNAL_TYPES)}"
        )
    else:
        raise ValueError("no signal type: write '<type> <hash>' or give the list's signal type")
    return HashRecord(signal_type, normalize_hash(signal_type, value), {}, _note(rest))


def _split_word(text: str) -> tuple[str, str]:
    """The first word and the rest, split at the first run of whitespace."""
    parts = text.split(None, 1)
    return (parts[0] if parts else ""), (parts[1] if len(parts) > 1 else "")


def _note(text: str) -> str | None:
    note = text.strip()
    if note.startswith("#"):
        note = note[1:].strip()
    return note or None


# CSV


@dataclass(frozen=True)
class _CsvLayout:
    """Which column holds what, from the header row."""

    width: int
    hash: int
    signal_type: int | None
    note: int | None
    metadata: int | None
    extra: tuple[tuple[int, str], ...]
    default_type: str | None

    @classmethod
    def from_header(
        cls, header: list[str], line_number: int, default_type: str | None
    ) -> _CsvLayout:
        names = [name.lstrip("\ufeff").strip() for name in header]
        index: dict[str, int] = {}
        for position, name in enumerate(names):
            if not name:
                continue  # a spreadsheet's trailing empty column
            if name.lower() in index:
                raise HashListError(line_number, f"the header names column {name!r} twice")
            index[name.lower()] = position
        hash_column = next((index[name] for name in HASH_COLUMNS if name in index), None)
        if hash_column is None:
            raise HashListError(
                line_number,
                f"the header has no hash column: expected one of {', '.join(HASH_COLUMNS)}, "
                f"got {', '.join(name for name in names if name) or 'nothing'}",
            )
        type_column = next((index[name] for name in TYPE_COLUMNS if name in index), None)
        if type_column is None and default_type is None:
            raise HashListError(
                line_number,
                f"the header has no signal type column ({' or '.join(TYPE_COLUMNS)}) "
                "and no signal type was given for the list",
            )
        note_column = index.get(NOTE_COLUMN)
        metadata_column = index.get(METADATA_COLUMN)
        special = {hash_column, type_column, note_column, metadata_column}
        extra = tuple(
            (position, name)
            for position, name in enumerate(names)
            if name and position not in special
        )
        return cls(
            len(names), hash_column, type_column, note_column, metadata_column, extra, default_type
        )

    def parse(self, row: list[str]) -> HashRecord | None:
        """The record of a row; None for a row of empty cells."""
        if len(row) < self.width:
            row = row + [""] * (self.width - len(row))
        elif len(row) > self.width and _has_content(row[self.width :]):
            raise ValueError(f"the row has {len(row)} fields, the header {self.width}")
        value = row[self.hash].strip()
        if not value and not _has_content(row):
            return None
        signal_type = self.default_type
        if self.signal_type is not None:
            signal_type = row[self.signal_type].strip().lower() or signal_type
        if signal_type is None:
            raise ValueError("no signal type: the signal type column is empty")
        value = normalize_hash(signal_type, value)
        metadata = {} if self.metadata is None else _parse_metadata_json(row[self.metadata].strip())
        for position, name in self.extra:
            if cell := row[position].strip():
                metadata[name] = cell
        note = None if self.note is None else row[self.note].strip() or None
        return HashRecord(signal_type, value, metadata, note)


def _csv_records(rows: Reader, layout: _CsvLayout) -> Iterator[HashRecord | HashListError]:
    # Reading a row can fail too (a NUL byte, an unclosed quote at the end of the file).
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except csv.Error as error:
            yield HashListError(rows.line_num, f"not valid CSV: {error}")
            continue
        try:
            record = layout.parse(row)
        except ValueError as error:
            yield HashListError(rows.line_num, str(error))
        else:
            if record is not None:
                yield record


def _has_content(cells: list[str]) -> bool:
    return any(cell.strip() for cell in cells)


def _parse_metadata_json(text: str) -> dict[str, str]:
    if not text:
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"the metadata column is not valid JSON: {error.msg}") from None
    if not isinstance(data, dict):
        raise ValueError("the metadata column must hold a JSON object")
    metadata: dict[str, str] = {}
    for key, item in data.items():
        if item is None or item == "":
            continue
        if isinstance(item, str):
            metadata[key] = item
        elif isinstance(item, bool | int | float):
            metadata[key] = json.dumps(item)
        else:
            raise ValueError(f"metadata {key!r} must be a string, a number or a boolean")
    return metadata


def _metadata_json(metadata: dict[str, str]) -> str:
    if not metadata:
        return ""
    return json.dumps(metadata, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
