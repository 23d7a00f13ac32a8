"""`/v1/media` over real HTTP with the embedded set-up: SQLite, Huey's SQLite queue and the
in-process worker that `mediaguard serve` runs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from mediaguard.api import create_app
from mediaguard.service import Service
from mediaguard.signals.digests import compute_digests, sha1_hex_to_base36

from fixtures.images import encode, jpeg_of, photo
from fixtures.servers import LocalHttpServer
from fixtures.service import ServerThread


@dataclass
class Api:
    client: httpx.Client
    service: Service
    client_token: dict[str, str]
    reviewer_token: dict[str, str]
    admin_token: dict[str, str]

    def wait(self, item_id: int, timeout: float = 15) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body: dict[str, Any] = self.client.get(
                f"/v1/media/{item_id}", headers=self.client_token
            ).json()
            if body["state"] in ("done", "failed"):
                return body
            time.sleep(0.02)
        raise AssertionError(f"item {item_id} not processed in {timeout} s: {body}")


@pytest.fixture
def api(make_service: Callable[..., Service]) -> Iterator[Api]:
    with serving(make_service("sqlite", serve_workers=2, sweep_interval=0.2)) as api:
        yield api


@contextmanager
def serving(service: Service) -> Iterator[Api]:
    """`service` behind the app on a loopback port, with a token for each role."""
    tokens = {
        role: {"Authorization": f"Bearer {service.create_token(role, role)[0]}"}  # type: ignore[arg-type]
        for role in ("client", "reviewer", "admin")
    }
    server = ServerThread(create_app(service, jobs=True))
    base_url = server.__enter__()
    try:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            yield Api(client, service, tokens["client"], tokens["reviewer"], tokens["admin"])
    finally:
        server.__exit__()


def test_a_json_notification_answers_at_once_and_the_worker_gives_the_verdict(
    api: Api, http_server: LocalHttpServer
) -> None:
    content = jpeg_of("astronaut.png")
    url = http_server.add("/w/File_Astronaut.jpg", content)
    notification = {
        "url": url,
        "platform_id": "File:Astronaut.jpg",
        "title": "Eileen Collins",
        "description": "NASA portrait",
        "tags": ["nasa", "portrait"],
        "uploader": "Jo",
        "sha1": sha1_hex_to_base36(compute_digests(content).sha1),
    }
    response = api.client.post("/v1/media", json=notification, headers=api.client_token)
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["outcome"] == "created" and accepted["state"] in ("queued", "processing")
    assert accepted["status_url"] == f"/v1/media/{accepted['id']}"

    done = api.wait(accepted["id"])
    expected = api.service.score_bytes(content)
    assert done["state"] == "done" and done["error"] is None and done["attempts"] == 1
    signals = done["signals"]
    assert signals["sha1"] == compute_digests(content).sha1
    assert signals["sha1_base36"] == notification["sha1"]
    assert signals["nsfw"]["score"] == pytest.approx(expected.score, abs=1e-6)
    assert signals["nsfw"]["model_version"] == expected.model_version
    assert len(signals["pdq"]["hash"]) == 64 and signals["pdq"]["quality"] >= 50
    assert (signals["width"], signals["height"], signals["format"]) == (512, 512, "JPEG")
    assert done["tags"] == ["nasa", "portrait"] and done["uploader"] == "Jo"
    assert done["match_status"] == "no_match" and done["matches"] == [] and done["actions"] == []
    assert done["sensitivity"] == []

    again = api.client.post("/v1/media", json=notification, headers=api.client_token)
    assert again.status_code == 200 and again.json()["id"] == accepted["id"]
    assert again.json()["outcome"] == "skipped"

    for query in (
        {"sha1": notification["sha1"]},
        {"sha1": signals["sha1"]},
        {"platform_id": "File:Astronaut.jpg"},
    ):
        found = api.client.get("/v1/media", params=query, headers=api.reviewer_token).json()
        assert [item["id"] for item in found["items"]] == [accepted["id"]], query


def test_a_multipart_upload_carries_the_bytes_and_the_same_fields(api: Api) -> None:
    content = encode(photo("coffee.png"), "PNG")
    fields = {"platform_id": "upload-7", "title": "Coffee", "tags": "drink, cup"}
    response = api.client.post(
        "/v1/media",
        files={"file": ("coffee.png", content, "image/png")},
        data=fields,
        headers=api.client_token,
    )
    assert response.status_code == 202, response.text
    done = api.wait(response.json()["id"])
    assert done["state"] == "done" and done["url"] is None
    assert done["tags"] == ["drink", "cup"] and done["signals"]["format"] == "PNG"
    repeated = api.client.post(
        "/v1/media",
        files={"file": ("coffee.png", content, "image/png")},
        data={**fields, "tags": ["a", "b"]},
        headers=api.client_token,
    )
    assert repeated.status_code == 200 and repeated.json()["id"] == done["id"]
    assert repeated.json()["tags"] == ["a", "b"]


def test_a_failed_item_shows_the_reason_and_an_admin_can_retry_it(
    api: Api, http_server: LocalHttpServer
) -> None:
    url = http_server.add("/missing.jpg", b"gone", "text/plain", status=404)
    accepted = api.client.post("/v1/media", json={"url": url}, headers=api.client_token).json()
    failed = api.wait(accepted["id"])
    assert failed["state"] == "failed" and failed["error"]["code"] == "fetch_failed"
    assert "404" in failed["error"]["detail"]

    http_server.add("/missing.jpg", jpeg_of())
    forbidden = api.client.post(f"/v1/media/{failed['id']}/retry", headers=api.client_token)
    assert forbidden.status_code == 403
    retried = api.client.post(f"/v1/media/{failed['id']}/retry", headers=api.admin_token)
    assert retried.status_code == 202
    assert api.wait(failed["id"])["state"] == "done"
    again = api.client.post(f"/v1/media/{failed['id']}/retry", headers=api.admin_token)
    assert again.status_code == 409


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, None),
        ({"json": [1, 2]}, 400, "invalid_input"),
        ({"json": {"platform_id": "x"}}, 400, "missing_input"),
        ({"json": {"url": "file:///etc/passwd"}}, 400, "url_refused"),
        ({"json": {"url": "http://10.0.0.1/a.jpg"}}, 400, "url_refused"),
        ({"json": {"url": "http://example.org/a.jpg", "tags": {"a": 1}}}, 400, "invalid_input"),
        ({"json": {"url": "http://example.org/a.jpg", "title": ["x"]}}, 400, "invalid_input"),
        ({"json": {"url": "http://example.org/a.jpg", "sha1": "xyz"}}, 400, "invalid_input"),
        ({"content": b"hello", "headers": {"content-type": "text/plain"}}, 400, "missing_input"),
        ({"files": {"file": ("a.txt", b"just text", "text/plain")}}, 415, "unsupported_media"),
        ({"files": {"other": ("a.png", b"x", "image/png")}}, 400, "missing_input"),
        ({"files": {"file": ("a.jpg", b"x")}, "data": {"url": "http://e.org/a"}}, 400, None),
    ],
)
def test_bad_notifications_get_a_clear_error_and_store_nothing(
    api: Api, kwargs: dict[str, Any], status: int, code: str | None
) -> None:
    headers = {**api.client_token, **kwargs.pop("headers", {})}
    response = api.client.post("/v1/media", headers=headers, **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["detail"] and (code is None or body["error"] == code)
    listed = api.client.get("/v1/media", headers=api.reviewer_token).json()
    assert listed["items"] == []


def test_media_routes_need_the_right_token(api: Api) -> None:
    notification = {"url": "http://example.org/a.jpg"}
    assert api.client.post("/v1/media", json=notification).status_code == 401
    assert (
        api.client.post("/v1/media", json=notification, headers=api.reviewer_token).status_code
        == 403
    )
    assert api.client.get("/v1/media/1").status_code == 401
    unknown = api.client.get("/v1/media/999999", headers=api.client_token)
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
    assert api.client.get("/v1/media/abc", headers=api.client_token).status_code == 400


def test_queue_metrics_describe_the_pipeline(api: Api, http_server: LocalHttpServer) -> None:
    url = http_server.add("/m.jpg", jpeg_of())
    accepted = api.client.post("/v1/media", json={"url": url}, headers=api.client_token).json()
    api.wait(accepted["id"])
    text = api.client.get("/metrics").text
    for line in (
        'mediaguard_items{state="done"} 1.0',
        "mediaguard_queue_depth 0.0",
        "mediaguard_queue_oldest_age_seconds 0.0",
        'mediaguard_items_processed_total{result="done"} 1.0',
        'mediaguard_items_submitted_total{origin="api"} 1.0',
        "mediaguard_upload_to_verdict_seconds_count 1.0",
        "mediaguard_item_processing_seconds_count 1.0",
        "mediaguard_queue_messages 0.0",
    ):
        assert line in text, line


def test_queue_metrics_count_what_waits_for_a_worker(
    make_service: Callable[..., Service], http_server: LocalHttpServer
) -> None:
    """No worker here: the items stay queued, and the gauges say so."""
    with serving(make_service("sqlite", serve_workers=0)) as api:
        for name in ("a", "b"):
            url = http_server.add(f"/{name}.jpg", jpeg_of())
            response = api.client.post("/v1/media", json={"url": url}, headers=api.client_token)
            assert response.status_code == 202, response.text
        time.sleep(0.05)
        text = api.client.get("/metrics").text
        for line in (
            'mediaguard_items{state="queued"} 2.0',
            "mediaguard_queue_depth 2.0",
            "mediaguard_queue_messages 2.0",
        ):
            assert line in text, line
        [age] = [
            float(line.split()[1])
            for line in text.splitlines()
            if line.startswith("mediaguard_queue_oldest_age_seconds ")
        ]
        assert age >= 0.05


def test_an_item_that_matches_a_bank_shows_its_matches_and_actions(
    api: Api, http_server: LocalHttpServer
) -> None:
    service = api.service
    service.banks.create("KNOWN_LIST", category="ncii")
    hashes = service.hash_bytes(encode(photo("chelsea.png").convert("RGB"), "PNG"))
    service.banks.add_content("KNOWN_LIST", hashes.signals(), quality=100)
    service.start_index(wait=True)
    url = http_server.add("/copy.jpg", jpeg_of("chelsea.png"))
    accepted = api.client.post("/v1/media", json={"url": url}, headers=api.client_token).json()
    done = api.wait(accepted["id"])
    assert done["state"] == "done" and done["match_status"] == "match"
    [match] = done["matches"]
    assert match["bank"] == "KNOWN_LIST" and match["signal_type"] in ("pdq", "md5", "sha256")
    stored = service.store.items.actions(item_id=accepted["id"])
    assert stored and [a["id"] for a in done["actions"]] == [a.id for a in stored]
    listed = api.client.get(
        "/v1/media", params={"sha1": done["signals"]["sha1"]}, headers=api.reviewer_token
    ).json()
    assert listed["items"][0]["matches"] == done["matches"]
    assert listed["items"][0]["actions"] == done["actions"]
