"""The public pages and the reviewer console over real HTTP, on SQLite: what each page shows and
hides, forms, redirects, cookies, and the statuses of what goes wrong."""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from PIL import Image

from fixtures.actions import bank_photo
from fixtures.browser import Site, big_jpeg
from fixtures.images import jpeg_of

BLURRED_LABEL = "This image may contain sensitive content"
WALL = "This content may be sensitive"


def outside_templates(html: str) -> str:
    """The page without its ``<template>`` contents, which are neither shown nor read out."""
    return re.sub(r"<template\b.*?</template>", "", html, flags=re.S)


def templates_of(html: str) -> str:
    return "".join(re.findall(r"<template\b.*?</template>", html, flags=re.S))


@contextmanager
def reviewer_client(site: Site, name: str = "alice") -> Iterator[httpx.Client]:
    """A client signed in to the console as ``name`` (a new reviewer unless alice)."""
    token = site.reviewer_token
    if name != "alice":
        token, _ = site.service.create_token(name, "reviewer")
    with httpx.Client(base_url=site.url, timeout=30) as client:
        response = client.post("/review/login", data={"token": token})
        assert response.status_code == 303 and response.headers["location"] == "/review"
        yield client


@pytest.fixture
def catalogue(site: Site) -> dict[str, int]:
    """A plain beach photo, a sensitive one (its title matches "nude beach") and a plain cat."""
    plain = site.add("plain", "Sunset over the beach", uploader="Ann", tags=("beach",))
    sensitive = site.add(
        "sensitive", "Dawn at the Nude-Beach", uploader="Bob", tags=("beach",), image="coffee.png"
    )
    cat = site.add("cat", "A cat on a mat", uploader="Cy", image="chelsea.png")
    assert sensitive.sensitivity == ["sensitive_text"] and plain.sensitivity == []
    return {"plain": plain.id, "sensitive": sensitive.id, "cat": cat.id}


def test_sensitive_results_need_opting_in_and_are_blurred_without_title_or_creator(
    site: Site, catalogue: dict[str, int]
) -> None:
    client = site.api.client
    sensitive = catalogue["sensitive"]

    hidden = client.get("/search", params={"q": "beach"})
    assert hidden.status_code == 200 and hidden.headers["content-type"].startswith("text/html")
    assert "Sunset over the beach" in hidden.text and "Ann" in hidden.text
    assert "Dawn at the" not in hidden.text and "Bob" not in hidden.text
    assert f"/media/{sensitive}" not in hidden.text
    assert "1 result." in hidden.text
    assert 'name="blur"' not in hidden.text  # the blur toggle comes with opting in

    opted = client.get("/search", params={"q": "beach", "include_sensitive": "on"})
    assert opted.status_code == 200 and "2 results." in opted.text
    visible = outside_templates(opted.text)
    assert visible.count(BLURRED_LABEL) == 1
    assert f'src="/media/{sensitive}/image"' in visible
    assert "Dawn at the" not in visible and "Bob" not in visible
    assert "Dawn at the Nude-Beach" in templates_of(opted.text) and "by Bob" in templates_of(
        opted.text
    )
    assert "Sunset over the beach" in visible  # plain results are never blurred
    assert 'name="blur" value="on" role="switch" data-autosubmit data-blur-on checked' in visible

    # The form sends blur=off then blur=on while the box is checked: still blurred.
    both = client.get("/search?q=beach&include_sensitive=on&blur=off&blur=on")
    assert BLURRED_LABEL in both.text

    unblurred = client.get(
        "/search", params={"q": "beach", "include_sensitive": "on", "blur": "off"}
    )
    assert BLURRED_LABEL not in unblurred.text and "<template" not in unblurred.text
    assert "Dawn at the Nude-Beach" in unblurred.text and "by Bob" in unblurred.text
    assert "data-blur-on checked" not in unblurred.text
    # Its link keeps blurring off, so the result's page opens without its wall.
    link = re.search(rf'href="(/media/{sensitive}\?[^"]+)"', unblurred.text)
    assert link is not None
    result = client.get(link.group(1).replace("&amp;", "&"))
    assert WALL not in result.text and "Dawn at the Nude-Beach" in outside_templates(result.text)

    # blur=off means nothing without opting in.
    assert "Dawn at the" not in client.get("/search?q=beach&blur=off").text


