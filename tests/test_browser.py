"""The pages in a real browser (headless Chromium through Playwright): blurring and revealing
sensitive results, the safety wall, the report form, and a reviewer's work changing search.

Screenshots of the main pages are saved to tests/screenshots/.
"""

from __future__ import annotations

import re
import time

from playwright.sync_api import Browser, Locator, Page, expect

from fixtures.browser import Site, screenshot

TITLE = "Dawn at the Nude-Beach"


def filter_of(locator: Locator) -> str:
    return str(locator.evaluate("element => getComputedStyle(element).filter"))


def wait_for_images(page: Page, timeout: float = 15) -> None:
    # Polled from here: wait_for_function evaluates its predicate with eval() in the page
    # whenever it has to wait, which the pages' Content-Security-Policy forbids.
    loaded = "() => [...document.images].every(image => image.complete && image.naturalWidth > 0)"
    deadline = time.monotonic() + timeout
    while not page.evaluate(loaded):
        assert time.monotonic() < deadline, "the page's images did not load"
        page.wait_for_timeout(50)


def accessible_text(page: Page) -> str:
    """What assistive technology gets from the page's main region."""
    return page.locator("main").aria_snapshot()


def sign_in(page: Page, site: Site) -> None:
    page.goto(f"{site.url}/review")
    expect(page).to_have_url(re.compile(r"/review/login\?return_to=%2Freview$"))
    page.get_by_label("Reviewer token").fill(site.reviewer_token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Review queue")).to_be_visible()


def add_beach_photos(site: Site) -> tuple[int, int]:
    plain = site.add("plain", "Sunset over the beach", uploader="Ann", tags=("beach",))
    sensitive = site.add("sensitive", TITLE, uploader="Bob", tags=("beach",), image="coffee.png")
    return plain.id, sensitive.id


def test_search_blurs_sensitive_results_until_one_is_revealed(site: Site, page: Page) -> None:
    add_beach_photos(site)
    page.goto(f"{site.url}/search?q=beach")
    expect(page.get_by_role("link", name="Sunset over the beach")).to_be_visible()
    expect(page.get_by_text("This image may contain sensitive content")).to_have_count(0)
    expect(page.get_by_role("switch", name="Blur sensitive content")).to_have_count(0)

    page.get_by_role("switch", name="Show sensitive results").check()
    expect(page).to_have_url(re.compile(r"include_sensitive=on"))
    card = page.locator("[data-card]")
    expect(card).to_have_count(1)
    expect(card.get_by_text("This image may contain sensitive content")).to_be_visible()
    image = card.locator("img")
    wait_for_images(page)
    assert "blur(" in filter_of(image)
    assert TITLE not in page.locator("main").inner_text()
    assert "Dawn" not in accessible_text(page) and "Bob" not in accessible_text(page)
    print(screenshot(page, "search-blurred"))

    card.get_by_role("button", name="Show").click()
    title = card.get_by_role("link", name=TITLE)
    expect(title).to_be_visible()
    expect(title).to_be_focused()
    expect(card.get_by_text("by Bob")).to_be_visible()
    assert filter_of(image) == "none"
    card.get_by_role("button", name="Hide").click()
    expect(card.get_by_role("link", name=TITLE)).to_have_count(0)
    assert "blur(" in filter_of(image)

    page.get_by_role("switch", name="Blur sensitive content").uncheck()
    expect(page).to_have_url(re.compile(r"blur=off"))
    expect(page.get_by_role("link", name=TITLE)).to_be_visible()
    expect(page.get_by_text("This image may contain sensitive content")).to_have_count(0)
    wait_for_images(page)
    assert all(filter_of(img) == "none" for img in page.locator("main img").all())
    print(screenshot(page, "search-unblurred"))

    # Blurring is the default again, and the address says nothing of it.
    page.get_by_role("switch", name="Blur sensitive content").check()
    expect(page.get_by_text("This image may contain sensitive content")).to_be_visible()
    assert "blur=" not in page.url


def test_a_sensitive_result_waits_behind_its_safety_wall(site: Site, page: Page) -> None:
    _, sensitive = add_beach_photos(site)
    page.goto(f"{site.url}/search?q=beach&include_sensitive=on")
    page.get_by_role("button", name="Show").click()
    page.get_by_role("link", name=TITLE).click()

    expect(page).to_have_url(re.compile(rf"/media/{sensitive}\?back="))
    expect(page.get_by_role("heading", name="This content may be sensitive")).to_be_visible()
    expect(
        page.get_by_text("Its title, description or tags contain sensitive words.")
    ).to_be_visible()
    expect(page.locator("main img")).to_have_count(0)
    assert "Dawn" not in accessible_text(page) and "Bob" not in accessible_text(page)
    print(screenshot(page, "safety-wall"))

    page.get_by_role("button", name="Show content").click()
    heading = page.get_by_role("heading", name=TITLE)
    expect(heading).to_be_visible()
    expect(heading).to_be_focused()
    expect(page.get_by_role("img", name=TITLE)).to_be_visible()
    expect(page.get_by_role("heading", name="This content may be sensitive")).to_be_hidden()

    page.get_by_role("link", name="Hide content").click()
    expect(page.get_by_role("heading", name="This content may be sensitive")).to_be_visible()
    expect(page.get_by_role("heading", name=TITLE)).to_have_count(0)

    page.get_by_role("link", name="Back", exact=True).click()
    expect(page).to_have_url(f"{site.url}/search?q=beach&include_sensitive=on")
    expect(page.locator("[data-card]")).to_have_count(1)


def test_a_report_sent_from_the_form_reaches_the_reviewer(site: Site, page: Page) -> None:
    cat = site.add("cat", "A cat on a mat", uploader="Cy", image="chelsea.png")
    page.goto(f"{site.url}/media/{cat.id}")
    page.get_by_text("Report this content").click()
    page.get_by_label("Something else (describe it below)").check()
    page.get_by_label("Description").fill("Too short")
    page.get_by_role("button", name="Send report").click()
    expect(page.get_by_role("alert")).to_contain_text("at least 20 characters")
    expect(page.get_by_label("Description")).to_have_value("Too short")

    page.get_by_label("It infringes copyright").check()
    page.get_by_label("Description").fill("Copied from my portfolio without credit.")
    wait_for_images(page)
    print(screenshot(page, "report-form"))
    page.get_by_role("button", name="Send report").click()
    expect(page.get_by_role("status")).to_have_text(
        "Thank you: your report was sent to the reviewers."
    )

    sign_in(page, site)
    row = page.get_by_role("row").filter(has_text="A cat on a mat")
    expect(row).to_contain_text("copyright: 1")
    row.get_by_role("link", name="A cat on a mat").click()
    reports = page.get_by_role("region", name="Reports")
    expect(reports).to_contain_text("Copied from my portfolio without credit.")
    expect(reports).to_contain_text("pending")


def test_a_reviewer_decides_and_public_search_follows(site: Site, page: Page) -> None:
    plain, _ = add_beach_photos(site)
    cat = site.add("cat", "A cat on a mat", uploader="Cy", image="chelsea.png").id
    site.service.review.report(cat, "sensitive", None, reporter="ip:10.0.0.1")
    site.service.review.report(plain, "copyright", "Mine", reporter="ip:10.0.0.2")

    page.goto(f"{site.url}/review/login")
    page.get_by_label("Reviewer token").fill("mg_not_a_token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("That token is not valid.")
    sign_in(page, site)
    expect(page.get_by_role("row")).to_have_count(3)  # the header and two items
    wait_for_images(page)
    for thumbnail in page.locator("table img").all():
        assert "blur(" in filter_of(thumbnail) and "grayscale(1)" in filter_of(thumbnail)
    print(screenshot(page, "review-queue"))

    page.get_by_role("link", name="A cat on a mat").click()
    expect(page.get_by_role("heading", name=f"Item {cat}: A cat on a mat")).to_be_visible()
    expect(page.get_by_text("You hold this item until")).to_be_visible()
    image = page.locator(".item-media img")
    wait_for_images(page)
    assert filter_of(image) == "blur(20px) grayscale(1)"
    print(screenshot(page, "review-item"))
    reveal = page.get_by_role("button", name=f"Show the image of item {cat}")
    reveal.click()
    expect(reveal).to_have_attribute("aria-pressed", "true")
    assert filter_of(image) == "none"

    page.get_by_label("Notes").fill("Users are right")
    page.get_by_role("button", name="Mark sensitive", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("“Mark sensitive” for item")
    expect(page.get_by_role("row")).to_have_count(2)

    page.get_by_role("checkbox", name=f"Select item {plain}").check()
    page.get_by_label("Action").select_option(label="Deindex: copyright")
    page.get_by_role("button", name="Apply to selected").click()
    expect(page.get_by_text("Nothing is waiting for review.")).to_be_visible()

    page.goto(f"{site.url}/search?q=")
    expect(page.get_by_role("link", name="A cat on a mat")).to_have_count(0)
    expect(page.get_by_role("link", name="Sunset over the beach")).to_have_count(0)
    page.get_by_role("switch", name="Show sensitive results").check()
    expect(page.locator("[data-card]")).to_have_count(2)  # the cat, now blurred, and the beach
    page.get_by_role("switch", name="Blur sensitive content").uncheck()
    expect(page.get_by_role("link", name="A cat on a mat")).to_be_visible()
    expect(page.get_by_role("link", name="Sunset over the beach")).to_have_count(0)

    page.goto(f"{site.url}/review/audit")
    expect(page.get_by_role("cell", name="review.decision")).to_have_count(2)
    print(screenshot(page, "audit-log"))

    # The reviewer's own default: images shown unblurred from now on.
    page.get_by_role("switch", name="Blur images by default").uncheck()
    expect(page.get_by_role("switch", name="Blur images by default")).not_to_be_checked()
    page.goto(f"{site.url}/review/media/{cat}")
    wait_for_images(page)
    assert filter_of(page.locator(".item-media img")) == "none"


def test_the_public_pages_work_without_scripts(site: Site, browser: Browser) -> None:
    _, sensitive = add_beach_photos(site)
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        page.goto(f"{site.url}/search?q=beach")
        page.get_by_role("switch", name="Show sensitive results").check()
        page.get_by_role("button", name="Search").click()
        card = page.locator("[data-card]")
        expect(card).to_have_count(1)
        expect(card.get_by_role("button")).to_have_count(0)  # the script's button stays hidden

        page.get_by_role("switch", name="Blur sensitive content").uncheck()
        page.get_by_role("button", name="Search").click()
        expect(page).to_have_url(re.compile(r"blur=off"))
        expect(page.get_by_role("link", name=TITLE)).to_be_visible()
        page.get_by_role("switch", name="Blur sensitive content").check()
        page.get_by_role("button", name="Search").click()
        expect(card).to_have_count(1)

        card.get_by_role("link", name="Show").click()  # the result's page, shown
        expect(page.get_by_role("heading", name=TITLE)).to_be_visible()
        page.goto(f"{site.url}/media/{sensitive}")
        page.get_by_role("link", name="Show content").click()
        expect(page).to_have_url(f"{site.url}/media/{sensitive}?show=1")
        expect(page.get_by_role("img", name=TITLE)).to_be_visible()
    finally:
        context.close()
