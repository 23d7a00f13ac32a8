"""nsfwoid's routes over real HTTP: every way in, every bad input."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from mediaguard.signals.digests import compute_digests

from fixtures.images import REFERENCE_SCORES, encode, jpeg_of, photo, png_header_only, truncated
from fixtures.servers import LocalHttpServer
from fixtures.service import LiveApi

JSON = {"Accept": "application/json"}


def test_form_url_answers_the_score_as_text(
    api: LiveApi, http_server: LocalHttpServer, astronaut_png: bytes
) -> None:
    http_server.add("/astronaut.png", astronaut_png, content_type="image/png")
    response = api.client.post("/", data={"url": http_server.url("/astronaut.png")})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert float(response.text) == pytest.approx(REFERENCE_SCORES["astronaut.png"], abs=1e-4)


@pytest.mark.parametrize("path", ["/", "/v1/score"])
def test_multipart_file_with_json_answer(api: LiveApi, logo_png: bytes, path: str) -> None:
    response = api.client.post(path, files={"file": ("logo.png", logo_png)}, headers=JSON)
    assert response.status_code == 200, response.text
    body = response.json()
    digests = compute_digests(logo_png)
    assert body["score"] == pytest.approx(REFERENCE_SCORES["logo.png"], abs=1e-4)
    assert body["sha1"] == digests.sha1
    assert body["sha1_base36"] == digests.sha1_base36
    assert body["sha256"] == digests.sha256
    assert body["model"] == "open_nsfw"
    assert body["model_version"].endswith("/exact")
    assert (body["width"], body["height"], body["format"]) == (500, 500, "PNG")


def test_raw_body_and_the_store_answers_the_second_time(api: LiveApi, chelsea_jpeg: bytes) -> None:
    first = api.client.post(
        "/v1/score", content=chelsea_jpeg, headers={"Content-Type": "image/jpeg", **JSON}
    )
    second = api.client.post(
        "/v1/score", content=chelsea_jpeg, headers={"Content-Type": "image/jpeg", **JSON}
    )
    assert first.status_code == second.status_code == 200
    assert first.json()["cached"] is False
    assert second.json()["cached"] is True
    assert second.json()["score"] == first.json()["score"]
    assert api.service.store.scores.count() == 1


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "TIFF", "BMP", "PNG"])
def test_every_accepted_format_scores(api: LiveApi, fmt: str) -> None:
    data = encode(photo("coffee.png").convert("RGB"), fmt)
    response = api.client.post("/v1/score", files={"file": ("x", data)}, headers=JSON)
    assert response.status_code == 200, response.text
    assert response.json()["format"] == fmt
    assert 0.0 <= response.json()["score"] <= 1.0


def test_truncated_image_is_scored_not_a_500(api: LiveApi) -> None:
    response = api.client.post("/v1/score", files={"file": ("t.jpg", truncated(jpeg_of(), 0.7))})
    assert response.status_code == 200, response.text
    assert 0.0 <= float(response.text) <= 1.0


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        (b"", 415, "unsupported_media"),
        (b"hello, not an image", 415, "unsupported_media"),
        (jpeg_of()[:600] + b"\xff\x00garbage" * 500, 415, "unsupported_media"),
        (png_header_only(50_000, 50_000), 413, "media_too_large"),
    ],
    ids=["zero-byte", "text", "corrupt", "huge-pixels"],
)
def test_bad_images_get_a_clear_error(api: LiveApi, content: bytes, status: int, code: str) -> None:
    response = api.client.post("/v1/score", files={"file": ("x", content)}, headers=JSON)
    assert response.status_code == status
    assert response.json()["error"] == code
    plain = api.client.post("/", files={"file": ("x", content)})
    assert plain.status_code == status
    assert plain.headers["content-type"].startswith("text/plain")
    assert code in plain.text
    assert api.service.store.scores.count() == 0


def test_byte_limit(make_api: Callable[..., LiveApi], chelsea_jpeg: bytes) -> None:
    api = make_api(max_image_bytes=len(chelsea_jpeg) - 1)
    for kwargs in (
        {"files": {"file": ("c.jpg", chelsea_jpeg)}},
        {"content": chelsea_jpeg, "headers": {"Content-Type": "image/jpeg"}},
    ):
        response = api.client.post("/v1/score", **kwargs)  # type: ignore[arg-type]
        assert response.status_code == 413
        assert "media_too_large" in response.text


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"data": {}}, 400),
        ({"data": {"url": ""}}, 400),
        ({"content": b"{}", "headers": {"Content-Type": "application/json"}}, 400),
        (
            {
                "content": b"--x\r\nbroken",
                "headers": {"Content-Type": "multipart/form-data; boundary=x"},
            },
            400,
        ),
    ],
    ids=["no-fields", "empty-url", "json-body", "broken-multipart"],
)
def test_missing_or_malformed_input(api: LiveApi, kwargs: dict[str, object], status: int) -> None:
    response = api.client.post("/v1/score", **kwargs)  # type: ignore[arg-type]
    assert response.status_code == status, response.text


def test_url_failures(api: LiveApi, http_server: LocalHttpServer) -> None:
    http_server.add("/page.html", b"<html></html>", content_type="text/html")
    cases = [
        (http_server.url("/status/404"), 502, "fetch_failed"),
        (http_server.url("/page.html"), 415, "unsupported_media"),
        (http_server.url("/stall?seconds=5"), 504, "fetch_timeout"),
        ("ftp://example.org/x.jpg", 400, "url_refused"),
        (http_server.redirect_url("http://169.254.169.254/latest/meta-data/"), 400, "url_refused"),
        ("http://10.0.0.1/x.jpg", 400, "url_refused"),
    ]
    for url, status, code in cases:
        response = api.client.post("/v1/score", data={"url": url}, headers=JSON)
        assert (response.status_code, response.json()["error"]) == (status, code), url


def test_loopback_is_refused_unless_allowed(
    make_api: Callable[..., LiveApi], http_server: LocalHttpServer, astronaut_png: bytes
) -> None:
    http_server.add("/a.png", astronaut_png, content_type="image/png")
    api = make_api(fetch_allow_loopback=False)
    response = api.client.post("/v1/score", data={"url": http_server.url("/a.png")}, headers=JSON)
    assert response.status_code == 400
    assert response.json()["error"] == "url_refused"
    assert http_server.requests == []


def test_concurrent_requests_each_get_their_own_score(api: LiveApi) -> None:
    images = {
        name: encode(photo(name).convert("RGB"), "PNG")
        for name in ["astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg"]
    }
    alone = {
        name: api.client.post("/v1/score", content=data, headers={"Content-Type": "image/png"}).text
        for name, data in images.items()
    }
    fresh = [
        (name, encode(photo(name).convert("RGB"), "PNG", compress_level=1))
        for name in images
        for _ in range(2)
    ]

    def post(item: tuple[str, bytes]) -> tuple[str, float]:
        name, data = item
        r = api.client.post("/v1/score", content=data, headers={"Content-Type": "image/png"})
        return name, float(r.text)

    with ThreadPoolExecutor(8) as pool:
        for name, score in pool.map(post, fresh):
            assert score == pytest.approx(float(alone[name]), abs=1e-6)