def test_matched_terms_never_reach_public_pages(site: Site, catalogue: dict[str, int]) -> None:
    sensitive = catalogue["sensitive"]
    pages = [
        "/",
        "/search?q=beach&include_sensitive=on",
        "/search?q=beach&include_sensitive=on&blur=off",
        f"/media/{sensitive}",
        f"/media/{sensitive}?show=1",
    ]
    for path in pages:
        response = site.api.client.get(path)
        assert response.status_code == 200, path
        assert "nude beach" not in response.text.lower(), path


def test_the_home_page_lists_the_newest_results_and_pages_through_them(site: Site) -> None:
    ids = [site.add(f"p{n}", f"Photo {n}", image="camera.png").id for n in range(22)]
    first = site.api.client.get("/")
    assert first.status_code == 200
    assert "22 results." in first.text and "Page 1 of 2" in first.text
    assert f'href="/media/{ids[-1]}?' in first.text and f'href="/media/{ids[0]}?' not in first.text
    assert 'href="/search?q=&amp;page=2" rel="next"' in first.text
    second = site.api.client.get("/search?q=&page=2")
    assert "Page 2 of 2" in second.text and f'href="/media/{ids[0]}?' in second.text
    assert 'rel="prev"' in second.text and 'rel="next"' not in second.text


def test_bad_search_input_renders_the_form_with_the_error(site: Site) -> None:
    too_long = site.api.client.get("/search", params={"q": "x" * 201})
    assert too_long.status_code == 400
    assert "longer than 200 characters" in too_long.text and 'role="search"' in too_long.text
    for page in ("0", "two"):
        response = site.api.client.get("/search", params={"q": "cat", "page": page})
        assert response.status_code == 400 and "text/html" in response.headers["content-type"]


def test_one_sensitive_result_is_walled_with_its_reasons(
    site: Site, catalogue: dict[str, int]
) -> None:
    client = site.api.client
    sensitive = catalogue["sensitive"]

    walled = client.get(f"/media/{sensitive}")
    assert walled.status_code == 200
    visible = outside_templates(walled.text)
    assert WALL in visible
    assert "Its title, description or tags contain sensitive words." in visible
    assert "Dawn at the" not in visible and "Bob" not in visible
    assert f'src="/media/{sensitive}/image"' not in visible  # not even loaded behind the wall
    assert "Dawn at the Nude-Beach" in templates_of(walled.text)
    assert '<a class="button button--secondary" href="/">Back</a>' in visible
    assert f'href="/media/{sensitive}?show=1">Show content</a>' in visible  # without a script

    from_search = client.get(f"/media/{sensitive}", params={"back": "/search?q=beach"})
    assert 'href="/search?q=beach">Back</a>' in from_search.text
    for elsewhere in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        response = client.get(f"/media/{sensitive}", params={"back": elsewhere})
        assert 'href="/">Back</a>' in response.text and "evil.example" not in response.text

    shown = client.get(f"/media/{sensitive}", params={"show": "1"})
    assert WALL not in shown.text and "<template" not in shown.text
    assert "Dawn at the Nude-Beach" in shown.text and "Bob" in shown.text
    assert f'src="/media/{sensitive}/image"' in shown.text
    assert f'href="/media/{sensitive}" data-hide-content>Hide content</a>' in shown.text

    plain = client.get(f"/media/{catalogue['plain']}")
    assert WALL not in plain.text and "Sunset over the beach" in plain.text

    # A reviewer's confirmation is a reason of its own.
    site.decide(catalogue["cat"], "marked_sensitive")
    marked = client.get(f"/media/{catalogue['cat']}")
    assert "Users reported it and a reviewer confirmed it." in marked.text
    assert "Its title, description" not in marked.text


def test_items_the_public_may_not_see_are_not_found(site: Site, catalogue: dict[str, int]) -> None:
    client = site.api.client
    hidden = catalogue["plain"]
    site.decide(hidden, "deindexed_sensitive")
    bank_photo(site.service, "TEST_BANK", "other", "rocket.jpg")
    matched = site.add("banked", "A rocket", image="rocket.jpg")
    assert matched.match_status == "match"

    for path in (
        f"/media/{hidden}",
        f"/media/{hidden}/image",
        f"/media/{matched.id}",
        f"/media/{matched.id}/image",
        "/media/987654",
        "/media/987654/image",
        "/media/not-a-number",
    ):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith("text/html"), path
        assert "Not found" in response.text
    posted = client.post(f"/media/{hidden}/report", data={"reason": "sensitive"})
    assert posted.status_code == 404
    assert site.service.review.item(hidden).reports == []
    found = client.get("/search", params={"include_sensitive": "on", "blur": "off"}).text
    assert "Sunset over the beach" not in found and "A rocket" not in found


