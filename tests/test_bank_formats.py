from __future__ import annotations

import hashlib
import io
import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mediaguard.banks.formats import (
    HashListError,
    HashRecord,
    ImportStats,
    detect_format,
    read_csv,
    read_hash_list,
    read_text,
    write_csv,
    write_text,
)
from mediaguard.banks.hashes import SIGNAL_TYPES, InvalidHashError, normalize_hash
from mediaguard.errors import InvalidInputError
from mediaguard.signals.digests import sha1_hex_to_base36

PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
MD5 = "d41d8cd98f00b204e9800998ecf8427e"
SHA1 = "da39a3ee5e6b4b0d3255bfef95601890afd80709"
SHA1_BASE36 = "phoiac9h4m842xq45sp7s6u21eteeq1"
SHA256 = hashlib.sha256(b"").hexdigest()


def text(body: str, **kwargs: object) -> list[HashRecord]:
    return list(read_text(io.StringIO(body), **kwargs))  # type: ignore[arg-type]


def csv_(body: str, **kwargs: object) -> list[HashRecord]:
    return list(read_csv(io.StringIO(body), **kwargs))  # type: ignore[arg-type]


# normalize_hash


@pytest.mark.parametrize(
    ("signal_type", "value", "expected"),
    [
        ("pdq", PDQ.upper(), PDQ),
        ("pdq", f"  {PDQ}\n", PDQ),
        ("md5", MD5.upper(), MD5),
        ("sha1", SHA1, SHA1),
        ("sha1", SHA1_BASE36, SHA1),
        ("sha1", SHA1_BASE36.upper(), SHA1),
        ("sha1", sha1_hex_to_base36("0" * 39 + "1"), "0" * 39 + "1"),
        ("sha256", SHA256, SHA256),
    ],
)
def test_normalize_hash(signal_type: str, value: str, expected: str) -> None:
    assert normalize_hash(signal_type, value) == expected


@pytest.mark.parametrize(
    ("signal_type", "value", "message"),
    [
        ("pdq", PDQ[:-1], "pdq hash must be 64 hex characters, got 63"),
        ("md5", MD5 + "0", "md5 hash must be 32 hex characters, got 33"),
        ("sha256", "g" * 64, "sha256 hash must be hex (0-9, a-f), got 'g'"),
        ("sha1", "abc", "sha1 hash must be 40 hex characters or 31 base-36 characters, got 3"),
        ("sha1", "-" * 31, "sha1 hash in base 36 must be 0-9 and a-z, got '-'"),
        ("sha1", "z" * 31, "larger than 160 bits"),
        ("md5", "   ", "md5 hash is empty"),
        ("photodna", MD5, "unknown signal type 'photodna': expected one of pdq, md5, sha1, sha256"),
    ],
)
def test_normalize_hash_errors(signal_type: str, value: str, message: str) -> None:
    with pytest.raises(InvalidHashError, match=message.replace("(", r"\(").replace(")", r"\)")):
        normalize_hash(signal_type, value)


def test_invalid_hash_is_a_value_error_and_invalid_input() -> None:
    with pytest.raises(ValueError):
        normalize_hash("md5", "x")
    with pytest.raises(InvalidInputError):
        normalize_hash("md5", "x")
    assert SIGNAL_TYPES == ("pdq", "md5", "sha1", "sha256")


# text


def test_text_typed_lines_comments_blank_lines_and_notes() -> None:
    body = (
        "\ufeff# exported 2024-05-01\n"
        "\n"
        f"pdq {PDQ}\n"
        f"  MD5\t{MD5.upper()}   seen in report 12  \n"
        f"sha1 {SHA1_BASE36} # from the wiki\n"
        "   # indented comment\n"
        f"sha256 {SHA256}\n"
    )
    assert text(body) == [
        HashRecord("pdq", PDQ, {}),
        HashRecord("md5", MD5, {}, "seen in report 12"),
        HashRecord("sha1", SHA1, {}, "from the wiki"),
        HashRecord("sha256", SHA256, {}),
    ]


def test_text_untyped_lines_take_the_given_type() -> None:
    body = f"{MD5}\n{MD5.upper()} a note\nsha1 {SHA1}\n"
    assert text(body, signal_type="md5") == [
        HashRecord("md5", MD5),
        HashRecord("md5", MD5, note="a note"),
        HashRecord("sha1", SHA1),
    ]


