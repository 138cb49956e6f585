"""The review page in a real browser (Debian's chromium, headless, driven by Playwright):
items reviewed from the keyboard land in the verdict table, model text renders as text."""

import shutil

import pytest

from rlaif_ray.review.queue import merged_verdicts, review_queue
from rlaif_ray.review.server import ReviewServer

pytestmark = pytest.mark.slow

# The flags a root, offline machine needs (no sandbox, no calls home).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    assert executable, "the browser tests need Debian's chromium: apt-get install chromium"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, headless=True,
                                              args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def served():
    servers = []

    def serve(run_dir, rubric):
        servers.append(ReviewServer(run_dir, rubric, port=0).start())
        return servers[-1]

    yield serve
    for server in servers:
        server.stop()


def open_page(browser, server):
    page = browser.new_page()
    page.goto(server.url)
    page.fill("#reviewer", "ann")
    page.locator("#reviewer").blur()
    return page


def test_pointwise_items_reviewed_from_the_keyboard(browser, served, pointwise_run, tmp_path):
    run_dir, rubric = pointwise_run
    page = open_page(browser, served(run_dir, rubric))
    assert page.locator("#item").get_attribute("data-review-id") == "1:d"
    page.keyboard.press("s")  # skip the abstained item
    page.wait_for_url("**item=0%3Aa**")
    for key in ("9", "8", "0", "7", "Enter"):  # 0 = 10; the focus moves down per score
        page.keyboard.press(key)
    page.wait_for_url("**item=0%3Ab**")
    # b's answer is `<script>alert(1)</script>`: shown as text, never run.
    assert page.locator("#response").inner_text() == "<script>alert(1)</script>"
    page.screenshot(path=str(tmp_path / "review-page.png"), full_page=True)
    for key in ("2", "2", "2", "2", "Enter"):
        page.keyboard.press(key)
    page.wait_for_selector("#item[data-review-id='1:d']")
    merged = {v.item_id: v for v in merged_verdicts(run_dir, 0, "pointwise")}
    assert dict(merged["a"].dimension_scores) == dict(
        zip(rubric.dimensions, (9.0, 8.0, 10.0, 7.0), strict=True))
    assert merged["a"].reviewer == merged["b"].reviewer == "ann"
    assert merged["b"].score == pytest.approx(1 / 9)
    assert [e["review_id"] for e in review_queue(run_dir, "pointwise")] == ["1:d"]


def test_a_pairwise_item_reviewed_from_the_keyboard(browser, served, pairwise_run):
    run_dir, rubric = pairwise_run
    page = open_page(browser, served(run_dir, rubric))
    assert page.locator("#response-a").inner_text() == "first"
    page.keyboard.press("b")
    page.wait_for_selector("#empty")
    pair = next(v for v in merged_verdicts(run_dir, 0, "pairwise") if v.item_id == "x")
    assert pair.winner == "B" and pair.status == "human"
