"""`mediaguard backfill`: the sources, the checkpoint, the pacing and the sweep on their own, then
the command as real processes against a SQLite file and a loopback HTTP server."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from mediaguard.cli import app
from mediaguard.config import Settings, load_settings
from mediaguard.errors import UrlRefusedError
from mediaguard.jobs.backfill import (
    BackfillError,
    BackfillOptions,
    Checkpoint,
    Entry,
    Failure,
    RateLimiter,
    default_checkpoint_path,
    list_files,
    load_checkpoint,
    open_source,
    parse_record,
    parse_when,
    run_command,
    save_checkpoint,
    sweep,
    wait_until_processed,
)
from mediaguard.pipeline import MediaSubmission, Outcome, Submitted
from mediaguard.store import Store

from fixtures.cli import run
from fixtures.images import jpeg_of, skimage_bytes
from fixtures.servers import LocalHttpServer

MAX = 1024


# --------------------------------------------------------------------------- sources


def test_url_list_skips_blank_lines_and_comments(tmp_path: Path) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_bytes(
        b"\xef\xbb\xbfhttps://a.example/1.jpg\n\n# a comment\n  https://a.example/2.jpg  \r\n"
        b"   # indented comment\nhttps://a.example/3.jpg"
    )
    source = open_source(listing, max_bytes=MAX)
    assert source.kind == "urls" and source.count() == 3
    entries = list(source.entries())
    assert [e.position for e in entries] == [1, 2, 3]
    assert [e.where for e in entries] == ["line 1", "line 4", "line 6"]
    first = entries[0].submission
    assert first == MediaSubmission(
        platform_id="https://a.example/1.jpg", url="https://a.example/1.jpg", origin="backfill"
    )
    resumed = list(source.entries(start=2))
    assert [(e.position, e.submission and e.submission.url) for e in resumed] == [
        (3, "https://a.example/3.jpg")
    ]


def test_jsonl_records_and_their_errors(tmp_path: Path) -> None:
    export = tmp_path / "export.ndjson"
    lines = [
        {
            "url": "https://a.example/cat.jpg",
            "id": "File:Cat.jpg",
            "title": "Cat",
            "description": "A cat",
            "tags": ["cat", " pet ", ""],
            "uploader": "Alice",
            "sha1": "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12",
            "unknown": "ignored",
        },
        {"url": "https://a.example/dog.jpg", "platform_id": 42, "tags": "dog, pet,,"},
        {"url": "https://a.example/plain.jpg"},
    ]
    text = "\n".join(json.dumps(line) for line in lines)
    text += '\n\n{"url": "https://a.example/x.jpg"\n'  # line 5: cut short
    text += '{"title": "no url"}\n'  # 6
    text += '{"url": "https://a.example/y.jpg", "tags": 3}\n'  # 7
    text += '{"url": "https://a.example/z.jpg", "title": ["x"]}\n'  # 8
    text += '["not", "an", "object"]\n'  # 9
    text += '{"url": "https://a.example/b.jpg", "id": true}\n'  # 10
    export.write_text(text)
    source = open_source(export, max_bytes=MAX)
    assert source.kind == "jsonl" and source.count() == 9
    entries = list(source.entries())
    good = [e.submission for e in entries if e.submission is not None]
    assert good[0] == MediaSubmission(
        platform_id="File:Cat.jpg",
        url="https://a.example/cat.jpg",
        title="Cat",
        description="A cat",
        tags=("cat", "pet"),
        uploader="Alice",
        sha1="2fd4e1c67a2d28fced849ee1bb76e7391b93eb12",
        origin="backfill",
    )
    assert (good[1].platform_id, good[1].tags) == ("42", ("dog", "pet"))
    assert good[2].platform_id == "https://a.example/plain.jpg"
    bad = {e.where: e.error for e in entries if e.submission is None}
    assert set(bad) == {"line 5", "line 6", "line 7", "line 8", "line 9", "line 10"}
    assert "not JSON" in str(bad["line 5"])
    assert "url" in str(bad["line 6"])
    assert "tags" in str(bad["line 7"])
    assert "title" in str(bad["line 8"])
    assert "object" in str(bad["line 9"])
    assert "id" in str(bad["line 10"])
    assert [e.position for e in entries] == list(range(1, 10))
    # --format forces the kind whatever the name says
    assert open_source(export, "urls", max_bytes=MAX).kind == "urls"
    assert open_source(tmp_path / "export.ndjson", max_bytes=MAX).kind == "jsonl"


def test_a_line_that_is_not_utf8_is_an_entry_error() -> None:
    with pytest.raises(ValueError, match="not JSON"):
        parse_record(b'{"url": "https://a.example/\xff.jpg"}')


def test_directory_sorted_recursive_regular_files_only(tmp_path: Path) -> None:
    root = tmp_path / "uploads"
    for name in ["b.jpg", "a/z.png", "a/b/c.gif", "a-c.jpg", ".hidden"]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(name.encode())
    (root / "big.bin").write_bytes(b"x" * (MAX + 1))
    os.symlink(root / "b.jpg", root / "link.jpg")
    os.symlink(root / "a", root / "linked-dir")
    checkpoint = root / "run.checkpoint"
    checkpoint.write_text("{}")
    source = open_source(root, max_bytes=MAX, exclude=[checkpoint])
    expected = [".hidden", "a-c.jpg", "a/b/c.gif", "a/z.png", "b.jpg", "big.bin"]
    assert source.kind == "dir" and list(source.files) == expected and source.count() == 6
    entries = list(source.entries())
    assert [e.submission.platform_id for e in entries if e.submission] == expected[:-1]
    assert [e.submission.content for e in entries if e.submission][2] == b"a/b/c.gif"
    assert entries[-1].submission is None and "over the limit" in str(entries[-1].error)
    assert [e.where for e in source.entries(start=4)] == ["b.jpg", "big.bin"]
    assert list_files(root / "a") == ("b/c.gif", "z.png")


def test_sources_that_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(BackfillError) as missing:
        open_source(tmp_path / "nope.txt", max_bytes=MAX)
    assert missing.value.exit_code == 1 and "nope.txt" in missing.value.message
    with pytest.raises(BackfillError) as wrong:
        open_source(tmp_path, "jsonl", max_bytes=MAX)
    assert wrong.value.exit_code == 2
    if os.geteuid() != 0:  # root reads anything
        locked = tmp_path / "locked.txt"
        locked.write_text("https://a.example/1.jpg\n")
        locked.chmod(0)
        with pytest.raises(BackfillError) as denied:
            open_source(locked, max_bytes=MAX)
        assert denied.value.exit_code == 1


# --------------------------------------------------------------------------- checkpoint


def test_checkpoint_paths_sit_beside_the_source(tmp_path: Path) -> None:
    assert default_checkpoint_path(tmp_path / "urls.txt") == tmp_path / "urls.txt.checkpoint"
    (tmp_path / "uploads").mkdir()
    expected = tmp_path / "uploads.checkpoint"
    assert default_checkpoint_path(tmp_path / "uploads") == expected
    assert default_checkpoint_path(Path(f"{tmp_path}/uploads/")) == expected


def test_checkpoint_round_trip_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "run.checkpoint"
    assert load_checkpoint(path) is None
    state = Checkpoint(source="/srv/urls.txt", position=200)
    state.counts["created"] = 190
    state.counts["errors"] = 10
    save_checkpoint(path, state)
    assert os.listdir(tmp_path) == ["run.checkpoint"]  # the temporary file is gone
    data = json.loads(path.read_text())
    assert data["source"] == "/srv/urls.txt" and data["position"] == 200
    assert data["finished"] is False
    assert datetime.fromisoformat(data["updated_at"]) > datetime.now(UTC) - timedelta(minutes=1)
    loaded = load_checkpoint(path)
    assert loaded == state
    path.write_text("{not json")
    with pytest.raises(BackfillError, match="--restart"):
        load_checkpoint(path)
    path.write_text('{"position": 3}')
    with pytest.raises(BackfillError, match="not a backfill checkpoint"):
        load_checkpoint(path)


# --------------------------------------------------------------------------- pacing


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


def test_rate_limiter_paces_without_bursts() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        limiter.wait()
    assert clock.slept == [0.1] * 4
    clock.now += 60  # idle for a minute: no burst is saved up
    limiter.wait()
    limiter.wait()
    assert clock.slept == [0.1] * 5
    clock.now += 0.04  # time spent submitting counts towards the interval
    limiter.wait()
    assert clock.slept[-1] == pytest.approx(0.06)


def test_no_rate_never_waits() -> None:
    clock = FakeClock()
    limiter = RateLimiter(None, clock=clock, sleep=clock.sleep)
    assert [limiter.wait() for _ in range(100)] == [0.0] * 100
    with pytest.raises(ValueError):
        RateLimiter(0)


def test_parse_when() -> None:
    assert parse_when("2024-05-01") == datetime(2024, 5, 1, tzinfo=UTC)
    assert parse_when("2024-05-01T12:30:00") == datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    assert parse_when("2024-05-01T12:30:00+02:00") == datetime(2024, 5, 1, 10, 30, tzinfo=UTC)
    assert parse_when("2024-05-01T12:30:00Z").tzinfo is UTC
    with pytest.raises(ValueError):
        parse_when("last tuesday")


# --------------------------------------------------------------------------- the sweep


def item(item_id: int) -> Any:
    return SimpleNamespace(id=item_id)


class FakePipeline:
    """Outcomes by platform id; `refuse` ids raise what intake raises for a refused URL."""

    def __init__(self, refuse: tuple[str, ...] = ()) -> None:
        self.refuse = refuse
        self.seen: list[str] = []
        self.calls: list[dict[str, Any]] = []
        self.dispatcher: object = None

    def process(self, item_id: int) -> str:
        return "done"

    def submit(
        self,
        submission: MediaSubmission,
        *,
        rescan_older_than: datetime | None = None,
        dry_run: bool = False,
    ) -> Submitted:
        self.calls.append({"rescan_older_than": rescan_older_than, "dry_run": dry_run})
        if submission.platform_id in self.refuse:
            raise UrlRefusedError("scheme 'file' is not allowed")
        outcome: Outcome = "existing" if submission.platform_id in self.seen else "created"
        self.seen.append(submission.platform_id)
        return Submitted(outcome, None if dry_run else item(len(self.seen)))

    def states(self, item_ids: list[int]) -> dict[int, str]:
        return {i: "done" for i in item_ids}


def entries(count: int, start: int = 0, bad: tuple[int, ...] = ()) -> Iterator[Entry]:
    for position in range(start + 1, count + 1):
        if position in bad:
            yield Entry(position, f"line {position}", None, "not JSON")
        else:
            url = f"https://a.example/{position}.jpg"
            yield Entry(position, f"line {position}", MediaSubmission(platform_id=url, url=url))


def test_sweep_saves_after_each_batch_and_counts_outcomes() -> None:
    pipeline = FakePipeline(refuse=("https://a.example/4.jpg",))
    saved: list[tuple[int, bool, dict[str, int]]] = []
    results: list[Submitted | Failure] = []
    state = sweep(
        pipeline.submit,
        entries(11, bad=(7,)),
        Checkpoint(source="s"),
        batch_size=5,
        limiter=RateLimiter(None),
        save=lambda s: saved.append((s.position, s.finished, dict(s.counts))),
        on_entry=lambda entry, result: results.append(result),
    )
    assert [(position, finished) for position, finished, _ in saved] == [
        (5, False),
        (10, False),
        (11, True),
    ]
    assert saved[0][2] == {"created": 4, "existing": 0, "requeued": 0, "skipped": 0, "errors": 1}
    assert state.counts["created"] == 9 and state.counts["errors"] == 2 and state.finished
    failures = [r for r in results if isinstance(r, Failure)]
    assert [(f.position, f.error) for f in failures] == [(4, "url_refused"), (7, "invalid_entry")]
    assert str(failures[0]) == "entry 4 (line 4): url_refused: scheme 'file' is not allowed"
    assert failures[0].platform_id == "https://a.example/4.jpg"


def test_an_interrupted_sweep_resumes_after_its_last_batch() -> None:
    pipeline = FakePipeline()
    saved: list[Checkpoint] = []

    def interrupted(count: int) -> Iterator[Entry]:
        for entry in entries(count):
            if entry.position == 8:
                raise KeyboardInterrupt
            yield entry

    state = Checkpoint(source="s")
    with pytest.raises(KeyboardInterrupt):
        sweep(pipeline.submit, interrupted(20), state, batch_size=3, limiter=RateLimiter(None),
              save=lambda s: saved.append(Checkpoint(**vars(s))))  # fmt: skip
    assert saved[-1].position == 6 and not saved[-1].finished
    resumed = Checkpoint(**vars(saved[-1]))
    sweep(pipeline.submit, entries(20, start=resumed.position), resumed, batch_size=3,
          limiter=RateLimiter(None))  # fmt: skip
    assert resumed.position == 20 and resumed.finished
    # The partial batch (entry 7) was submitted again, which submit shrugs off; its first
    # outcome was never counted, so the counts still add up to the entries.
    assert pipeline.seen.count("https://a.example/7.jpg") == 2
    assert resumed.counts["created"] == 19 and resumed.counts["existing"] == 1


def test_wait_until_processed_polls_until_nothing_is_pending() -> None:
    rounds = iter(
        [
            {1: "queued", 2: "processing", 3: "done"},
            {1: "processing", 2: "failed"},
            {1: "done"},
        ]
    )
    asked: list[list[int]] = []
    finished: list[int] = []

    def states(ids: list[int]) -> dict[int, str]:
        asked.append(ids)
        return next(rounds)

    sleeps: list[float] = []
    counts = wait_until_processed(
        states, [3, 1, 2, 1], on_finished=finished.append, sleep=sleeps.append
    )
    assert counts == {"done": 2, "failed": 1}
    assert asked == [[1, 2, 3], [1, 2], [1]]
    assert finished == [1, 1, 1] and sleeps == [0.2, 0.2]


# --------------------------------------------------------------------------- the command, in process


class FakeService:
    def __init__(self, pipeline: FakePipeline, settings: Settings) -> None:
        self.pipeline = pipeline
        self.settings = settings


def command(
    options: BackfillOptions, pipeline: FakePipeline, *, terminal: bool = False
) -> tuple[int, str, str]:
    """The command in this process, on a fake pipeline (the queue is a SQLite file)."""
    out, err = io.StringIO(), io.StringIO()
    database = options.source.parent / "fake.db"
    settings = load_settings(max_image_bytes=MAX, database_url=f"sqlite:///{database}")

    @contextmanager
    def open_service() -> Iterator[Any]:
        yield FakeService(pipeline, settings)

    console = Console(file=err, width=200, force_terminal=terminal, color_system=None)
    code = run_command(options, settings, open_service, out=out, console=console)
    return code, out.getvalue(), err.getvalue()


def url_list(tmp_path: Path, count: int, extra: str = "") -> Path:
    listing = tmp_path / "urls.txt"
    listing.write_text("".join(f"https://a.example/{i}.jpg\n" for i in range(1, count + 1)) + extra)
    return listing


def test_command_runs_once_then_says_it_has_finished(tmp_path: Path) -> None:
    listing = url_list(tmp_path, 7, "file:///etc/passwd\n")
    pipeline = FakePipeline(refuse=("file:///etc/passwd",))
    options = BackfillOptions(source=listing, batch_size=3, json=True)
    code, out, err = command(options, pipeline)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["created"] == 7 and summary["errors"] == 1 and summary["total"] == 8
    assert summary["error_entries"][0]["where"] == "line 8"
    assert "entry 8 (line 8): url_refused" in err
    checkpoint = json.loads((tmp_path / "urls.txt.checkpoint").read_text())
    assert checkpoint["finished"] is True and checkpoint["position"] == 8
    assert checkpoint["source"] == str(listing.resolve())
    again, out, err = command(BackfillOptions(source=listing), pipeline)
    assert again == 0 and "finished" in err and "created    7" in out
    assert len(pipeline.seen) == 7  # nothing more was submitted
    restarted, out, _ = command(BackfillOptions(source=listing, restart=True), pipeline)
    assert restarted == 0 and "existing   7" in out and len(pipeline.seen) == 14


def test_command_dry_run_writes_no_checkpoint(tmp_path: Path) -> None:
    listing = url_list(tmp_path, 3)
    pipeline = FakePipeline()
    code, out, _ = command(
        BackfillOptions(
            source=listing, dry_run=True, rescan_older_than=datetime(2030, 1, 1, tzinfo=UTC)
        ),
        pipeline,
    )
    assert code == 0 and "created    3" in out
    assert not (tmp_path / "urls.txt.checkpoint").exists()
    assert pipeline.calls[0] == {
        "rescan_older_than": datetime(2030, 1, 1, tzinfo=UTC),
        "dry_run": True,
    }


def test_command_refuses_bad_options_and_foreign_checkpoints(tmp_path: Path) -> None:
    listing = url_list(tmp_path, 2)
    pipeline = FakePipeline()
    assert command(BackfillOptions(source=listing, batch_size=0), pipeline)[0] == 2
    assert command(BackfillOptions(source=listing, rate=-1), pipeline)[0] == 2
    missing, _, err = command(BackfillOptions(source=tmp_path / "missing.txt"), pipeline)
    assert missing == 1 and "missing.txt" in err
    other = tmp_path / "other.checkpoint"
    save_checkpoint(other, Checkpoint(source="/elsewhere/urls.txt"))
    foreign, _, err = command(BackfillOptions(source=listing, checkpoint=other), pipeline)
    assert foreign == 2 and "/elsewhere/urls.txt" in err
    unwritable = tmp_path / "no-such-dir" / "x.checkpoint"
    code, _, err = command(BackfillOptions(source=listing, checkpoint=unwritable), pipeline)
    assert code == 2 and "cannot write the checkpoint" in err
    assert pipeline.seen == []


def test_progress_bar_on_a_terminal_only_unless_turned_off(tmp_path: Path) -> None:
    listing = url_list(tmp_path, 8)
    _, _, plain = command(BackfillOptions(source=listing, restart=True), FakePipeline())
    assert "submitting" not in plain
    _, _, shown = command(
        BackfillOptions(source=listing, restart=True), FakePipeline(), terminal=True
    )
    assert "submitting" in shown and "8/8" in shown and "/s" in shown
    off = BackfillOptions(source=listing, restart=True, progress=False)
    _, _, hidden = command(off, FakePipeline(), terminal=True)
    assert "submitting" not in hidden


class SignalledMidway(FakePipeline):
    """Sends this process a signal as the sixth entry is submitted."""

    def __init__(self, signum: int) -> None:
        super().__init__()
        self.signum = signum

    def submit(self, submission: MediaSubmission, **kwargs: Any) -> Submitted:
        if len(self.seen) == 5:
            os.kill(os.getpid(), self.signum)
        return super().submit(submission, **kwargs)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_stop_the_run_after_its_last_batch(
    tmp_path: Path, signum: int, code: int
) -> None:
    listing = url_list(tmp_path, 10)
    previous = signal.getsignal(signal.SIGTERM)
    exit_code, _, err = command(
        BackfillOptions(source=listing, batch_size=2), SignalledMidway(signum)
    )
    assert exit_code == code and "run it again to resume after entry 4" in err
    assert signal.getsignal(signal.SIGTERM) is previous
    checkpoint = json.loads((tmp_path / "urls.txt.checkpoint").read_text())
    assert checkpoint["position"] == 4 and checkpoint["finished"] is False


def test_cli_exit_codes_for_sources_and_options(tmp_path: Path) -> None:
    """The command's own parsing, in process: nothing here gets as far as the database."""
    listing = url_list(tmp_path, 1)
    runner = CliRunner()

    def exit_code(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, ["backfill", *args], env={"COLUMNS": "200"})
        return result.exit_code, result.output

    assert exit_code(str(tmp_path / "missing.txt")) == (
        1,
        f"error: cannot read {tmp_path / 'missing.txt'}: No such file or directory\n",
    )
    code, output = exit_code(str(listing), "--rescan-older-than", "soon")
    assert code == 2 and "ISO date" in output
    assert exit_code(str(listing), "--batch-size", "0")[0] == 2
    assert exit_code(str(listing), "--rate", "0")[0] == 2
    assert exit_code(str(listing), "--workers", "-1")[0] == 2
    assert exit_code(str(listing), "--format", "xml")[0] == 2
    assert exit_code(str(tmp_path), "--format", "jsonl")[0] == 2
    assert not (tmp_path / "urls.txt.checkpoint").exists()


