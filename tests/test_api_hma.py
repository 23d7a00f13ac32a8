"""HMA's routes with HMA's shapes, over real HTTP, with mediaguard's auth on bank changes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from fixtures.images import encode, photo, transformed_copies
from fixtures.servers import LocalHttpServer
from fixtures.service import LiveApi


@pytest.fixture
def hma(make_api: Callable[..., LiveApi]) -> tuple[LiveApi, dict[str, str]]:
    api = make_api("sqlite")
    admin, _ = api.service.create_token("curator", "admin")
    deadline = time.monotonic() + 20
    while api.client.get("/status").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.02)
    return api, api.as_(admin)


def png(name: str = "chelsea.png") -> bytes:
    return encode(photo(name).convert("RGB"), "PNG", compress_level=1)


def test_status_routes(make_api: Callable[..., LiveApi]) -> None:
    api = make_api("sqlite")
    assert api.client.get("/status/live").text == "I-AM-ALIVE"
    deadline = time.monotonic() + 20
    while (status := api.client.get("/status")).status_code != 200 and time.monotonic() < deadline:
        assert status.status_code == 503 and status.text in ("INDEX-NOT-LOADED", "INDEX-STALE")
        time.sleep(0.02)
    assert status.text == "I-AM-ALIVE"


def test_bank_lifecycle_with_hma_shapes(hma: tuple[LiveApi, dict[str, str]]) -> None:
    api, admin = hma
    created = api.client.post("/c/banks", json={"name": "TEST_BANK"}, headers=admin)
    assert created.status_code == 201
    assert created.json()["name"] == "TEST_BANK"
    assert created.json()["matching_enabled_ratio"] == 1.0
    assert created.json()["pdq_threshold"] == 31
    listed = api.client.get("/c/banks", headers=admin).json()
    assert [bank["name"] for bank in listed] == ["TEST_BANK"]
    changed = api.client.put("/c/bank/TEST_BANK", json={"enabled": False}, headers=admin)
    assert changed.json()["matching_enabled_ratio"] == 0.0
    renamed = api.client.put("/c/bank/TEST_BANK", json={"name": "RENAMED"}, headers=admin)
    assert renamed.json()["name"] == "RENAMED"
    assert api.client.get("/c/bank/TEST_BANK", headers=admin).status_code == 404
    assert api.client.delete("/c/bank/RENAMED", headers=admin).json() == {"message": "Done"}
    assert api.client.get("/c/banks", headers=admin).json() == []


def test_bank_changes_need_an_admin_token(hma: tuple[LiveApi, dict[str, str]]) -> None:
    api, admin = hma
    client_token, _ = api.service.create_token("platform", "client")
    assert api.client.post("/c/banks", json={"name": "X"}).status_code == 401
    refused = api.client.post("/c/banks", json={"name": "X"}, headers=api.as_(client_token))
    assert refused.status_code == 403
    assert "message" in refused.json()
    api.client.post("/c/banks", json={"name": "X"}, headers=admin)
    for method, path in (
        ("PUT", "/c/bank/X"),
        ("DELETE", "/c/bank/X"),
        ("POST", "/c/bank/X/signal"),
        ("POST", "/c/bank/X/content"),
    ):
        response = api.client.request(method, path, json={}, headers=api.as_(client_token))
        assert response.status_code == 403, path


def test_bad_requests_get_clear_errors(hma: tuple[LiveApi, dict[str, str]]) -> None:
    api, admin = hma
    bad_name = api.client.post("/c/banks", json={"name": "lower-case"}, headers=admin)
    assert bad_name.status_code == 400 and "^[A-Z_][A-Z0-9_]*$" in bad_name.json()["message"]
    malformed = api.client.post(
        "/c/banks", content=b"{not json", headers={**admin, "Content-Type": "application/json"}
    )
    assert malformed.status_code == 400 and "JSON" in malformed.json()["message"]
    api.client.post("/c/banks", json={"name": "B"}, headers=admin)
    assert api.client.post("/c/banks", json={"name": "B"}, headers=admin).status_code == 409
    bad_hash = api.client.post("/c/bank/B/signal", json={"pdq": "xyz"}, headers=admin)
    assert bad_hash.status_code == 400 and "pdq" in bad_hash.json()["message"]
    unknown = api.client.post("/c/bank/B/signal", json={"tmk": "ab"}, headers=admin)
    assert unknown.status_code == 400
    assert (
        api.client.post("/c/bank/NOPE/signal", json={"md5": "a" * 32}, headers=admin).status_code
        == 404
    )
    raw = api.client.get("/m/raw_lookup", params={"signal_type": "pdq", "signal": "short"})
    assert raw.status_code == 400
    assert api.client.get("/m/lookup").status_code == 400
    compare = api.client.post("/m/compare", json={"pdq": ["a" * 64]})
    assert compare.status_code == 400


def test_hash_lookup_and_content_by_image(
    hma: tuple[LiveApi, dict[str, str]], http_server: LocalHttpServer
) -> None:
    api, admin = hma
    api.client.post("/c/banks", json={"name": "TEST_BANK", "category": "ncii"}, headers=admin)
    url = http_server.add("/cat.png", png(), "image/png")
    metadata = json.dumps({"content_id": "case-1", "content_uri": "https://x/1"})
    added = api.client.post(
        "/c/bank/TEST_BANK/content", params={"url": url, "metadata": metadata}, headers=admin
    )
    assert added.status_code == 200, added.text
    content_id = added.json()["id"]
    assert set(added.json()["signals"]) == {"pdq", "md5", "sha1", "sha256"}

    hashed = api.client.get("/h/hash", params={"url": url}).json()
    assert hashed["pdq"] == added.json()["signals"]["pdq"]
    posted = api.client.post("/h/hash", files={"photo": ("cat.png", png(), "image/png")}).json()
    assert posted == hashed

    copy = transformed_copies(photo("chelsea.png"))["jpeg-q50"]
    lookup = api.client.post("/m/lookup", files={"photo": ("copy.jpg", copy, "image/jpeg")})
    body = lookup.json()
    assert set(body) == {"pdq", "md5", "sha1", "sha256"}
    [match] = body["pdq"]["TEST_BANK"]
    assert match["bank_content_id"] == content_id
    assert isinstance(match["distance"], str) and int(match["distance"]) <= 31
    assert match["metadata"] == {"content_id": "case-1", "content_uri": "https://x/1"}
    assert body["md5"] == {}

    by_url = api.client.get("/m/lookup", params={"url": url}).json()
    assert by_url["pdq"]["TEST_BANK"][0]["distance"] == "0"
    assert by_url["md5"]["TEST_BANK"][0]["bank_content_id"] == content_id
    by_signal = api.client.get(
        "/m/lookup", params={"signal_type": "pdq", "signal": hashed["pdq"]}
    ).json()
    assert list(by_signal) == ["TEST_BANK"]
    other_bank = api.client.get(
        "/m/lookup", params={"signal_type": "pdq", "signal": hashed["pdq"], "banks": "OTHER"}
    ).json()
    assert other_bank == {}
    raw = api.client.get("/m/raw_lookup", params={"signal_type": "pdq", "signal": hashed["pdq"]})
    assert raw.json() == {"matches": [content_id]}
    raw_distance = api.client.get(
        "/m/raw_lookup",
        params={"signal_type": "pdq", "signal": hashed["pdq"], "include_distance": "true"},
    )
    assert raw_distance.json() == {"matches": [{"bank_content_id": content_id, "distance": "0"}]}

    removed = api.client.delete(f"/c/bank/TEST_BANK/content/{content_id}", headers=admin)
    assert removed.json() == {"deleted": 4}
    assert api.client.get(
        "/m/raw_lookup", params={"signal_type": "pdq", "signal": hashed["pdq"]}
    ).json() == {"matches": []}


def test_signal_route_and_compare(hma: tuple[LiveApi, dict[str, str]]) -> None:
    api, admin = hma
    api.client.post("/c/banks", json={"name": "HASHES"}, headers=admin)
    pdq = "f" * 32 + "0" * 32
    added = api.client.post("/c/bank/HASHES/signal", json={"pdq": pdq.upper()}, headers=admin)
    assert added.json()["signals"] == {"pdq": pdq}
    assert (
        api.client.post("/c/bank/HASHES/signal", json={"pdq": pdq}, headers=admin).status_code
        == 409
    )
    near = "e" + "f" * 31 + "0" * 32  # one bit away
    found = api.client.get("/m/lookup", params={"signal_type": "pdq", "signal": near}).json()
    assert found == {
        "HASHES": [{"bank_content_id": added.json()["id"], "distance": "1", "metadata": {}}]
    }
    compared = api.client.post("/m/compare", json={"pdq": [pdq, near]}).json()
    assert compared == {"pdq": [True, {"distance": 1}]}
    far = "0" * 64
    assert api.client.post("/m/compare", json={"pdq": [pdq, far]}).json() == {
        "pdq": [False, {"distance": 128}]
    }


def test_hostile_media_gets_clear_errors(
    hma: tuple[LiveApi, dict[str, str]], http_server: LocalHttpServer
) -> None:
    from fixtures.images import png_header_only, truncated

    api, admin = hma
    not_image = api.client.post("/h/hash", files={"photo": ("x.jpg", b"<html>", "image/jpeg")})
    assert not_image.status_code == 415 and "not an image" in not_image.json()["message"]
    bomb = api.client.post(
        "/h/hash", files={"photo": ("b.png", png_header_only(60000, 60000), "image/png")}
    )
    assert bomb.status_code == 413
    cut = api.client.post("/h/hash", files={"photo": ("t.png", truncated(png()), "image/png")})
    assert cut.status_code == 200 and len(cut.json()["pdq"]) == 64
    private = api.client.get("/h/hash", params={"url": "http://169.254.169.254/latest/meta-data"})
    assert private.status_code == 400 and private.json()["error"] == "url_refused"
    missing = api.client.get("/h/hash", params={"url": http_server.url("/nothing.png")})
    assert missing.status_code == 502
    api.client.post("/c/banks", json={"name": "SAFE"}, headers=admin)
    refused = api.client.post(
        "/c/bank/SAFE/content",
        files={"photo": ("x.jpg", b"GIF89a-not-really", "image/gif")},
        headers=admin,
    )
    assert refused.status_code == 415
    assert api.client.get("/c/bank/SAFE", headers=admin).json()["name"] == "SAFE"
    assert api.service.banks.counts("SAFE") == {}