@pytest.mark.parametrize(
    ("body", "kwargs", "message"),
    [
        (
            f"pdq {PDQ}\n\npdq {PDQ[:-1]}\n",
            {},
            "line 3: pdq hash must be 64 hex characters, got 63",
        ),
        (f"# c\n{MD5}\n", {}, "line 2: no signal type: write '<type> <hash>'"),
        (f"photodna {MD5}\n", {}, "line 1: unknown signal type 'photodna'"),
        ("\n\npdq\n", {}, "line 3: no hash after the signal type 'pdq'"),
        (f"{PDQ}\n", {"signal_type": "md5"}, "line 1: md5 hash must be 32 hex characters, got 64"),
        (f"md5 {MD5}\nsha1 {'z' * 31}\n", {}, "line 2: sha1 hash in base 36 is larger"),
    ],
)
def test_text_errors_name_the_line(body: str, kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(HashListError, match=message) as caught:
        text(body, **kwargs)
    assert caught.value.line_number == int(message.split(":")[0].removeprefix("line "))
    assert isinstance(caught.value, ValueError)


def test_unknown_signal_type_argument_fails_at_once() -> None:
    with pytest.raises(InvalidHashError, match="unknown signal type 'video_md5'"):
        read_text(io.StringIO(""), signal_type="video_md5")
    with pytest.raises(InvalidHashError, match="unknown signal type 'video_md5'"):
        read_csv(io.StringIO(""), signal_type="video_md5")


def test_text_skip_mode_counts_bad_lines() -> None:
    body = "".join(f"md5 {'x' * n}\n" for n in range(15)) + f"md5 {MD5}\n"
    stats = ImportStats()
    records = list(read_text(io.StringIO(body), on_error="skip", stats=stats))
    assert records == [HashRecord("md5", MD5)]
    assert (stats.read, stats.skipped) == (1, 15)
    assert len(stats.errors) == ImportStats.MAX_ERRORS
    assert stats.errors[1] == "line 2: md5 hash must be 32 hex characters, got 1"


# CSV


def test_csv_columns_notes_and_metadata() -> None:
    body = (
        "\ufeffType,Hash,note,source,category\n"
        f"pdq,{PDQ.upper()},first,wiki,\n"
        "\n"
        f"md5, {MD5} ,,,adult\n"
        f"sha1,{SHA1_BASE36},,upload,\n"
    )
    assert csv_(body) == [
        HashRecord("pdq", PDQ, {"source": "wiki"}, "first"),
        HashRecord("md5", MD5, {"category": "adult"}),
        HashRecord("sha1", SHA1, {"source": "upload"}),
    ]


def test_csv_json_metadata_column() -> None:
    body = (
        "signal_type,signal,metadata,source\n"
        f'md5,{MD5},"{{""case"": ""12"", ""count"": 3, ""ok"": true, ""gone"": null}}",wiki\n'
        f"md5,{MD5},,\n"
    )
    assert csv_(body) == [
        HashRecord("md5", MD5, {"case": "12", "count": "3", "ok": "true", "source": "wiki"}),
        HashRecord("md5", MD5, {}),
    ]


def test_csv_without_type_column_takes_the_given_type() -> None:
    body = f"value,note\n{SHA256},x\n"
    assert csv_(body, signal_type="sha256") == [HashRecord("sha256", SHA256, {}, "x")]
    body = f"hash,type\n{SHA256},\n{MD5},md5\n"
    assert csv_(body, signal_type="sha256") == [
        HashRecord("sha256", SHA256),
        HashRecord("md5", MD5),
    ]


def test_csv_short_rows_and_trailing_empty_cells_are_fine() -> None:
    body = f"hash,type,note\n{MD5},md5\n{MD5},md5,,,\n"
    assert csv_(body) == [HashRecord("md5", MD5), HashRecord("md5", MD5)]


def test_empty_csv_has_no_records() -> None:
    assert csv_("") == []
    assert csv_("\n\n") == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("type,sha\nmd5,x\n", "line 1: the header has no hash column: expected one of hash, "),
        (f"hash\n{MD5}\n", "line 1: the header has no signal type column"),
        ("hash,type,Hash\n", "line 1: the header names column 'Hash' twice"),
        (f"hash,type\n{MD5},md5\n{MD5},sha1\n", "line 3: sha1 hash must be 40 hex"),
        (f"hash,type\n{MD5},md5,extra\n", "line 2: the row has 3 fields, the header 2"),
        (f"hash,type\n{MD5},\n", "line 2: no signal type: the signal type column is empty"),
        (f"hash,type\n{MD5},tlsh\n", "line 2: unknown signal type 'tlsh'"),
        ("hash,type\n,md5\n", "line 2: md5 hash is empty"),
        (f"hash,type,metadata\n{MD5},md5,{{x\n", "line 2: the metadata column is not valid JSON"),
        (
            f"hash,type,metadata\n{MD5},md5,[1]\n",
            "line 2: the metadata column must hold a JSON object",
        ),
        (
            f'hash,type,metadata\n{MD5},md5,"{{""a"": [1]}}"\n',
            "line 2: metadata 'a' must be a string",
        ),
        (f"hash,type\n{MD5},md5\n{'x' * 200_000},md5\n", "line 3: not valid CSV: field larger"),
    ],
)
def test_csv_errors_name_the_line(body: str, message: str) -> None:
    with pytest.raises(HashListError, match=message) as caught:
        csv_(body)
    assert caught.value.line_number == int(message.split(":")[0].removeprefix("line "))


