"""The `mediaguard` command, run as a real process against a real database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from mediaguard.store import Store
from mediaguard.store.db import utcnow
from mediaguard.store.models import MEDIA_ITEMS

from fixtures.catalogue import write_terms
from fixtures.cli import run
from fixtures.images import REFERENCE_SCORES, SKIMAGE_DATA
from fixtures.servers import LocalHttpServer


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "cli.db"


def test_score_paths_and_urls_as_json_lines(
    db: Path, http_server: LocalHttpServer, logo_png: bytes
) -> None:
    http_server.add("/logo.png", logo_png, content_type="image/png")
    astronaut = str(SKIMAGE_DATA / "astronaut.png")
    result = run(
        ["score", astronaut, http_server.url("/logo.png"), "--json"],
        db,
        MEDIAGUARD_FETCH_ALLOW_LOOPBACK="true",
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["source"] for line in lines] == [astronaut, http_server.url("/logo.png")]
    for line, name in zip(lines, ["astronaut.png", "logo.png"], strict=True):
        assert line["score"] == pytest.approx(REFERENCE_SCORES[name], abs=1e-4)
        assert {"sha1", "sha256", "model", "model_version"} <= set(line)
    store = Store(f"sqlite:///{db}")
    try:
        assert store.scores.count() == 2
    finally:
        store.close()


def test_score_reports_bad_sources_and_exits_1(db: Path, tmp_path: Path) -> None:
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not an image")
    good = str(SKIMAGE_DATA / "coffee.png")
    result = run(["score", good, str(text_file), str(tmp_path / "missing.jpg")], db)
    assert result.returncode == 1
    assert result.stdout.strip().endswith(good)
    assert "not an image" in result.stderr
    assert "missing.jpg" in result.stderr


def test_fast_mode_is_a_separate_model_version(db: Path) -> None:
    result = run(["score", str(SKIMAGE_DATA / "astronaut.png"), "--json", "--mode", "fast"], db)
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stdout)
    assert "/fast" in line["model_version"]
    assert line["score"] == pytest.approx(REFERENCE_SCORES["astronaut.png"], abs=0.01)


def test_tokens_and_db_commands(db: Path) -> None:
    assert run(["db", "upgrade"], db).returncode == 0
    revision = run(["db", "current"], db).stdout.strip()
    assert revision
    created = run(["tokens", "create", "--role", "reviewer", "--name", "alice"], db)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("mg_")
    duplicate = run(["tokens", "create", "--role", "client", "--name", "alice"], db)
    assert duplicate.returncode == 2
    listed = run(["tokens", "list"], db).stdout
    assert "alice\treviewer" in listed
    assert token not in listed
    assert run(["tokens", "revoke", "alice"], db).returncode == 0
    assert "revoked" in run(["tokens", "list"], db).stdout
    assert run(["tokens", "revoke", "bob"], db).returncode == 2


def test_bad_role_is_refused(db: Path) -> None:
    result = run(["tokens", "create", "--role", "superuser", "--name", "x"], db)
    assert result.returncode == 2
    assert "role" in result.stderr


def test_terms_relabel_and_status(db: Path, tmp_path: Path) -> None:
    assert run(["terms", "relabel", "--no-progress"], db).returncode == 2
    store = Store(f"sqlite:///{db}")
    try:
        store.upgrade()
        now = utcnow()
        with store.engine.begin() as connection:
            connection.execute(
                sa.insert(MEDIA_ITEMS),
                [
                    {
                        "platform_id": str(n),
                        "intake_key": str(n),
                        "title": title,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for n, title in enumerate(["Nude beach", "Scunthorpe", "A cat"])
                ],
            )
        terms = write_terms(tmp_path / "terms.txt", "nude beach", "cunt")
        env = {"MEDIAGUARD_SENSITIVE_TERMS_FILE": str(terms)}
        relabel = run(["terms", "relabel", "--no-progress"], db, **env)
        assert relabel.returncode == 0, relabel.stderr
        assert "2 terms" in relabel.stdout and "every item labelled" in relabel.stdout
        status = json.loads(run(["terms", "status", "--json"], db, **env).stdout)
        assert status["terms"] == 2 and status["relabelled"] == 3
        assert status["items_to_relabel"] == 0 and status["source"] == str(terms)
        with store.engine.connect() as connection:
            flagged = (
                connection.execute(
                    sa.select(MEDIA_ITEMS.c.title).where(MEDIA_ITEMS.c.text_sensitive)
                )
                .scalars()
                .all()
            )
        assert flagged == ["Nude beach"]
    finally:
        store.close()