# --------------------------------------------------------------------------- real processes


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (cheaper than migrating each time)."""
    path = tmp_path_factory.mktemp("backfill") / "template.db"
    store = Store(f"sqlite:///{path}")
    try:
        store.upgrade()
    finally:
        store.close()
    return path


@pytest.fixture
def db(tmp_path: Path, migrated_db: Path) -> Path:
    path = tmp_path / "backfill.db"
    shutil.copyfile(migrated_db, path)
    return path


@pytest.fixture
def images(http_server: LocalHttpServer) -> list[str]:
    """Four real photos on the loopback server."""
    names = ["chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg"]
    return [http_server.add(f"/photos/{i}.jpg", jpeg_of(name)) for i, name in enumerate(names)]


ENV = {"MEDIAGUARD_FETCH_ALLOW_LOOPBACK": "true", "MEDIAGUARD_LOG_LEVEL": "WARNING"}


def backfill(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run(["backfill", *args], db, **ENV)


def start(db: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, **ENV, "MEDIAGUARD_DATABASE_URL": f"sqlite:///{db}"}
    return subprocess.Popen(
        [sys.executable, "-m", "mediaguard", "backfill", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def summary_of(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary


def items(db: Path) -> list[dict[str, Any]]:
    with closing(sqlite3.connect(db)) as connection:
        connection.row_factory = sqlite3.Row
        rows = connection.execute("SELECT * FROM media_items ORDER BY id").fetchall()
    return [dict(row) for row in rows]


def test_a_url_list_and_a_jsonl_export_are_submitted_with_errors_counted(
    db: Path, tmp_path: Path, images: list[str]
) -> None:
    urls = [f"{images[i % 4]}?copy={i}" for i in range(19)]
    listing = tmp_path / "urls.txt"
    listing.write_text(
        "# exported from the wiki\n\n" + "\n".join(urls[:10]) + "\nfile:///etc/passwd\n"
        + "\n".join(urls[10:]) + "\n"
    )  # fmt: skip
    export = tmp_path / "export.jsonl"
    records = [
        {"url": images[0], "id": "File:Cat.jpg", "title": "A cat", "tags": ["cat", "pet"]},
        {"url": images[1], "id": "File:Coffee.jpg", "tags": "coffee, cup", "uploader": "Bob"},
        "{not json",
        {"id": "File:No-url.jpg"},
        {"url": images[2], "platform_id": "File:Astronaut.png", "description": "Eileen Collins"},
    ]
    export.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    # Both at once, on one database: 20 entries at 10 a second take about 1.9 s.
    paced = start(db, str(listing), "--rate", "10", "--batch-size", "7", "--json")
    exported = backfill(db, str(export), "--json")
    out, err = paced.communicate(timeout=60)
    listed = summary_of(subprocess.CompletedProcess(paced.args, paced.returncode, out, err))

    assert listed["total"] == 20 and listed["created"] == 19 and listed["errors"] == 1
    assert listed["seconds"] >= 1.5
    (refused,) = listed["error_entries"]
    assert (refused["position"], refused["where"], refused["error"]) == (
        11,
        "line 13",
        "url_refused",
    )
    assert "entry 11 (line 13): url_refused" in err
    from_export = summary_of(exported)
    assert from_export["created"] == 3 and from_export["errors"] == 2
    assert [e["where"] for e in from_export["error_entries"]] == ["line 3", "line 4"]
    assert "url" in from_export["error_entries"][1]["detail"]

    rows = {row["platform_id"]: row for row in items(db)}
    assert len(rows) == 22 and set(urls) < set(rows)
    assert all(row["origin"] == "backfill" and row["state"] == "queued" for row in rows.values())
    cat = rows["File:Cat.jpg"]
    assert (cat["title"], json.loads(cat["tags"]), cat["media_url"]) == (
        "A cat",
        ["cat", "pet"],
        images[0],
    )
    assert json.loads(rows["File:Coffee.jpg"]["tags"]) == ["coffee", "cup"]
    assert rows["File:Coffee.jpg"]["uploader"] == "Bob"
    assert rows["File:Astronaut.png"]["description"] == "Eileen Collins"


def test_a_directory_after_a_dry_run_that_writes_nothing(db: Path, tmp_path: Path) -> None:
    uploads = tmp_path / "uploads"
    files = {"2024/05/cat.jpg": jpeg_of("chelsea.png"), "2024/06/coffee.jpg": jpeg_of("coffee.png"),
             "astronaut.png": skimage_bytes("astronaut.png"), "notes.txt": b"not an image"}  # fmt: skip
    for name, content in files.items():
        (uploads / name).parent.mkdir(parents=True, exist_ok=True)
        (uploads / name).write_bytes(content)
    checkpoint = tmp_path / "uploads.checkpoint"
    elsewhere = tmp_path / "real-run.checkpoint"
    empty = tmp_path / "empty.db"
    shutil.copyfile(db, empty)

    # At once: a dry run on an empty database, and the real run on another.
    dry_run = start(empty, str(uploads), "--dry-run", "--json")
    real = summary_of(backfill(db, str(uploads), "--checkpoint", str(elsewhere), "--json"))
    out, err = dry_run.communicate(timeout=60)
    dry = summary_of(subprocess.CompletedProcess(dry_run.args, dry_run.returncode, out, err))

    assert dry["dry_run"] is True and dry["created"] == 3 and dry["errors"] == 1
    assert dry["error_entries"][0]["where"] == "notes.txt"
    assert dry["error_entries"][0]["error"] == "unsupported_media"
    assert items(empty) == [] and not checkpoint.exists()

    assert real["created"] == 3 and real["errors"] == 1
    assert [(row["platform_id"], row["origin"]) for row in items(db)] == [
        ("2024/05/cat.jpg", "backfill"),
        ("2024/06/coffee.jpg", "backfill"),
        ("astronaut.png", "backfill"),
    ]
    assert json.loads(elsewhere.read_text())["finished"] is True


def wait_for_position(checkpoint: Path, position: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if json.loads(checkpoint.read_text())["position"] >= position:
                return
        except FileNotFoundError:
            pass
        time.sleep(0.01)
    pytest.fail(f"the checkpoint never reached {position}: {process.communicate()}")


def test_an_interrupted_run_resumes_and_submits_each_entry_once(
    db: Path, tmp_path: Path, images: list[str]
) -> None:
    urls = [f"{images[i % 4]}?n={i}" for i in range(30)]
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join(urls) + "\n")
    checkpoint = tmp_path / "progress.json"
    args = [str(listing), "--rate", "25", "--batch-size", "4", "--checkpoint", str(checkpoint)]

    killed = start(db, *args)
    wait_for_position(checkpoint, 8, killed)
    killed.send_signal(signal.SIGKILL)  # no chance to clean up: mid-batch, perhaps mid-write
    killed.communicate(timeout=30)
    first = json.loads(checkpoint.read_text())
    assert 8 <= first["position"] < 30 and first["finished"] is False

    resumed = backfill(db, *args, "--json")
    summary = summary_of(resumed)
    assert summary["resumed_from"] == first["position"] and summary["position"] == 30
    assert f"resuming after entry {first['position']}" in resumed.stderr
    assert sum(summary[key] for key in ("created", "existing", "requeued", "skipped")) == 30
    rows = items(db)
    assert sorted(row["platform_id"] for row in rows) == sorted(urls)  # each exactly once
    assert json.loads(checkpoint.read_text())["finished"] is True


def test_workers_process_the_items_and_a_rerun_skips_them_until_a_rescan(
    db: Path, tmp_path: Path, images: list[str], http_server: LocalHttpServer
) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join(images) + "\n")

    processed = summary_of(backfill(db, str(listing), "--workers", "2", "--json"))
    assert processed["created"] == 4 and processed["done"] == 4 and processed["failed"] == 0
    rows = items(db)
    assert [row["state"] for row in rows] == ["done"] * 4
    assert all(row["nsfw_score"] is not None and row["sha256"] for row in rows)

    # The same files again, as an export: the same items, done with this model version. A new
    # platform id whose SHA-1 is a file already done is skipped too, without a fetch.
    export = tmp_path / "export.jsonl"
    copy = {"url": f"{images[0]}?copy", "id": "File:Copy.jpg", "sha1": rows[0]["sha1"]}
    export.write_text("".join(json.dumps(r) + "\n" for r in [*({"url": u} for u in images), copy]))
    http_server.clear()
    rerun = summary_of(backfill(db, str(export), "--json"))
    assert rerun["skipped"] == 5 and rerun["created"] == 0 and len(items(db)) == 4
    assert http_server.requests == []

    future = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    rescan = summary_of(
        backfill(db, str(listing), "--restart", "--rescan-older-than", future, "--json")
    )
    assert rescan["requeued"] == 4
    assert [row["state"] for row in items(db)] == ["queued"] * 4
