"""Probes, metrics, logs and the OpenAPI document."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from mediaguard.api import create_app
from mediaguard.service import Service
from mediaguard.store import Store

from fixtures.servers import LocalHttpServer, unused_tcp_port
from fixtures.service import LiveApi, ServerThread


def metric(api: LiveApi, name: str, **labels: str) -> float:
    text = api.client.get("/metrics").text
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{name}(?:{{(.*)}})? (\S+)$", line)
        if match and all(part in (match.group(1) or "") for part in wanted.split(",") if part):
            total += float(match.group(2))
    return total


def test_liveness_and_readiness(api: LiveApi) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    assert api.client.get("/v1/").text == "ok"
    deadline = time.monotonic() + 20
    while (ready := api.client.get("/readyz")).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready.status_code == 200
    assert ready.json()["model"].startswith("open_nsfw/")


def test_not_ready_until_the_model_is_loaded(make_service: Callable[..., Service]) -> None:
    service = make_service(lend_models=False)
    with ServerThread(create_app(service, load_model=False)) as base_url:
        response = httpx.get(f"{base_url}/readyz")
        assert response.status_code == 503
        assert "model" in response.json()["detail"]
        assert httpx.get(f"{base_url}/healthz").status_code == 200


@pytest.mark.postgres
def test_not_ready_when_the_database_is_down(make_api: Callable[..., LiveApi]) -> None:
    api = make_api()
    api.service.store.close()
    api.service.store = Store(
        f"postgresql+psycopg://postgres@127.0.0.1:{unused_tcp_port()}/x?connect_timeout=1"
    )
    response = api.client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["error"] == "not_ready"
    assert "does not answer" in response.json()["detail"]
    assert api.client.get("/healthz").status_code == 200


def test_not_ready_when_not_migrated(make_service: Callable[..., Service]) -> None:
    service = make_service(migrate=False)
    with ServerThread(create_app(service, load_model=False)) as base_url:
        response = httpx.get(f"{base_url}/readyz")
    assert response.status_code == 503
    assert "db upgrade" in response.json()["detail"]


def test_metrics_move(api: LiveApi, http_server: LocalHttpServer, chelsea_jpeg: bytes) -> None:
    before_scored = metric(api, "mediaguard_images_scored_total", mode="exact")
    api.client.post("/v1/score", files={"file": ("c.jpg", chelsea_jpeg)})
    api.client.post("/v1/score", files={"file": ("c.jpg", chelsea_jpeg)})
    api.client.post("/v1/score", files={"file": ("x", b"text")})
    api.client.post("/v1/score", data={"url": http_server.url("/status/500")})
    api.client.get(f"/v1/scores/{'0' * 40}")
    assert metric(api, "mediaguard_images_scored_total", mode="exact") == before_scored + 1
    assert metric(api, "mediaguard_score_store_lookups_total", result="hit") == 1
    assert metric(api, "mediaguard_score_store_lookups_total", result="miss") == 2
    assert metric(api, "mediaguard_decode_failures_total", reason="unsupported_media") == 1
    assert metric(api, "mediaguard_fetch_failures_total", reason="fetch_failed") == 1
    assert metric(api, "mediaguard_digest_lookups_total", result="missing") == 1
    assert metric(api, "mediaguard_scoring_duration_seconds_count", mode="exact") == 1
    assert (
        metric(
            api, "mediaguard_http_request_duration_seconds_count", route="/v1/score", status="200"
        )
        == 2
    )
    assert (
        metric(
            api,
            "mediaguard_http_request_duration_seconds_count",
            route="/v1/scores/{digest}",
            status="404",
        )
        == 1
    )
    assert api.client.get("/v1/metrics").text.count("mediaguard_images_scored_total") >= 1


def test_batch_sizes_are_observed(
    make_service: Callable[..., Service], chelsea_jpeg: bytes
) -> None:
    service = make_service(lend_models=False)
    service.score_bytes(chelsea_jpeg)
    exposition = service.metrics.render().decode()
    assert "mediaguard_inference_batch_size_count 1.0" in exposition
    assert "mediaguard_inference_duration_seconds_count 1.0" in exposition


def test_request_id_is_echoed_or_made(api: LiveApi) -> None:
    given = api.client.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = api.client.get("/healthz", headers={"X-Request-Id": "bad id with spaces; and {json}"})
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])


def test_json_logs_carry_the_request_id_and_never_tokens_or_bytes(
    api: LiveApi, capfd: pytest.CaptureFixture[str], chelsea_jpeg: bytes
) -> None:
    from mediaguard.logs import configure_logging

    configure_logging("INFO", json=True)
    token, _ = api.service.create_token("secret-holder", "admin")
    capfd.readouterr()
    api.client.get("/v1/tokens", headers={**api.as_(token), "X-Request-Id": "req-42"})
    api.client.post("/v1/score", content=chelsea_jpeg, headers={"Content-Type": "image/jpeg"})
    out = capfd.readouterr().out
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    request_lines = [line for line in lines if line.get("event") == "request"]
    assert any(
        line["request_id"] == "req-42" and line["route"] == "/v1/tokens" and line["status"] == 200
        for line in request_lines
    )
    assert token not in out
    assert token.removeprefix("mg_")[:20] not in out
    assert "JFIF" not in out


def test_openapi_documents_every_route_with_examples(api: LiveApi) -> None:
    spec = api.client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in [
        "/",
        "/v1/score",
        "/v1/models/open-nsfw:predict",
        "/v1/models/{name}",
        "/v1/scores/{digest}",
        "/v1/scores/lookup",
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/tokens",
        "/v1/tokens/{name}",
        "/v1/whoami",
    ]:
        assert path in paths, path
    score_body = paths["/v1/score"]["post"]["requestBody"]["content"]
    assert {"application/x-www-form-urlencoded", "multipart/form-data", "image/*"} <= set(
        score_body
    )
    assert "example" in score_body["application/x-www-form-urlencoded"]
    assert "text/plain" in paths["/v1/score"]["post"]["responses"]["200"]["content"]
    assert "examples" in json.dumps(spec["components"]["schemas"]["PredictRequest"])
    docs = api.client.get("/docs")
    assert docs.status_code == 200
    assert "http://" not in docs.text
    assert "https://" not in docs.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert f"/static/swagger-ui/{asset}" in docs.text
        served = api.client.get(f"/static/swagger-ui/{asset}")
        assert served.status_code == 200
        assert len(served.content) > 10_000


def test_unknown_routes_and_methods_are_json(api: LiveApi) -> None:
    assert api.client.get("/nope").json()["error"] == "not_found"
    assert api.client.get("/v1/score").status_code == 405


class HeldModel:
    """A model whose answers wait until the test releases them: inference that takes forever."""

    mode = "exact"
    version = "open_nsfw/held/exact"
    draft_size = None

    def __init__(self) -> None:
        self.submitted = threading.Event()
        self.pending: list[Future[np.ndarray]] = []

    def preprocess(self, media: object) -> np.ndarray:
        return np.zeros((224, 224, 3), dtype=np.float32)

    def submit_tensor(self, tensor: np.ndarray) -> Future[np.ndarray]:
        future: Future[np.ndarray] = Future()
        self.pending.append(future)
        self.submitted.set()
        return future

    @staticmethod
    def score_of(probabilities: np.ndarray) -> float:
        return float(probabilities[1])

    def release(self) -> None:
        for future in self.pending:
            future.set_result(np.array([0.75, 0.25], dtype=np.float32))

    def close(self) -> None:
        self.release()


def test_inference_never_blocks_the_event_loop(
    make_service: Callable[..., Service], chelsea_jpeg: bytes
) -> None:
    held = HeldModel()
    service = make_service(models={"exact": held})  # type: ignore[dict-item]
    with (
        ServerThread(create_app(service, load_model=False)) as base_url,
        ThreadPoolExecutor(1) as pool,
    ):
        scoring = pool.submit(
            httpx.post,
            f"{base_url}/v1/score",
            content=chelsea_jpeg,
            headers={"Content-Type": "image/jpeg"},
            timeout=30,
        )
        assert held.submitted.wait(10), "the image never reached the model"
        for path in ("/healthz", "/readyz", f"/v1/scores/{'0' * 40}", "/metrics"):
            response = httpx.get(f"{base_url}{path}", timeout=2)
            assert response.status_code in (200, 404), path
        assert not scoring.done()
        held.release()
        assert float(scoring.result(timeout=10).text) == 0.25
