"""Who may do what: the role matrix over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fixtures.service import LiveApi

ROLES = ["admin", "reviewer", "client"]


@pytest.fixture
def tokens(api_each_db: LiveApi) -> dict[str, str]:
    created = {role: api_each_db.service.create_token(f"t-{role}", role)[0] for role in ROLES}  # type: ignore[arg-type]
    revoked, _ = api_each_db.service.create_token("t-revoked", "admin")
    api_each_db.service.revoke_token("t-revoked")
    return {**created, "revoked": revoked, "garbage": "mg_not-a-real-token", "none": ""}


# caller -> expected status for: create token, list tokens, revoke token, whoami, score
MATRIX = {
    "none": (401, 401, 401, 401, 200),
    "garbage": (401, 401, 401, 401, 200),
    "revoked": (401, 401, 401, 401, 200),
    "client": (403, 403, 403, 200, 200),
    "reviewer": (403, 403, 403, 200, 200),
    "admin": (201, 200, 200, 200, 200),
}


@pytest.mark.parametrize("caller", list(MATRIX))
def test_role_matrix(
    api_each_db: LiveApi, tokens: dict[str, str], caller: str, chelsea_jpeg: bytes
) -> None:
    api = api_each_db
    headers = api.as_(tokens[caller])
    statuses = (
        api.client.post(
            "/v1/tokens", json={"name": f"new-{caller}", "role": "client"}, headers=headers
        ).status_code,
        api.client.get("/v1/tokens", headers=headers).status_code,
        api.client.delete("/v1/tokens/t-client", headers=headers).status_code,
        api.client.get("/v1/whoami", headers=headers).status_code,
        api.client.post(
            "/v1/score", files={"file": ("c.jpg", chelsea_jpeg)}, headers=headers
        ).status_code,
    )
    assert statuses == MATRIX[caller]


def test_created_token_is_shown_once_and_works(
    api_each_db: LiveApi, tokens: dict[str, str]
) -> None:
    api = api_each_db
    created = api.client.post(
        "/v1/tokens", json={"name": "hook", "role": "client"}, headers=api.as_(tokens["admin"])
    )
    token = created.json()["token"]
    assert token.startswith("mg_")
    listed = api.client.get("/v1/tokens", headers=api.as_(tokens["admin"])).json()
    assert token not in str(listed)
    assert {t["name"] for t in listed} >= {"hook", "t-admin", "t-client"}
    me = api.client.get("/v1/whoami", headers=api.as_(token)).json()
    assert (me["name"], me["role"]) == ("hook", "client")


def test_token_requests_validate(api: LiveApi) -> None:
    admin, _ = api.service.create_token("root", "admin")
    headers = api.as_(admin)
    assert (
        api.client.post(
            "/v1/tokens", json={"name": "x", "role": "god"}, headers=headers
        ).status_code
        == 400
    )
    assert (
        api.client.post(
            "/v1/tokens", json={"name": "root", "role": "client"}, headers=headers
        ).status_code
        == 400
    )
    assert api.client.delete("/v1/tokens/nobody", headers=headers).status_code == 404
    unauthenticated = api.client.get("/v1/tokens")
    assert unauthenticated.headers["www-authenticate"] == "Bearer"
    assert unauthenticated.json()["error"] == "unauthenticated"


def test_scoring_can_be_closed(make_api: Callable[..., LiveApi], chelsea_jpeg: bytes) -> None:
    api = make_api(scoring_requires_token=True)
    client_token, _ = api.service.create_token("hook", "client")
    routes = [
        ("post", "/v1/score", {"files": {"file": ("c.jpg", chelsea_jpeg)}}),
        ("post", "/", {"files": {"file": ("c.jpg", chelsea_jpeg)}}),
        ("get", f"/v1/scores/{'0' * 40}", {}),
        ("post", "/v1/scores/lookup", {"json": {"digests": []}}),
        ("post", "/v1/models/open-nsfw:predict", {"json": {"instances": []}}),
    ]
    for method, path, kwargs in routes:
        closed = getattr(api.client, method)(path, **kwargs)
        assert closed.status_code == 401, path
        opened = getattr(api.client, method)(path, headers=api.as_(client_token), **kwargs)
        assert opened.status_code != 401, path
    assert api.client.get("/healthz").status_code == 200
