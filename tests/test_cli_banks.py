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


def test_a_running_server_sees_hashes_another_process_imports(db: Path, tmp_path: Path) -> None:
    """Two real processes on one database: `mediaguard serve`, and the CLI importing a list."""
    import os
    import subprocess
    import sys
    import time

    import httpx

    from fixtures.servers import unused_tcp_port

    port = unused_tcp_port()
    env = {
        **os.environ,
        "MEDIAGUARD_DATABASE_URL": f"sqlite:///{db}",
        "MEDIAGUARD_PORT": str(port),
        "MEDIAGUARD_LOG_LEVEL": "WARNING",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "mediaguard", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/status", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            pytest.fail("mediaguard serve did not become ready")
        near = f"{(0b111 << 253) | 1:064x}"  # three bits from the first imported hash
        lookup = {"signal_type": "pdq", "signal": near}
        assert httpx.get(f"{base}/m/lookup", params=lookup).json() == {}
        listing = tmp_path / "list.txt"
        listing.write_text("".join(f"pdq {pdq(i)}\n" for i in range(1, 1001)))
        assert run(["banks", "create", "LIVE"], db).returncode == 0
        assert run(["banks", "import", "LIVE", str(listing)], db).returncode == 0
        imported_at = time.monotonic()
        while True:
            found = httpx.get(f"{base}/m/lookup", params=lookup).json()
            if found or time.monotonic() - imported_at > 1.0:
                break
            time.sleep(0.02)
        assert found["LIVE"][0]["distance"] == "3"
    finally:
        server.terminate()
        server.wait(timeout=20)