def test_a_report_is_filed_from_the_form(site: Site, catalogue: dict[str, int]) -> None:
    client = site.api.client
    cat = catalogue["cat"]
    page = client.get(f"/media/{cat}")
    assert f'action="/media/{cat}/report"' in page.text
    for reason in ("sensitive", "copyright", "other"):
        assert f'name="reason" value="{reason}"' in page.text

    filed = client.post(
        f"/media/{cat}/report",
        data={"reason": "sensitive", "description": "Not for children", "back": "/search?q=cat"},
    )
    assert filed.status_code == 303
    location = urlsplit(filed.headers["location"])
    assert location.path == f"/media/{cat}"
    assert parse_qs(location.query) == {"reported": ["1"], "back": ["/search?q=cat"]}
    thanks = client.get(filed.headers["location"])
    assert "Thank you: your report was sent to the reviewers." in thanks.text
    [report] = site.service.review.item(cat).reports
    assert (report.reason, report.description, report.status) == (
        "sensitive",
        "Not for children",
        "pending",
    )
    assert report.reporter == "ip:127.0.0.1"

    short = client.post(
        f"/media/{cat}/report", data={"reason": "other", "description": "too short <b>"}
    )
    assert short.status_code == 400
    assert "at least 20 characters" in short.text and 'role="alert"' in short.text
    assert "too short &lt;b&gt;</textarea>" in short.text  # kept, escaped
    assert 'value="other" checked' in short.text and "<details open>" in short.text
    assert client.post(f"/media/{cat}/report", data={}).status_code == 400
    assert len(site.service.review.item(cat).reports) == 1


def test_reports_are_rate_limited_per_address(make_site: Callable[..., Site]) -> None:
    site = make_site(report_rate_limit=2)
    item = site.add("one", "A photo")
    for _ in range(2):
        assert (
            site.api.client.post(f"/media/{item.id}/report", data={"reason": "copyright"})
        ).status_code == 303
    refused = site.api.client.post(f"/media/{item.id}/report", data={"reason": "copyright"})
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) > 0
    assert (
        "at most 2 reports an hour" in refused.text
        and "text/html" in refused.headers["content-type"]
    )
    assert len(site.service.review.item(item.id).reports) == 2


def test_forms_posted_from_another_site_are_refused(site: Site) -> None:
    item = site.add("one", "A photo")
    client = site.api.client
    for origin in ("http://evil.example", "null", f"{site.url.replace('127.0.0.1', 'localhost')}"):
        refused = client.post(
            f"/media/{item.id}/report", data={"reason": "copyright"}, headers={"Origin": origin}
        )
        assert refused.status_code == 403, origin
        assert "text/html" in refused.headers["content-type"]
    assert site.service.review.item(item.id).reports == []
    same = client.post(
        f"/media/{item.id}/report", data={"reason": "copyright"}, headers={"Origin": site.url}
    )
    assert same.status_code == 303

    evil = {"Origin": "http://evil.example"}
    login = client.post("/review/login", data={"token": site.reviewer_token}, headers=evil)
    assert login.status_code == 403 and "set-cookie" not in login.headers
    with reviewer_client(site) as reviewer:
        for path, data in (
            ("/review/decisions", {"media_ids": str(item.id), "action": "deindexed_sensitive"}),
            ("/review/next", {}),
            ("/review/logout", {}),
            ("/review/preferences", {"blur": "on"}),
        ):
            assert reviewer.post(path, data=data, headers=evil).status_code == 403, path
        assert reviewer.get("/review").status_code == 200  # still signed in
    assert site.service.catalogue.item(item.id).deindexed is None


def test_console_pages_send_strangers_to_sign_in(site: Site) -> None:
    item = site.add("one", "A photo")
    client = site.api.client
    for path in (
        "/review",
        f"/review/media/{item.id}",
        f"/review/media/{item.id}/image",
        "/review/audit?before_id=5",
    ):
        response = client.get(path)
        assert response.status_code == 303, path
        location = urlsplit(response.headers["location"])
        assert location.path == "/review/login"
        assert parse_qs(location.query) == {"return_to": [path]}
    posted = client.post("/review/decisions", data={"media_ids": str(item.id), "action": "x"})
    assert posted.status_code == 303 and posted.headers["location"].startswith("/review/login")
    assert client.post("/review/next").status_code == 303
    assert site.service.review.item(item.id).lock is None

    login_page = client.get("/review/login")
    assert login_page.status_code == 200 and 'name="token" type="password"' in login_page.text

    wrong = client.post("/review/login", data={"token": "mg_wrong"})
    assert wrong.status_code == 401 and "That token is not valid." in wrong.text
    assert 'action="/review/login"' in wrong.text and "set-cookie" not in wrong.headers
    client_token, _ = site.service.create_token("platform", "client")
    not_reviewer = client.post("/review/login", data={"token": client_token})
    assert not_reviewer.status_code == 403 and "reviewer role" in not_reviewer.text

    # A stale cookie is dropped on the way to the sign-in page.
    stale = client.get("/review", headers={"Cookie": "mg_review=mg_revoked"})
    assert stale.status_code == 303 and 'mg_review=""' in stale.headers["set-cookie"]


