"""`/v1/banks`, `/v1/hash`, `/v1/lookup`, `/v1/compare`, `/v1/checks`, `/v1/actions`, `/v1/audit`
over real HTTP on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable

import pytest

from fixtures.images import encode, photo, transformed_copies
from fixtures.servers import LocalHttpServer
from fixtures.service import LiveApi
from fixtures.smtp import SmtpTestServer

PDQ_A = "f" * 32 + "0" * 32


@pytest.fixture
def staff(api_each_db: LiveApi) -> tuple[LiveApi, dict[str, str], dict[str, str], dict[str, str]]:
    api = api_each_db
    tokens = {
        role: api.service.create_token(f"{role}-1", role)[0]
        for role in ("admin", "reviewer", "client")
    }
    deadline = time.monotonic() + 20
    while not api.service.index_status().ready and time.monotonic() < deadline:
        time.sleep(0.02)
    return api, api.as_(tokens["admin"]), api.as_(tokens["reviewer"]), api.as_(tokens["client"])


def png(name: str = "chelsea.png") -> bytes:
    return encode(photo(name).convert("RGB"), "PNG", compress_level=1)


def test_bank_crud_and_roles(
    staff: tuple[LiveApi, dict[str, str], dict[str, str], dict[str, str]],
) -> None:
    api, admin, reviewer, client = staff
    body = {"name": "NCMEC_LIST", "category": "child_protection", "pdq_threshold": 25}
    assert api.client.post("/v1/banks", json=body, headers=reviewer).status_code == 403
    created = api.client.post("/v1/banks", json=body, headers=admin)
    assert created.status_code == 201
    assert created.json()["actions"] == ["notify", "takedown"]
    assert created.json()["actions_configured"] is False
    assert api.client.get("/v1/banks", headers=client).status_code == 403
    assert [b["name"] for b in api.client.get("/v1/banks", headers=reviewer).json()] == [
        "NCMEC_LIST"
    ]
    patched = api.client.patch(
        "/v1/banks/NCMEC_LIST", json={"actions": ["notify"], "pdq_threshold": 40}, headers=admin
    )
    assert patched.json()["actions"] == ["notify"] and patched.json()["pdq_threshold"] == 40
    assert (
        api.client.patch(
            "/v1/banks/NCMEC_LIST", json={"pdq_threshold": 99}, headers=admin
        ).status_code
        == 400
    )
    assert (
        api.client.patch(
            "/v1/banks/NCMEC_LIST", json={"category": "spam"}, headers=admin
        ).status_code
        == 400
    )
    assert api.client.post("/v1/banks", json={"name": "bad name"}, headers=admin).status_code == 400
    assert api.client.post("/v1/banks", json=body, headers=admin).status_code == 409
    assert api.client.get("/v1/banks/MISSING", headers=admin).status_code == 404
    assert api.client.delete("/v1/banks/NCMEC_LIST", headers=admin).status_code == 204
    assert api.client.get("/v1/banks/NCMEC_LIST", headers=admin).status_code == 404
    audit = api.client.get("/v1/audit", params={"subject_type": "bank"}, headers=reviewer).json()
    assert [entry["event"] for entry in audit] == ["bank.delete", "bank.update", "bank.create"]
    assert {entry["actor"] for entry in audit} == {"admin-1"}


def test_content_by_image_and_by_hash(
    staff: tuple[LiveApi, dict[str, str], dict[str, str], dict[str, str]],
    http_server: LocalHttpServer,
) -> None:
    api, admin, reviewer, _ = staff
    api.client.post("/v1/banks", json={"name": "LIST"}, headers=admin)
    url = http_server.add("/cat.png", png(), "image/png")
    added = api.client.post(
        "/v1/banks/LIST/content", data={"url": url}, params={"note": "case 9"}, headers=admin
    )
    assert added.status_code == 201, added.text
    content = added.json()["content"]
    assert set(content["signals"]) == {"pdq", "md5", "sha1", "sha256"}
    assert content["note"] == "case 9" and content["media_url"] == url
    again = api.client.post(
        "/v1/banks/LIST/content", files={"file": ("c.png", png(), "image/png")}, headers=admin
    )
    assert again.json() == {"content": None, "added": 0, "duplicates": 4}
    by_hash = api.client.post(
        "/v1/banks/LIST/signals",
        json={"signals": {"pdq": PDQ_A}, "metadata": {"src": "x"}},
        headers=admin,
    )
    assert by_hash.status_code == 201 and by_hash.json()["content"]["metadata"] == {"src": "x"}
    shown = api.client.get("/v1/banks/LIST", headers=reviewer).json()
    assert shown["hashes"] == {"pdq": 2, "md5": 1, "sha1": 1, "sha256": 1}
    page = api.client.get("/v1/banks/LIST/content", params={"limit": 1}, headers=reviewer).json()
    assert [c["id"] for c in page] == [content["id"]]
    rest = api.client.get(
        "/v1/banks/LIST/content", params={"after_id": content["id"]}, headers=reviewer
    ).json()
    assert [c["id"] for c in rest] == [by_hash.json()["content"]["id"]]
    disabled = api.client.patch(
        f"/v1/banks/LIST/content/{content['id']}", json={"enabled": False}, headers=admin
    )
    assert disabled.json()["enabled"] is False
    lookup = api.client.post("/v1/lookup", json={"signals": {"pdq": content["signals"]["pdq"]}})
    assert lookup.json() == {"matches": []}
    api.client.patch(
        f"/v1/banks/LIST/content/{content['id']}", json={"enabled": True}, headers=admin
    )
    lookup = api.client.post("/v1/lookup", json={"signals": {"pdq": content["signals"]["pdq"]}})
    [match] = lookup.json()["matches"]
    assert match["bank"] == "LIST" and match["distance"] == 0 and match["note"] == "case 9"
    assert (
        api.client.delete(f"/v1/banks/LIST/content/{content['id']}", headers=admin).status_code
        == 204
    )
    assert (
        api.client.get(f"/v1/banks/LIST/content/{content['id']}", headers=admin).status_code == 404
    )


def test_import_and_export_round_trip(
    staff: tuple[LiveApi, dict[str, str], dict[str, str], dict[str, str]],
) -> None:
    api, admin, reviewer, _ = staff
    api.client.post("/v1/banks", json={"name": "IMPORTED"}, headers=admin)
    lines = (
        "# shared list\n"
        + "".join(f"pdq {i:064x}\n" for i in range(1, 301))
        + "md5 "
        + "c" * 32
        + "\nbogus line\n"
    )
    refused = api.client.post("/v1/banks/IMPORTED/import", content=lines.encode(), headers=admin)
    assert refused.status_code == 400 and "line 303" in refused.json()["detail"]
    assert api.client.get("/v1/banks/IMPORTED", headers=admin).json()["hashes"] == {}
    imported = api.client.post(
        "/v1/banks/IMPORTED/import",
        params={"on_error": "skip"},
        content=lines.encode(),
        headers=admin,
    ).json()
    assert imported["added"] == 301 and imported["skipped"] == 1 and imported["duplicates"] == 0
    again = api.client.post(
        "/v1/banks/IMPORTED/import",
        params={"on_error": "skip"},
        content=lines.encode(),
        headers=admin,
    ).json()
    assert again["added"] == 0 and again["duplicates"] == 301
    text = api.client.get("/v1/banks/IMPORTED/export", headers=reviewer)
    assert text.headers["content-type"].startswith("text/plain")
    assert sorted(text.text.splitlines()) == sorted(
        line for line in lines.splitlines() if line.startswith(("pdq", "md5"))
    )
    exported = api.client.get(
        "/v1/banks/IMPORTED/export", params={"format": "csv"}, headers=reviewer
    )
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(rows) == 301 and rows[0]["signal_type"] == "pdq"
    api.client.post("/v1/banks", json={"name": "COPY"}, headers=admin)
    copied = api.client.post(
        "/v1/banks/COPY/import", params={"format": "csv"}, content=exported.content, headers=admin
    ).json()
    assert copied["added"] == 301
    near = f"{1 ^ 0b111:064x}"  # three bits from the first hash
    matches = api.client.post("/v1/lookup", json={"signals": {"pdq": near}}).json()["matches"]
    assert {(m["bank"], m["distance"]) for m in matches if m["distance"] == 3} >= {
        ("IMPORTED", 3),
        ("COPY", 3),
    }


def test_hash_compare_and_lookup_validation(
    staff: tuple[LiveApi, dict[str, str], dict[str, str], dict[str, str]],
) -> None:
    api, *_ = staff
    hashes = api.client.post(
        "/v1/hash", content=png(), headers={"Content-Type": "image/png"}
    ).json()
    assert hashes["pdq"]["quality"] >= 50 and hashes["pdq"]["matchable"] is True
    assert len(hashes["sha1_base36"]) == 31
    assert (
        api.client.post(
            "/v1/hash", content=b"not an image", headers={"Content-Type": "image/png"}
        ).status_code
        == 415
    )
    assert api.client.post("/v1/lookup", json={"signals": {"pdq": "zz"}}).status_code == 400
    assert api.client.post("/v1/lookup", json={"signals": {}}).status_code == 400
    assert (
        api.client.post(
            "/v1/lookup", content=b"[", headers={"Content-Type": "application/json"}
        ).status_code
        == 400
    )
    compared = api.client.post(
        "/v1/compare", json={"left": PDQ_A, "right": "0" * 64, "threshold": 128}
    )
    assert compared.json() == {"distance": 128, "match": True}


def test_checks_act_once_and_show_in_actions_and_audit(
    make_api: Callable[..., LiveApi],
    smtp_server: SmtpTestServer,
) -> None:
    api = make_api(
        "sqlite",
        smtp_host="127.0.0.1",
        smtp_port=smtp_server.port,
        notify_recipients="trust@example.org",
    )
    admin = api.as_(api.service.create_token("admin-1", "admin")[0])
    client = api.as_(api.service.create_token("wiki", "client")[0])
    reviewer = api.as_(api.service.create_token("rev", "reviewer")[0])
    while not api.service.index_status().ready:
        time.sleep(0.02)
    api.client.post("/v1/banks", json={"name": "CP", "category": "child_protection"}, headers=admin)
    api.client.post(
        "/v1/banks/CP/content", content=png(), headers={**admin, "Content-Type": "image/png"}
    )
    copy = transformed_copies(photo("chelsea.png"))["half-jpeg"]
    assert (
        api.client.post(
            "/v1/checks", content=copy, headers={"Content-Type": "image/jpeg"}
        ).status_code
        == 401
    )
    first = api.client.post(
        "/v1/checks",
        params={"platform_id": "File:Cat.jpg", "media_url": "https://wiki/File:Cat.jpg"},
        content=copy,
        headers={**client, "Content-Type": "image/jpeg"},
    )
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["item"]["match_status"] == "match" and body["new_match_banks"] == ["CP"]
    assert {(a["action"], a["status"]) for a in body["actions"]} == {
        ("takedown", "would_take_down"),
        ("notify", "done"),
    }
    second = api.client.post(
        "/v1/checks",
        params={"platform_id": "File:Cat.jpg"},
        content=copy,
        headers={**client, "Content-Type": "image/jpeg"},
    ).json()
    assert second["actions"] == [] and second["item"]["id"] == body["item"]["id"]
    assert len(smtp_server.messages) == 1
    known = api.client.post(
        "/v1/checks",
        params={"platform_id": "File:Copy.jpg", "sha256": body["item"]["sha256"]},
        headers=client,
    ).json()
    assert known["item"]["match_status"] == "match" and len(known["actions"]) == 2
    actions = api.client.get(
        "/v1/actions", params={"item_id": body["item"]["id"]}, headers=reviewer
    ).json()
    assert len(actions) == 2
    assert api.client.get("/v1/actions", headers=client).status_code == 403
    audit = api.client.get("/v1/audit", params={"subject_type": "item"}, headers=reviewer).json()
    assert {e["actor"] for e in audit} == {"wiki"} and len(audit) == 4
    bad = api.client.post("/v1/checks", params={"sha256": "nothex"}, headers=client)
    assert bad.status_code == 400


def test_an_import_is_all_or_nothing(
    staff: tuple[LiveApi, dict[str, str], dict[str, str], dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api, admin, *_ = staff
    api.client.post("/v1/banks", json={"name": "ATOMIC"}, headers=admin)
    good = "".join(f"md5 {i:032x}\n" for i in range(1, 12_001))  # more than two import batches
    late_error = api.client.post(
        "/v1/banks/ATOMIC/import", content=(good + "md5 xyz\n").encode(), headers=admin
    )
    assert late_error.status_code == 400 and "line 12001" in late_error.json()["detail"]
    not_utf8 = api.client.post(
        "/v1/banks/ATOMIC/import", content=good.encode() + b"md5 \xff\xfe\n", headers=admin
    )
    assert not_utf8.status_code == 400 and "UTF-8" in not_utf8.json()["detail"]
    monkeypatch.setattr("mediaguard.api.banks.MAX_IMPORT_BYTES", 100_000)
    too_big = api.client.post("/v1/banks/ATOMIC/import", content=good.encode(), headers=admin)
    assert too_big.status_code == 413 and too_big.json()["error"] == "media_too_large"
    monkeypatch.undo()
    assert api.client.get("/v1/banks/ATOMIC", headers=admin).json()["hashes"] == {}
    imported = api.client.post("/v1/banks/ATOMIC/import", content=good.encode(), headers=admin)
    assert imported.json()["added"] == 12_000