def test_csv_header_error_is_raised_even_in_skip_mode() -> None:
    with pytest.raises(HashListError, match="no hash column"):
        read_csv(io.StringIO("a,b\n1,2\n"), on_error="skip")


def test_csv_skip_mode_counts_bad_rows() -> None:
    body = f"hash,type\n{MD5},md5\nnope,md5\n{SHA1},sha1\n{SHA1},md5\n"
    stats = ImportStats()
    records = list(read_hash_list(io.StringIO(body), "csv", on_error="skip", stats=stats))
    assert records == [HashRecord("md5", MD5), HashRecord("sha1", SHA1)]
    assert (stats.read, stats.skipped) == (2, 2)
    assert stats.errors == [
        "line 3: md5 hash must be 32 hex characters, got 4",
        "line 5: md5 hash must be 32 hex characters, got 40",
    ]


def test_detect_format() -> None:
    assert detect_format("list.csv") == "csv"
    assert detect_format("/tmp/LIST.CSV") == "csv"
    assert detect_format("list.txt") == "text"
    assert detect_format("hashes") == "text"


# writing


RECORDS = [
    HashRecord("pdq", PDQ, {"source": "wiki", "case": "12"}, "first, with a comma"),
    HashRecord("md5", MD5, {}, None),
    HashRecord("sha1", SHA1, {"quote": 'say "hi"', "unicode": "ünïcödé"}, "multi\nline"),
    HashRecord("sha256", SHA256, {}, "note"),
]


def test_csv_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    with path.open("w", newline="", encoding="utf-8") as stream:
        assert write_csv(stream, RECORDS) == 4
    with path.open(newline="", encoding="utf-8") as stream:
        assert list(read_hash_list(stream, detect_format(path.name))) == RECORDS
    with path.open(newline="", encoding="utf-8") as stream:
        assert stream.readline() == "signal_type,hash,note,metadata\r\n"


def test_text_round_trip_keeps_types_and_values() -> None:
    stream = io.StringIO()
    assert write_text(stream, RECORDS) == 4
    assert stream.getvalue().splitlines()[0] == f"pdq {PDQ}"
    stream.seek(0)
    assert list(read_hash_list(stream, "text")) == [
        HashRecord(record.signal_type, record.value) for record in RECORDS
    ]


def test_writers_normalise_and_validate() -> None:
    stream = io.StringIO()
    write_text(stream, [HashRecord("sha1", SHA1_BASE36)])
    assert stream.getvalue() == f"sha1 {SHA1}\n"
    with pytest.raises(InvalidHashError):
        write_csv(io.StringIO(), [HashRecord("md5", "nope")])


def test_text_written_is_read_by_threatexchange(tmp_path: Path) -> None:
    from threatexchange.exchanges.impl.file_api import (
        FileCollaborationConfig,
        LocalFileSignalExchangeAPI,
    )

    path = tmp_path / "list.txt"
    with path.open("w") as stream:
        write_text(stream, RECORDS)
    api = LocalFileSignalExchangeAPI.for_collab(
        FileCollaborationConfig(filename=str(path), name="x")
    )
    (delta,) = api.fetch_iter([], None)
    assert set(delta.updates) == {(record.signal_type, record.value) for record in RECORDS}


# streaming


class CountingLines:
    """A text stream that counts the lines handed out."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self.taken = 0

    def __iter__(self) -> CountingLines:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.taken += 1
        return line


def md5_lines(count: int) -> Iterator[str]:
    for number in range(count):
        yield f"md5 {number:032x}\n"


@pytest.mark.parametrize("fmt", ["text", "csv"])
def test_readers_stream(fmt: str) -> None:
    header = iter(["signal_type hash\n" if fmt == "text" else "signal_type,hash\n"])
    lines = (line.replace(" ", ",") if fmt == "csv" else line for line in md5_lines(10**9))
    stream = CountingLines(itertools.chain(header, lines) if fmt == "csv" else lines)
    records = read_hash_list(stream, fmt)  # type: ignore[arg-type]
    first = list(itertools.islice(records, 3))
    assert [record.value for record in first] == [f"{n:032x}" for n in range(3)]
    assert stream.taken <= 4


@pytest.mark.parametrize(("fmt", "suffix"), [("text", ".txt"), ("csv", ".csv")])
def test_200k_line_file(tmp_path: Path, fmt: str, suffix: str) -> None:
    path = tmp_path / f"big{suffix}"
    count = 200_000
    with path.open("w", newline="") as stream:
        records = (HashRecord("md5", f"{n:032x}") for n in range(count))
        writer = write_csv if fmt == "csv" else write_text
        assert writer(stream, records) == count
    started = time.perf_counter()
    stats = ImportStats()
    with path.open(newline="") as stream:
        seen = sum(1 for _ in read_hash_list(stream, detect_format(path.name), stats=stats))
    assert seen == stats.read == count
    assert time.perf_counter() - started < 5
