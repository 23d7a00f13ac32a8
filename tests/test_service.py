"""The core object, called directly as the CLI and the workers do."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from mediaguard.errors import (
    FetchFailedError,
    MediaTooLargeError,
    UnsupportedMediaError,
    UrlRefusedError,
)
from mediaguard.service import ScoreResult, Service
from mediaguard.signals.digests import compute_digests

from fixtures.images import REFERENCE_SCORES, encode, photo
from fixtures.servers import LocalHttpServer

PHOTOS = ["astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png"]


def test_score_many_keeps_order_and_returns_errors_in_place(
    service: Service, http_server: LocalHttpServer, astronaut_png: bytes, logo_png: bytes
) -> None:
    http_server.add("/logo.png", logo_png, content_type="image/png")
    results = service.score_many(
        [
            astronaut_png,
            http_server.url("/logo.png"),
            b"not an image",
            http_server.url("/status/404"),
            "http://10.1.2.3/x.jpg",
        ]
    )
    assert isinstance(results[0], ScoreResult)
    assert results[0].score == pytest.approx(REFERENCE_SCORES["astronaut.png"], abs=1e-4)
    assert isinstance(results[1], ScoreResult)
    assert results[1].source == http_server.url("/logo.png")
    assert results[1].score == pytest.approx(REFERENCE_SCORES["logo.png"], abs=1e-4)
    assert isinstance(results[2], UnsupportedMediaError)
    assert isinstance(results[3], FetchFailedError)
    assert isinstance(results[4], UrlRefusedError)
    assert service.store.scores.count() == 2


def test_the_same_bytes_are_scored_once(service: Service, astronaut_png: bytes) -> None:
    first = service.score_bytes(astronaut_png)
    again = service.score_many([astronaut_png] * 4)
    assert not first.cached
    assert all(isinstance(r, ScoreResult) and r.cached for r in again)
    assert service.store.scores.count() == 1
    exposition = service.metrics.render().decode()
    assert 'mediaguard_score_store_lookups_total{result="hit"} 4.0' in exposition
    assert 'mediaguard_images_scored_total{mode="exact"} 1.0' in exposition


def test_byte_limit_is_checked_before_anything_else(
    make_service: Callable[..., Service], astronaut_png: bytes
) -> None:
    service = make_service(max_image_bytes=1000)
    with pytest.raises(MediaTooLargeError):
        service.score_bytes(astronaut_png)
    assert service.store.scores.count() == 0


def test_concurrent_callers_share_model_runs(
    make_service: Callable[..., Service],
) -> None:
    service = make_service(lend_models=False, nsfw_batch_wait_ms=200, nsfw_batch_size=8)
    images = [encode(photo(name).convert("RGB").resize((320, 240)), "PNG") for name in PHOTOS]
    results = service.score_many(images)
    assert all(isinstance(r, ScoreResult) for r in results)
    exposition = service.metrics.render().decode()
    count = float(re.search(r"mediaguard_inference_batch_size_count (\S+)", exposition).group(1))  # type: ignore[union-attr]
    total = float(re.search(r"mediaguard_inference_batch_size_sum (\S+)", exposition).group(1))  # type: ignore[union-attr]
    assert total == len(PHOTOS)
    assert count < len(PHOTOS), "images scored together should share model runs"


def test_results_carry_every_digest(service: Service, logo_png: bytes) -> None:
    result = service.score_bytes(logo_png, source="logo.png")
    digests = compute_digests(logo_png)
    assert (result.sha1, result.sha256, result.sha1_base36) == (
        digests.sha1,
        digests.sha256,
        digests.sha1_base36,
    )
    assert result.source == "logo.png"
    assert (result.width, result.height, result.format) == (500, 500, "PNG")