def test_signing_in_sets_a_strict_cookie_and_returns_where_asked(site: Site) -> None:
    client = site.api.client
    response = client.post(
        "/review/login",
        data={"token": site.reviewer_token, "return_to": "/review/audit"},
    )
    assert response.status_code == 303 and response.headers["location"] == "/review/audit"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"mg_review={site.reviewer_token};")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/review" in cookie
    assert "Secure" not in cookie  # plain http here; https requests get Secure
    audit = client.get("/review/audit")
    assert audit.status_code == 200 and "Signed in as <strong>alice</strong>" in audit.text
    assert audit.headers["cache-control"] == "no-store"

    elsewhere = client.post(
        "/review/login", data={"token": site.reviewer_token, "return_to": "https://evil.example"}
    )
    assert elsewhere.headers["location"] == "/review"

    out = client.post("/review/logout")
    assert out.status_code == 303 and out.headers["location"] == "/review/login"
    assert 'mg_review=""' in out.headers["set-cookie"]
    assert client.get("/review").status_code == 303


def test_the_reviewer_works_the_queue_and_decisions_change_search(
    site: Site, catalogue: dict[str, int]
) -> None:
    public = site.api.client
    sensitive, cat, plain = catalogue["sensitive"], catalogue["cat"], catalogue["plain"]
    for item_id, reason in ((sensitive, "sensitive"), (cat, "sensitive"), (plain, "copyright")):
        assert public.post(f"/media/{item_id}/report", data={"reason": reason}).status_code == 303

    with reviewer_client(site) as alice, reviewer_client(site, "bob") as bob:
        queue = alice.get("/review")
        assert queue.status_code == 200 and "3 items waiting" in queue.text
        for item_id in (sensitive, cat, plain):
            assert f'name="media_ids" value="{item_id}"' in queue.text
            assert f'src="/review/media/{item_id}/image"' in queue.text
        assert "sensitive: 1" in queue.text and "copyright: 1" in queue.text
        assert queue.text.count('class="shield is-shielded shield--small"') == 3

        page = alice.get(f"/review/media/{sensitive}")
        assert page.status_code == 200
        assert '<span class="tag">nude beach</span>' in page.text  # reviewers see matched terms
        assert "Dawn at the Nude-Beach" in page.text and "Bob" in page.text
        assert "You hold this item until" in page.text
        lock = site.service.review.item(sensitive).lock
        assert lock is not None and lock.reviewer == "alice"
        assert re.search(r"<td>sensitive</td>\s*<td[^>]*></td>\s*<td><time", page.text)
        assert "report.create" in page.text  # the item's audit log

        # Bob sees who holds it; his buttons are disabled, and a decision is refused.
        held = bob.get(f"/review/media/{sensitive}")
        assert "Being reviewed by <strong>alice</strong> until" in held.text
        assert held.text.count("disabled>") >= 7
        refused = bob.post(
            "/review/decisions",
            data={"media_ids": str(sensitive), "action": "deindexed_sensitive", "page": "item"},
        )
        assert refused.status_code == 409 and "another reviewer holds item" in refused.text
        assert "Being reviewed by <strong>alice</strong>" in refused.text
        bob_queue = bob.get("/review").text
        assert f'aria-label="Select item {sensitive}" disabled>' in bob_queue
        assert f'aria-label="Select item {cat}">' in bob_queue

        # A bulk decision on two items.
        done = alice.post(
            "/review/decisions",
            data={
                "media_ids": [str(sensitive), str(plain)],
                "action": "deindexed_sensitive",
                "notes": "both go",
            },
        )
        assert done.status_code == 303
        decision_id = int(parse_qs(urlsplit(done.headers["location"]).query)["done"][0])
        after = alice.get(done.headers["location"])
        assert f"Decision {decision_id} recorded: “Deindex: sensitive” for item" in after.text
        assert "1 item waiting" in after.text

        # One decision on the cat, from its page.
        assert (
            alice.post(
                "/review/decisions",
                data={"media_ids": str(cat), "action": "marked_sensitive", "page": "item"},
            ).status_code
            == 303
        )
        assert "Nothing is waiting for review." in alice.get("/review").text

        empty = alice.post("/review/decisions", data={"action": "marked_sensitive"})
        assert empty.status_code == 400 and "Select at least one item." in empty.text
        bad = alice.post(
            "/review/decisions", data={"media_ids": str(cat), "action": "reversed_deindex"}
        )
        assert bad.status_code == 409 and "is not deindexed; nothing was decided" in bad.text
        unknown = alice.post("/review/decisions", data={"media_ids": str(cat), "action": "nope"})
        assert unknown.status_code == 400 and "action must be one of" in unknown.text

    search = public.get("/search", params={"q": "", "include_sensitive": "on", "blur": "off"})
    assert "Dawn at the Nude-Beach" not in search.text
    assert "Sunset over the beach" not in search.text
    assert "A cat on a mat" in search.text
    assert "A cat on a mat" not in public.get("/search").text
    assert public.get(f"/media/{sensitive}").status_code == 404


