"""`mediaguard banks ...` as real processes: create, import, export, and a local-file exchange
fetched end to end (and fetched again after the list changed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mediaguard.store import Store

from fixtures.cli import run


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "banks.db"
    assert run(["db", "upgrade"], path).returncode == 0
    return path


def pdq(i: int) -> str:
    return f"{i:064x}"


def test_import_export_round_trip(db: Path, tmp_path: Path) -> None:
    created = run(["banks", "create", "SHARED_LIST", "--category", "ncii", "--threshold", "20"], db)
    assert created.returncode == 0, created.stderr
    hashes = tmp_path / "list.csv"
    hashes.write_text(
        "hash,signal_type,source\n"
        + "".join(f"{pdq(i)},pdq,partner-{i % 3}\n" for i in range(1, 101))
        + "not-a-hash,pdq,x\n"
    )
    refused = run(["banks", "import", "SHARED_LIST", str(hashes)], db)
    assert refused.returncode == 2 and "line 102" in refused.stderr
    imported = run(["banks", "import", "SHARED_LIST", str(hashes), "--skip-errors"], db)
    assert imported.returncode == 0, imported.stderr
    assert "added 100" in imported.stdout and "skipped 1" in imported.stdout
    out = tmp_path / "out.csv"
    exported = run(["banks", "export", "SHARED_LIST", str(out), "--format", "csv"], db)
    assert exported.returncode == 0 and "exported 100" in exported.stderr
    text = run(["banks", "export", "SHARED_LIST"], db)
    assert sorted(text.stdout.split()) == sorted(["pdq"] * 100 + [pdq(i) for i in range(1, 101)])
    listed = run(["banks", "list"], db)
    assert listed.stdout.split("\t")[:3] == ["SHARED_LIST", "ncii", "20"]
    assert "partner-1" in out.read_text()


def test_local_file_exchange_fetch_resumes_and_follows_the_list(db: Path, tmp_path: Path) -> None:
    shared = tmp_path / "shared.txt"
    shared.write_text("".join(f"pdq {pdq(i)}\n" for i in range(1, 51)) + f"md5 {'a' * 32}\n")
    config = json.dumps({"filename": str(shared)})
    created = run(
        ["banks", "create", "FROM_FILE", "--exchange", "local_file", "--exchange-config", config],
        db,
    )
    assert created.returncode == 0, created.stderr
    first = run(["banks", "fetch", "FROM_FILE"], db)
    assert first.returncode == 0, first.stderr
    assert "added 51" in first.stdout
    # The list drops ten hashes and gains one: the next fetch follows it.
    shared.write_text("".join(f"pdq {pdq(i)}\n" for i in range(11, 52)) + f"md5 {'a' * 32}\n")
    second = run(["banks", "fetch", "FROM_FILE"], db)
    assert second.returncode == 0, second.stderr
    assert "added 1" in second.stdout and "removed 10" in second.stdout
    store = Store(f"sqlite:///{db}")
    try:
        bank = store.banks.get("FROM_FILE")
        assert bank.exchange_checkpoint is not None and bank.fetched_at is not None
        assert store.banks.counts(bank.id) == {"pdq": 41, "md5": 1}
        events = [e.event for e in store.audit.list(subject_type="bank", subject_id="FROM_FILE")]
        assert events == ["bank.fetch", "bank.fetch", "bank.create"]
    finally:
        store.close()


def test_fetch_errors_are_clear(db: Path, tmp_path: Path) -> None:
    assert run(["banks", "create", "PLAIN"], db).returncode == 0
    no_exchange = run(["banks", "fetch", "PLAIN"], db)
    assert no_exchange.returncode == 2 and "no exchange" in no_exchange.stderr
    missing = json.dumps({"filename": str(tmp_path / "missing.txt")})
    run(["banks", "create", "GONE", "--exchange", "local_file", "--exchange-config", missing], db)
    gone = run(["banks", "fetch", "GONE"], db)
    assert gone.returncode == 2 and "missing.txt" in gone.stderr
    run(["banks", "create", "NCMEC_FEED", "--exchange", "ncmec", "--exchange-config", "{}"], db)
    no_credentials = run(["banks", "fetch", "NCMEC_FEED"], db)
    assert no_credentials.returncode == 2
    assert "MEDIAGUARD_NCMEC_CREDENTIALS" in no_credentials.stderr
    unknown = run(["banks", "import", "NOPE", str(tmp_path / "x.txt")], db)
    assert unknown.returncode == 2
