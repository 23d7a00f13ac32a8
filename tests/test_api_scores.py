"""Lookups of stored scores by digest, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from mediaguard.signals.digests import compute_digests

from fixtures.service import LiveApi


def test_lookup_by_every_digest_form(api_each_db: LiveApi, chelsea_jpeg: bytes) -> None:
    api = api_each_db
    scored = api.client.post(
        "/v1/score", files={"file": ("c.jpg", chelsea_jpeg)}, headers={"Accept": "application/json"}
    ).json()
    digests = compute_digests(chelsea_jpeg)
    for digest in (digests.sha1, digests.sha1.upper(), digests.sha1_base36, digests.sha256):
        response = api.client.get(f"/v1/scores/{digest}")
        assert response.status_code == 200, digest
        body = response.json()
        assert body["digest"] == digest
        assert body["score"] == scored["score"]
        assert body["scores"][0]["model_version"] == scored["model_version"]
        assert body["scores"][0]["sha1_base36"] == digests.sha1_base36


def test_unknown_and_invalid_digests(api_each_db: LiveApi) -> None:
    api = api_each_db
    missing = api.client.get(f"/v1/scores/{'0' * 40}")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    invalid = api.client.get("/v1/scores/not-a-digest")
    assert invalid.status_code == 400
    assert invalid.json()["error"] == "invalid_input"


def test_bulk_lookup(api_each_db: LiveApi, chelsea_jpeg: bytes, logo_png: bytes) -> None:
    api = api_each_db
    for data in (chelsea_jpeg, logo_png):
        api.client.post("/v1/score", files={"file": ("x", data)})
    known = [compute_digests(chelsea_jpeg).sha1_base36, compute_digests(logo_png).sha256]
    unknown = [f"{n:040x}" for n in range(998)]
    response = api.client.post("/v1/scores/lookup", json={"digests": known + unknown})
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == 1000
    assert [r["digest"] for r in results[:2]] == known
    assert all(r["score"] is not None for r in results[:2])
    assert all(r["score"] is None and r["scores"] == [] for r in results[2:])


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"digests": [f"{n:040x}" for n in range(1001)]}, 400),
        ({"digests": ["nope"]}, 400),
        ({"digests": "abc"}, 400),
        ({}, 400),
    ],
    ids=["1001", "invalid-digest", "not-a-list", "missing"],
)
def test_bulk_lookup_rejects(api: LiveApi, body: object, status: int) -> None:
    response = api.client.post("/v1/scores/lookup", json=body)
    assert response.status_code == status
    assert response.json()["error"] == "invalid_input"