def test_review_next_claims_the_oldest_item_or_says_the_queue_is_empty(site: Site) -> None:
    first = site.add("one", "First")
    second = site.add("two", "Second")
    for item in (first, second):
        site.service.review.report(item.id, "copyright", None, reporter="ip:10.0.0.1")
    with reviewer_client(site) as alice, reviewer_client(site, "bob") as bob:
        claimed = alice.post("/review/next")
        assert claimed.status_code == 303
        assert claimed.headers["location"] == f"/review/media/{first.id}"
        assert bob.post("/review/next").headers["location"] == f"/review/media/{second.id}"
        # Asking again moves on: nothing is free now.
        empty = alice.post("/review/next")
        assert empty.status_code == 303 and empty.headers["location"] == "/review?empty=1"
        assert "Nothing else is free to review" in alice.get(empty.headers["location"]).text
        released = alice.post(f"/review/media/{first.id}/release")
        assert released.status_code == 303 and site.service.review.item(first.id).lock is None


def test_a_bank_matched_image_is_withheld_and_never_fetched(site: Site) -> None:
    bank_photo(site.service, "TEST_BANK", "other", "rocket.jpg")
    matched = site.add("banked", "A rocket", image="rocket.jpg")
    assert matched.match_status == "match"
    site.images.clear()
    withheld = "Image withheld: it matched bank TEST_BANK (other)."
    with reviewer_client(site) as alice:
        queue = alice.get("/review")
        assert withheld in queue.text and "bank review" in queue.text
        assert f"/review/media/{matched.id}/image" not in queue.text
        page = alice.get(f"/review/media/{matched.id}")
        assert withheld in page.text and f"/review/media/{matched.id}/image" not in page.text
        assert "<td>TEST_BANK</td><td>other</td><td>pdq</td>" in page.text
        assert "No: it matched a bank" in page.text
        assert alice.get(f"/review/media/{matched.id}/image").status_code == 404
        unknown = alice.get("/review/media/987654")
        assert unknown.status_code == 404 and "no media item 987654" in unknown.text
    assert site.images.requests == []


def test_thumbnails_are_small_jpegs_for_visible_items_only(site: Site) -> None:
    big = site.add("big", "Deep field", content=big_jpeg())
    response = site.api.client.get(f"/media/{big.id}/image")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["cache-control"] == "private, max-age=300"
    with Image.open(io.BytesIO(response.content)) as image:
        assert image.format == "JPEG" and image.size == (640, 480)

    grey = site.add("grey", "Camera", image="camera.png")
    with Image.open(io.BytesIO(site.api.client.get(f"/media/{grey.id}/image").content)) as image:
        assert image.size == (512, 512)

    with reviewer_client(site) as alice:
        reviewer_copy = alice.get(f"/review/media/{big.id}/image")
        assert reviewer_copy.status_code == 200 and reviewer_copy.content == response.content
        assert reviewer_copy.headers["cache-control"] == "no-store"
        site.decide(big.id, "deindexed_copyright")
        assert site.api.client.get(f"/media/{big.id}/image").status_code == 404
        assert alice.get(f"/review/media/{big.id}/image").status_code == 200  # reviewers still do

    no_image = site.add("bytes", "Uploaded bytes", image=None)
    assert no_image.media_url is None
    assert "No preview" in site.api.client.get("/").text
    assert "No preview" in site.api.client.get(f"/media/{no_image.id}").text
    assert site.api.client.get(f"/media/{no_image.id}/image").status_code == 404

    gone = site.add("gone", "Gone later")
    site.images.add("/gone.jpg", b"", "image/jpeg", status=404)
    assert site.api.client.get(f"/media/{gone.id}/image").status_code == 502

    # A file replaced at its address since it was checked is never shown, to anyone.
    swapped = site.add("swapped", "Swapped later")
    site.images.add("/swapped.jpg", jpeg_of("camera.png"), "image/jpeg")
    assert site.api.client.get(f"/media/{swapped.id}/image").status_code == 404
    with reviewer_client(site) as alice:
        assert alice.get(f"/review/media/{swapped.id}/image").status_code == 404


