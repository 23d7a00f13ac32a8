"""KServe v1 (Lift Wing's protocol) over real HTTP."""

from __future__ import annotations

import base64

import pytest

from fixtures.images import REFERENCE_SCORES
from fixtures.servers import LocalHttpServer
from fixtures.service import LiveApi

PREDICT = "/v1/models/open-nsfw:predict"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_model_status(api: LiveApi) -> None:
    api.service.nsfw()
    body = api.client.get("/v1/models/open-nsfw").json()
    assert body["name"] == "open-nsfw"
    assert body["ready"] is True
    assert body["version"].startswith("open_nsfw/")
    assert api.client.get("/v1/models/resnet").status_code == 404


def test_predict_mixes_base64_and_urls_in_order(
    api: LiveApi, http_server: LocalHttpServer, astronaut_png: bytes, logo_png: bytes
) -> None:
    http_server.add("/logo.png", logo_png, content_type="image/png")
    body = {
        "instances": [
            {"image": {"b64": b64(astronaut_png)}},
            {"url": http_server.url("/logo.png")},
            {"image": b64(logo_png)},
        ]
    }
    response = api.client.post(PREDICT, json=body)
    assert response.status_code == 200, response.text
    scores = [p["score"] for p in response.json()["predictions"]]
    assert scores[0] == pytest.approx(REFERENCE_SCORES["astronaut.png"], abs=1e-4)
    assert scores[1] == pytest.approx(REFERENCE_SCORES["logo.png"], abs=1e-4)
    assert scores[2] == scores[1]


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"instances": []}, 400, "empty"),
        ({"instances": [{"image": {"b64": "AAAA"}}] * 51}, 413, "at most 50"),
        ({"instances": [{"image": {"b64": "not base64!!"}}]}, 400, "instances[0]"),
        ({"instances": [{}]}, 400, "instances[0]"),
        ({"instances": [{"image": "aGVsbG8=", "url": "http://example.org/x"}]}, 400, "not both"),
        ({"instances": [{"image": "aGVsbG8="}]}, 415, "instances[0]"),
        ({"instances": [{"image": b64(b"\xff" * (4 * 1024 * 1024 + 1))}]}, 413, "instances[0]"),
        ({"instances": "nope"}, 400, "invalid_input"),
        ({}, 400, "invalid_input"),
    ],
    ids=[
        "empty",
        "51",
        "bad-b64",
        "no-image",
        "both",
        "not-image",
        "over-4mib",
        "not-list",
        "no-key",
    ],
)
def test_invalid_requests(api: LiveApi, body: object, status: int, needle: str) -> None:
    response = api.client.post(PREDICT, json=body)
    assert response.status_code == status, response.text
    assert needle in response.text


def test_malformed_json(api: LiveApi) -> None:
    response = api.client.post(
        PREDICT, content=b'{"instances": [', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_input"


def test_one_bad_instance_names_its_index(api: LiveApi, astronaut_png: bytes) -> None:
    body = {"instances": [{"image": b64(astronaut_png)}, {"image": b64(b"plain text")}]}
    response = api.client.post(PREDICT, json=body)
    assert response.status_code == 415
    assert response.json()["detail"].startswith("instances[1]:")