def test_the_blur_preference_is_the_reviewers_own(site: Site) -> None:
    item = site.add("one", "A photo")
    site.service.review.report(item.id, "sensitive", None, reporter="ip:10.0.0.1")
    with reviewer_client(site) as alice, reviewer_client(site, "bob") as bob:
        assert 'class="shield is-shielded"' in alice.get(f"/review/media/{item.id}").text
        saved = alice.post("/review/preferences", data={"return_to": f"/review/media/{item.id}"})
        assert saved.status_code == 303 and saved.headers["location"] == f"/review/media/{item.id}"
        cookie = saved.headers["set-cookie"]
        assert cookie.startswith("mg_blur=off;") and "Path=/review" in cookie
        assert "Max-Age=31536000" in cookie
        page = alice.get(f"/review/media/{item.id}").text
        assert 'class="shield"' in page and "is-shielded" not in page
        assert 'aria-pressed="true"' in page
        assert "is-shielded" in bob.get("/review").text  # bob keeps the default
        alice.post("/review/logout")
        assert alice.cookies.get("mg_blur") == "off"  # kept across sign-ins


def test_the_audit_log_is_paged_newest_first(site: Site) -> None:
    items = [site.add(f"i{n}", f"Item {n}") for n in range(3)]
    for item in items:
        for _ in range(20):
            site.service.review.report(item.id, "copyright", None, reporter=f"ip:{item.id}")
    newest = site.service.store.audit.list(limit=1)[0]
    with reviewer_client(site) as alice:
        first = alice.get("/review/audit")
        assert first.status_code == 200 and first.text.count("<td>report.create</td>") == 50
        ids = [int(n) for n in re.findall(r"<tr>\s*<td>(\d+)</td>", first.text)]
        assert ids[0] == newest.id and ids == sorted(ids, reverse=True)
        older = re.search(r'href="(/review/audit\?before_id=\d+)" rel="next"', first.text)
        assert older is not None
        second = alice.get(older.group(1))
        assert "<td>report.create</td>" in second.text and 'href="/review/audit">' in second.text
        more = [int(n) for n in re.findall(r"<tr>\s*<td>(\d+)</td>", second.text)]
        assert max(more) == ids[-1] - 1
        assert f'<a href="/review/media/{items[0].id}">item {items[0].id}</a>' in second.text
        assert alice.get("/review/audit?before_id=x").status_code == 400


def test_everything_from_the_catalogue_is_escaped(site: Site) -> None:
    item = site.add(
        "xss",
        "<script>alert(1)</script>",
        uploader='"><img src=x onerror=alert(2)>',
        description="<b>bold</b>",
        tags=("<i>",),
    )
    shown = site.api.client.get(f"/media/{item.id}").text
    listed = site.api.client.get("/search", params={"q": "script"}).text
    for html in (shown, listed):
        assert "<script>alert" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in shown and "&lt;i&gt;" in shown
    echoed = site.api.client.get("/search", params={"q": '"><svg onload=alert(3)>'}).text
    assert "<svg" not in echoed
    csp = site.api.client.get("/").headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp


def test_the_pages_assets_and_api_docs_are_served(site: Site) -> None:
    client = site.api.client
    css = client.get("/static/mediaguard.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    js = client.get("/static/mediaguard.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert client.get("/static/swagger-ui/swagger-ui.css").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert "get" not in paths["/"]  # nsfwoid's POST / is the API's
    assert not any(path in paths for path in ("/search", "/review", "/media/{item_id}"))
    assert client.get("/v1/search").status_code == 200  # the JSON API is untouched
